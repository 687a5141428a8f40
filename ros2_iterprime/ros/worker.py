"""Scheduling of the node's work: newest frame only, one worker thread, expressions answered once.

Subscription callbacks only decode and hand frames and expressions to the :class:`Scheduler`; one
:class:`Worker` thread asks it for the next :class:`Job` and runs the model, so frames never queue behind
a slow model (the latest-frame policy of yolo_ros / Isaac ROS pipelines).

Rules (tested in tests/ros/test_ros_worker.py without DDS):

- **on_command**: each expression is answered exactly once, on the newest frame that is at most
  ``max_frame_age`` seconds old. Without such a frame the expression waits up to ``max_frame_age`` for
  one, then is answered with a failure (``no_frame`` / ``frame_too_old``) instead of silently never.
- **continuous**: every new frame (at most ``max_rate_hz``) with the active expression; frames older than
  ``max_frame_age`` are skipped as stale. **track** schedules like continuous at its own cap
  ``track_rate_hz`` (default 0: every frame the tracker can take; the expression's first job grounds,
  every further frame is tracked: ``ros.track``).
- A new expression pre-empts the old one (``generation``); results of superseded jobs are discarded.
- Accounting: a frame replaced before the worker took it counts as ``dropped`` only when the worker was
  busy AND the rate cap would have allowed processing it (the model is slower than the stream);
  frames replaced while the node is just waiting for its own rate cap count as ``rate_limited``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..messages.outputs import FRAME_TOO_OLD, NO_FRAME  # answered by the scheduler itself
from .inputs import Frame

__all__ = ["FRAME_TOO_OLD", "NO_FRAME", "Job", "Scheduler", "Worker"]


@dataclass
class Job:
    """One unit of work for the model.

    Attributes:
        frame: the frame to segment (None for a failure answered without a frame).
        expression: the referring expression.
        generation: expression generation; a job is stale once a newer expression arrived.
        trigger: 'expression' (answering a received expression) or 'stream' (continuous mode).
        failure: (status, message) to answer without running the model, or None.
    """

    frame: Frame | None
    expression: str
    generation: int
    trigger: str
    failure: tuple[str, str] | None = None


@dataclass
class _Pending:
    text: str
    generation: int
    since: float  # monotonic time the expression arrived


class Scheduler:
    """Thread-safe state of what to process next.

    Args:
        setting: callable name -> current parameter value ('mode', 'max_rate_hz', 'max_frame_age').
        now_ns: the node's clock (ROS time, ns) for frame ages.
        monotonic: monotonic clock (s) for waits and rate limiting.
    """

    def __init__(self, setting: Callable[[str], Any], now_ns: Callable[[], int],
                 monotonic: Callable[[], float] = time.monotonic):
        self.setting = setting
        self.now_ns = now_ns
        self.monotonic = monotonic
        self.cond = threading.Condition()
        self.frame: Frame | None = None
        self._seq = 0
        self._taken_seq = 0
        self._pending: _Pending | None = None
        self.active_expression: str | None = None
        self.generation = 0
        self.busy = False
        self._last_start = -float("inf")
        self.counts = {"frames": 0, "dropped": 0, "rate_limited": 0, "stale": 0}

    # ------------------------------------------------------------------ inputs (callback threads)
    def _wants_frames(self) -> bool:
        return self.setting("mode") in ("continuous", "track") and self.active_expression is not None

    def _rate(self) -> float:
        """The cap of the current mode: track_rate_hz in track mode, max_rate_hz otherwise (0 = none)."""
        return float(self.setting("track_rate_hz" if self.setting("mode") == "track" else "max_rate_hz"))

    def _rate_allows(self, now: float, rate: float | None = None) -> bool:
        rate = self._rate() if rate is None else rate
        return rate <= 0 or now - self._last_start >= 1.0 / rate

    def put_frame(self, header: Any, rgb, stamp: int) -> str | None:
        """Store the newest frame. Returns 'dropped' / 'rate_limited' when it replaced a wanted frame."""
        with self.cond:
            replaced = None
            if self.frame is not None and self.frame.seq > self._taken_seq and self._wants_frames():
                if self.busy and self._rate_allows(self.monotonic()):
                    replaced = "dropped"
                else:
                    replaced = "rate_limited"
                self.counts[replaced] += 1
            self._seq += 1
            self.counts["frames"] += 1
            self.frame = Frame(header, rgb, stamp, self._seq, int(self.now_ns()))
            self.cond.notify_all()
            return replaced

    def put_expression(self, text: str | None) -> int:
        """A new expression (None or '' clears the target). Pre-empts pending and running work."""
        with self.cond:
            self.generation += 1
            if text:
                self._pending = _Pending(text, self.generation, self.monotonic())
                self.active_expression = text
            else:
                self._pending = None
                self.active_expression = None
            self.cond.notify_all()
            return self.generation

    def reset(self) -> None:
        """Forget frames and expressions (deactivation)."""
        with self.cond:
            self.frame = None
            self._pending = None
            self.active_expression = None
            self.generation += 1
            self.cond.notify_all()

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`next_job` (a worker being stopped)."""
        with self.cond:
            self.cond.notify_all()

    # ------------------------------------------------------------------ worker side
    def _max_age(self) -> float:
        return float(self.setting("max_frame_age"))

    def _take(self, now: float) -> tuple[Job | None, float]:
        """With the lock held: (job, seconds to wait if None)."""
        max_age = self._max_age()
        frame = self.frame
        if self._pending is not None:
            p = self._pending
            fresh = frame is not None and (max_age <= 0 or frame.age_s(self.now_ns()) <= max_age)
            if fresh:
                self._pending = None
                self._taken_seq = frame.seq
                return Job(frame, p.text, p.generation, "expression"), 0.0
            waited = now - p.since
            if max_age > 0 and waited >= max_age:
                self._pending = None
                if frame is None:
                    msg = f"no image received within {max_age:g} s of the expression"
                    return Job(None, p.text, p.generation, "expression", (NO_FRAME, msg)), 0.0
                age = frame.age_s(self.now_ns())
                msg = (f"the newest image is {age:.1f} s old (max_frame_age {max_age:g} s) and no newer one "
                       f"arrived within {max_age:g} s")
                return Job(None, p.text, p.generation, "expression", (FRAME_TOO_OLD, msg)), 0.0
            return None, (max(0.001, max_age - waited) if max_age > 0 else 0.5)
        if self._wants_frames() and frame is not None and frame.seq > self._taken_seq:
            rate = self._rate()  # read once: it may change between two reads
            if not self._rate_allows(now, rate):
                return None, max(0.001, 1.0 / rate - (now - self._last_start))
            self._taken_seq = frame.seq
            if max_age > 0 and frame.age_s(self.now_ns()) > max_age:
                self.counts["stale"] += 1
                return None, 0.0
            return Job(frame, self.active_expression, self.generation, "stream"), 0.0
        return None, 0.5

    def next_job(self, timeout: float = 0.5, stop: threading.Event | None = None) -> Job | None:
        """Block until there is a job (then the scheduler is busy until :meth:`done`), ``timeout``, or
        ``stop`` is set."""
        deadline = self.monotonic() + timeout
        with self.cond:
            while stop is None or not stop.is_set():
                now = self.monotonic()
                job, wait = self._take(now)
                if job is not None:
                    self.busy = True
                    if job.frame is not None:
                        self._last_start = now
                    return job
                left = deadline - now
                if left <= 0:
                    return None
                if wait > 0:
                    self.cond.wait(min(wait, left))
            return None

    def done(self, job: Job) -> None:
        with self.cond:
            self.busy = False
            self.cond.notify_all()

    def is_current(self, job: Job) -> bool:
        """False once a newer expression superseded the job's (its result must not be published)."""
        with self.cond:
            if job.generation == self.generation:
                return True
            # continuous mode: a re-sent identical expression does not invalidate work on the same target
            return job.trigger == "stream" and job.expression == self.active_expression and \
                self.setting("mode") in ("continuous", "track")


class Worker:
    """The one thread that runs the model: ``run(job)`` for every job of the scheduler.

    Each worker has its own stop event, so a stopped worker can never be revived by a newer one, and
    :meth:`stop` waits for the job in progress to end (at most one model run) unless given a timeout.
    """

    def __init__(self, scheduler: Scheduler, run: Callable[[Job], None], on_error: Callable[[BaseException], None]):
        self.scheduler = scheduler
        self.run = run
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="iterprime_worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = None
            try:
                job = self.scheduler.next_job(0.5, self._stop)
                if job is not None:
                    self.run(job)
            except BaseException as exc:  # the worker never dies
                try:
                    self.on_error(exc)
                except Exception:
                    pass
            finally:
                if job is not None:
                    self.scheduler.done(job)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the current job; True when the thread has ended (``timeout`` None: wait for it)."""
        self._stop.set()
        self.scheduler.wake()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if not alive:
            self._thread = None
        return not alive
