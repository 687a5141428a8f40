"""Run-time statistics of the node and its /diagnostics status (diagnostic_msgs/DiagnosticArray).

Levels (one status per node, name ``"<node fqn>: referring segmentation"``):

- **ERROR**: the model is not loaded because configure failed, or the last 3 model runs all failed
  (model_error / out_of_memory) — the node cannot do its job.
- **WARN**: not active (unconfigured or inactive: it is not processing); or, within the last
  ``recent_s`` (30 s): a model failure, frames refused as too old, or more than half the wanted frames
  dropped because the model is slower than the stream; or an active expression but no image for
  ``recent_s``; or an input condition seen within ``recent_s`` (``warning.<cause>`` values: a CameraInfo
  with distortion or K != P, depth in another frame than the colour image).
- **OK**: active and none of the above.

Values: lifecycle state, model ids, device, mode, active expression, counters (images, processed,
results by status, dropped, rate-limited, stale, invalid inputs), processing rate over the last
``window_s`` (10 s), latency and model-time percentiles (p50/p90/p99 of the last 100 results), and the
last error with its age.
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["NodeStats", "diagnostic_status", "diagnostics_msg", "node_status"]

_FAILURES = ("model_error", "out_of_memory")


class NodeStats:
    """Thread-safe counters and recent history of the node."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, history: int = 100):
        self.clock = clock
        self._lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self._results: collections.deque = collections.deque(maxlen=history)  # (t, status, latency, model_s)
        self._events: dict[str, float] = {}  # event -> last monotonic time
        self.last_error: tuple[str, float] | None = None
        self.last_image_t: float | None = None
        self._notes: dict[str, tuple[str, float]] = {}  # cause -> (text, last time): input conditions

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n
            self._events[key] = self.clock()

    def image(self) -> None:
        with self._lock:
            self.counts["images"] += 1
            self.last_image_t = self.clock()

    def result(self, status: str, latency: float, model_s: float) -> None:
        with self._lock:
            now = self.clock()
            self.counts["results"] += 1
            self.counts["status." + status] += 1
            self._events["status." + status] = now
            self._results.append((now, status, float(latency), float(model_s)))

    def note(self, cause: str, text: str) -> None:
        """A condition of the inputs worth a warning (camera model, unregistered depth), seen now."""
        with self._lock:
            self._notes[cause] = (text, self.clock())

    def notes(self, within_s: float) -> dict[str, str]:
        """The notes seen within the last ``within_s`` seconds."""
        with self._lock:
            now = self.clock()
            return {k: t for k, (t, when) in self._notes.items() if now - when <= within_s}

    def error(self, text: str) -> None:
        with self._lock:
            self.last_error = (text, self.clock())

    def since(self, key: str) -> float | None:
        """Seconds since the event ``key`` last happened, or None."""
        with self._lock:
            t = self._events.get(key)
            return None if t is None else self.clock() - t

    def snapshot(self, window_s: float = 10.0) -> dict:
        with self._lock:
            now = self.clock()
            results = list(self._results)
            counts = dict(self.counts)
            last_error = self.last_error
            last_image = self.last_image_t
        ran = [r for r in results if r[3] > 0]
        recent = [r for r in ran if now - r[0] <= window_s]
        lat = np.array([r[2] for r in ran], dtype=np.float64)
        mod = np.array([r[3] for r in ran], dtype=np.float64)

        def pct(a, q):
            a = a[np.isfinite(a)]
            return float(np.percentile(a, q)) if a.size else float("nan")

        return {
            "counts": counts,
            "rate_hz": len(recent) / window_s,
            "latency_p50": pct(lat, 50), "latency_p90": pct(lat, 90), "latency_p99": pct(lat, 99),
            "model_p50": pct(mod, 50), "model_p90": pct(mod, 90),
            "last_statuses": [r[1] for r in results[-3:]],
            "last_error": None if last_error is None else (last_error[0], now - last_error[1]),
            "image_age": None if last_image is None else now - last_image,
        }


def _level(state: str, model_loaded: bool, configure_error: str | None, snap: dict, stats: NodeStats,
           has_expression: bool, recent_s: float) -> tuple[int, str]:
    if configure_error:
        return DiagnosticStatus.ERROR, f"model not loaded: {configure_error}"
    last = snap["last_statuses"]
    if len(last) >= 3 and all(s in _FAILURES for s in last):
        return DiagnosticStatus.ERROR, f"the last {len(last)} model runs failed ({last[-1]})"
    if state != "active":
        return DiagnosticStatus.WARN, f"not processing: node is {state}"
    for event, text in (("status.model_error", "a model run failed"),
                        ("status.out_of_memory", "out of memory"),
                        ("status.frame_too_old", "expressions refused: frames too old"),
                        ("status.no_frame", "expressions refused: no image")):
        age = stats.since(event)
        if age is not None and age <= recent_s:
            return DiagnosticStatus.WARN, f"{text} {age:.0f} s ago"
    c = snap["counts"]
    dropped_age = stats.since("dropped")
    if dropped_age is not None and dropped_age <= recent_s and c.get("dropped", 0) > c.get("results", 0):
        return DiagnosticStatus.WARN, "the model is slower than the image stream (frames dropped)"
    if has_expression and (snap["image_age"] is None or snap["image_age"] > recent_s):
        return DiagnosticStatus.WARN, f"no image for over {recent_s:.0f} s"
    for cause, text in sorted(stats.notes(recent_s).items()):
        return DiagnosticStatus.WARN, f"{cause}: {text[:200]}"
    return DiagnosticStatus.OK, "ok" if model_loaded else "ok (model not loaded)"


def diagnostic_status(name: str, *, state: str, model: str, device: str, mode: str, expression: str | None,
                      model_loaded: bool, configure_error: str | None, stats: NodeStats,
                      recent_s: float = 30.0) -> DiagnosticStatus:
    snap = stats.snapshot()
    level, message = _level(state, model_loaded, configure_error, snap, stats, bool(expression), recent_s)
    values = {
        "state": state,
        "model": model,
        "model_loaded": str(model_loaded).lower(),
        "device": device,
        "mode": mode,
        "active_expression": (expression or "")[:200],
        "rate_hz": f"{snap['rate_hz']:.2f}",
        "latency_p50_s": f"{snap['latency_p50']:.3f}",
        "latency_p90_s": f"{snap['latency_p90']:.3f}",
        "latency_p99_s": f"{snap['latency_p99']:.3f}",
        "model_time_p50_s": f"{snap['model_p50']:.3f}",
        "model_time_p90_s": f"{snap['model_p90']:.3f}",
        "last_image_age_s": "never" if snap["image_age"] is None else f"{snap['image_age']:.1f}",
        "last_error": "" if snap["last_error"] is None else snap["last_error"][0][:300],
        "last_error_age_s": "" if snap["last_error"] is None else f"{snap['last_error'][1]:.1f}",
    }
    for key in sorted(snap["counts"]):
        values[key] = str(snap["counts"][key])
    for cause, text in sorted(stats.notes(recent_s).items()):
        values["warning." + cause] = text[:300]
    st = DiagnosticStatus(level=level, name=name, message=message, hardware_id=device)
    st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return st


def diagnostics_msg(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def node_status(node) -> DiagnosticStatus:
    """The status of an IterPrimeNode (reads its processor, settings, scheduler, stats and state)."""
    setting = node.setting
    proc = node.processor
    models = getattr(getattr(proc, "segmenter", None), "models", None)
    model = setting("model")
    if models is not None:
        proposer = models.sam_id or setting("proposals_model")
        model = f"{setting('model')} ({models.vlm_id} + {proposer})"
    status = diagnostic_status(
        f"{node.get_fully_qualified_name()}: referring segmentation",
        state=node.lifecycle_state, model=model, device=str(getattr(models, "device", setting("device"))),
        mode=setting("mode"), expression=node.scheduler.active_expression, model_loaded=proc is not None,
        configure_error=node.configure_error, stats=node.stats)
    for key, value in node.scheduler.counts.items():
        status.values.append(KeyValue(key="scheduler." + key, value=str(value)))
    return status
