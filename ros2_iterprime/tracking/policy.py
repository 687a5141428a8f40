"""When to re-run IteRPrimE grounding while a tracker follows the object (no ROS, no model).

Tracking (SAM 2 / EdgeTAM memory propagation) is cheap per frame but only follows what it was given;
grounding (a full IteRPrimE run) is what ties the mask to the expression, and costs seconds on a CPU.
`RegroundPolicy` decides, frame by frame, when to pay for a new grounding:

- ``"new_expression"``: a new referring expression was given (`expression_changed`);
- ``"lost"``: the tracker's object score stayed below ``lost_threshold`` for ``lost_frames``
  consecutive frames, or for ``lost_seconds`` seconds (from the first lost frame of the run to the
  current one; 0 disables the time limit), whichever comes first (target occluded, out of view, or the
  track failed), or there has been no track (grounding found nothing) for that long;
- ``"period"``: ``reground_period`` seconds, or ``reground_period_frames`` frames, passed since the last
  grounding was applied (re-anchors a track that drifted onto a neighbour while staying confident);
  0 disables either limit.

Frames and seconds differ as soon as the tracker is slower than the camera: at 30 Hz 15 frames are
0.5 s, at the 0.16 frames per second of SAM 2.1 hiera-tiny on a 2-core CPU they are 90 s. The limits in
seconds keep their meaning at any rate.

Priority when several hold: new_expression > lost > period. Time is the clock's (injectable; tests
drive it by hand; monotonic seconds), or the ``now`` given to :meth:`~RegroundPolicy.observe` /
:meth:`~RegroundPolicy.due` / :meth:`~RegroundPolicy.grounded` (the stream's own time, e.g. image
stamps in seconds, so a replayed recording behaves as it did live).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

NEW_EXPRESSION = "new_expression"
LOST = "lost"
PERIOD = "period"
REASONS = (NEW_EXPRESSION, LOST, PERIOD)


@dataclass(frozen=True)
class RegroundSettings:
    """The policy's parameters.

    Attributes:
        lost_threshold: object-score logit below which a frame counts as "object not visible".
            0.0 is SAM 2's own rule (the model empties its mask when the logit is <= 0).
        lost_frames: consecutive not-visible frames (or frames without a track) that trigger a
            re-grounding; >= 1. At 30 Hz the default 15 is half a second.
        reground_period: seconds between periodic re-groundings; 0 disables them. A grounding costs
            ~12-15 s on a 2-core CPU with the default models, so periods below that keep the grounding
            busy all the time.
        lost_seconds: seconds a lost run may last before a re-grounding (0 = frames only).
        reground_period_frames: frames between periodic re-groundings (0 = seconds only).
    """

    lost_threshold: float = 0.0
    lost_frames: int = 15
    reground_period: float = 30.0
    lost_seconds: float = 0.0
    reground_period_frames: int = 0

    def __post_init__(self):
        if not math.isfinite(self.lost_threshold):
            raise ValueError("lost_threshold must be finite")
        if int(self.lost_frames) < 1:
            raise ValueError("lost_frames must be >= 1")
        if not math.isfinite(self.reground_period) or self.reground_period < 0:
            raise ValueError("reground_period must be >= 0 seconds (0 disables periodic re-grounding)")
        if not math.isfinite(self.lost_seconds) or self.lost_seconds < 0:
            raise ValueError("lost_seconds must be >= 0 (0 = count frames only)")
        if int(self.reground_period_frames) < 0:
            raise ValueError("reground_period_frames must be >= 0 (0 = seconds only)")


class RegroundPolicy:
    """Stateful re-grounding decision (single-threaded: call it from the tracking thread).

    Usage, per frame::

        reason = policy.due()          # None, or why a grounding should run now
        ... track the frame ...
        policy.observe(object_score)   # None when there is no track
        ... after a grounding was applied (found or not): policy.grounded()
    """

    def __init__(self, settings: RegroundSettings | None = None, clock: Callable[[], float] = time.monotonic,
                 **overrides):
        base = settings or RegroundSettings()
        if overrides:
            base = RegroundSettings(**{**base.__dict__, **overrides})
        self.settings = base
        self.clock = clock
        self._lost_run = 0
        self._lost_since: float | None = None  # time of the first lost frame of the current run
        self._last_grounding: float | None = None
        self._frames_since_grounding = 0
        self._new_expression = False

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else float(now)

    @property
    def lost_run(self) -> int:
        """Consecutive frames observed as not visible (or without a track)."""
        return self._lost_run

    def is_lost(self, object_score: float | None) -> bool:
        """Whether one frame counts as 'object not visible' (None = no track)."""
        return object_score is None or not (object_score >= self.settings.lost_threshold)

    def expression_changed(self) -> None:
        """A new expression arrived: the next `due()` answers 'new_expression'."""
        self._new_expression = True

    def observe(self, object_score: float | None, now: float | None = None) -> bool:
        """Record one tracked frame's object score (None: no track). Returns whether it counted as lost."""
        lost = self.is_lost(object_score)
        self._frames_since_grounding += 1
        if lost:
            if self._lost_run == 0:
                self._lost_since = self._now(now)
            self._lost_run += 1
        else:
            self._lost_run, self._lost_since = 0, None
        return lost

    def grounded(self, now: float | None = None) -> None:
        """A grounding result was applied (found or not): restart the lost count and the period."""
        self._lost_run, self._lost_since = 0, None
        self._frames_since_grounding = 0
        self._new_expression = False
        self._last_grounding = self._now(now)

    def seconds_since_grounding(self, now: float | None = None) -> float | None:
        return None if self._last_grounding is None else self._now(now) - self._last_grounding

    def lost_seconds(self, now: float | None = None) -> float:
        """Seconds since the first frame of the current lost run (0 when not lost)."""
        return 0.0 if self._lost_since is None else max(0.0, self._now(now) - self._lost_since)

    def due(self, now: float | None = None) -> str | None:
        """Why a grounding should run now ('new_expression' / 'lost' / 'period'), or None."""
        st = self.settings
        if self._new_expression:
            return NEW_EXPRESSION
        if self._lost_run >= st.lost_frames or (
                self._lost_run > 0 and st.lost_seconds > 0 and self.lost_seconds(now) >= st.lost_seconds):
            return LOST
        if self._last_grounding is not None:
            if st.reground_period > 0 and self._now(now) - self._last_grounding >= st.reground_period:
                return PERIOD
            if st.reground_period_frames > 0 and self._frames_since_grounding >= st.reground_period_frames:
                return PERIOD
        return None
