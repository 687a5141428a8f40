"""`ReferringTracker`: ground an expression once with IteRPrimE, then follow the object at camera rate.

    tracker = ReferringTracker(segmenter, load_tracker("facebook/sam2.1-hiera-tiny"))
    first = tracker.start(frame0, "the red cup behind the laptop")   # grounding on frame0 + seed
    for frame in stream:
        r = tracker.update(frame)       # TrackResult: mask, bbox, centroid, object score, lost, ...

`start` runs the full IteRPrimE pipeline (`ReferringSegmenter.set_image` + `segment`) on its frame;
when it finds the object (``found``), the selected mask (original resolution) seeds a streaming
SAM 2 / EdgeTAM session as a mask prompt on that frame. A fallback mask (``found`` False) never seeds
the tracker: for a new expression the result is reported as lost, with no track; a lost or periodic
re-grounding that finds nothing keeps the running track (it says nothing against it). `update` then costs one tracker step per
frame (image encoder + memory attention + mask decoder + memory encoder), and a `RegroundPolicy`
decides when to ground again (new expression, object lost for N frames, period).

Re-grounding runs either in the caller's thread on the current frame (``background=False``: that
`update` returns the grounding's mask, after a full IteRPrimE run), or on a background thread
(``background=True``): the frame that triggered it is snapshotted, IteRPrimE runs on the snapshot
while `update` keeps tracking the current track, and the first `update` after it finishes re-seeds
the tracker on the snapshot frame (its true index, so the model sees the real temporal distance) and
tracks the current frame from there. One lock guards the segmenter; the tracker model is only used by
the caller's thread. A new expression in background mode drops the old track at once (it followed a
different object) and reports no track until the grounding lands.

On one CPU (or a CPU shared with the grounding) both threads compete for the same cores: tracking
continues but each frame takes longer while a grounding runs; docs/tracking.md has the measured
numbers. Not thread-safe itself: call `start` / `update` / `set_expression` from one thread.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError, IterPrimeError
from ..grounding.segmenter import clean_expression
from ..image_io import DEFAULT_MAX_PIXELS, to_rgb_uint8
from ..models.trackers import TrackerModel
from ..results import SegmentationResult, mask_bbox_centroid
from .policy import NEW_EXPRESSION, RegroundPolicy
from .session import StreamingSession

LOG = logging.getLogger(__name__)

#: the tracker that goes with each model profile (node parameter tracker_model '', `bag --track`)
TRACKERS_BY_PROFILE = {"default": "facebook/sam2.1-hiera-tiny", "large": "facebook/sam2.1-hiera-base-plus",
                       "tiny-random": "tiny-random"}


def tracker_id(tracker_model: str, profile: str) -> str:
    """The tracker to load: ``tracker_model`` when set, else the one that goes with the model profile."""
    return tracker_model.strip() or TRACKERS_BY_PROFILE.get(profile, TRACKERS_BY_PROFILE["default"])


GROUNDING = "grounding"
TRACKING = "tracking"
NONE = "none"
SOURCES = (GROUNDING, TRACKING, NONE)


class NotTrackingError(IterPrimeError, RuntimeError):
    """`update()` / `set_expression()` before `start()` (or after `stop()`)."""


@dataclass
class TrackResult:
    """The referred object on one frame of the stream.

    Attributes:
        expression: the expression being tracked.
        frame_index: position of this frame in the stream since `start` (the start frame is 0).
        mask: (H, W) bool at the frame's resolution; all False when ``lost``.
        bbox: (x0, y0, x1, y1), exclusive ends, or None for an empty mask.
        centroid: (u, v) pixel centroid, or None for an empty mask.
        object_score: the tracker's object-presence logit (SAM 2 / EdgeTAM ``object_score_logits``:
            > 0 = the model sees the object; +10 on the frame a grounding seeded); None without a track.
        lost: no usable mask on this frame: the score is below the policy's ``lost_threshold``, or
            there is no track (grounding found nothing, or a new expression awaits its grounding).
        source: 'grounding' (mask from IteRPrimE on this very frame), 'tracking' (propagated by the
            tracker) or 'none' (no track).
        frames_since_grounding: frames since the frame the current track was grounded on (0 on that
            frame); None without a track.
        grounding: the IteRPrimE result that ran on this frame, or (background mode) that was applied
            on this frame; None otherwise.
        reground_reason: why a grounding was run or started on this frame ('new_expression', 'lost',
            'period'), else None.
        grounding_pending: a background grounding is still running after this frame.
        timings: seconds per step ('validate', 'grounding', 'reseed', 'preprocess', 'model',
            'postprocess', 'prune', 'total'; only those that ran).
    """

    expression: str
    frame_index: int
    mask: np.ndarray
    bbox: tuple[int, int, int, int] | None
    centroid: tuple[float, float] | None
    object_score: float | None
    lost: bool
    source: str
    frames_since_grounding: int | None
    grounding: SegmentationResult | None = None
    reground_reason: str | None = None
    grounding_pending: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def summary(self) -> dict:
        """JSON-serialisable summary (no arrays)."""
        return {
            "expression": self.expression,
            "frame_index": int(self.frame_index),
            "source": self.source,
            "lost": bool(self.lost),
            "object_score": None if self.object_score is None else float(self.object_score),
            "frames_since_grounding": self.frames_since_grounding,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "centroid": list(self.centroid) if self.centroid is not None else None,
            "mask_area": int(self.mask.sum()),
            "image_size": [self.width, self.height],
            "reground_reason": self.reground_reason,
            "grounding_pending": bool(self.grounding_pending),
            "grounding_found": None if self.grounding is None else bool(self.grounding.found),
            "timings": {k: float(v) for k, v in self.timings.items()},
        }


@dataclass
class _Grounding:
    """A finished grounding job (background mode)."""

    expression: str
    rgb: np.ndarray
    frame_index: int
    result: SegmentationResult
    reason: str
    seconds: float


class ReferringTracker:
    """IteRPrimE grounding + SAM 2 / EdgeTAM tracking of one referred object in a frame stream.

    Args:
        segmenter: a `ReferringSegmenter` (its `set_image` + `segment` are the grounding).
        tracker_model: a `TrackerModel` (`load_tracker(...)`). None: the segmenter's own SAM 2 / EdgeTAM
            proposal model (``SegmenterConfig(proposals_model=...)``), which then shares the image
            encoder: a grounding frame's features are computed once, for proposals and the seed.
        policy: when to re-ground (default `RegroundPolicy()`).
        background: run re-groundings on a background thread (see the module docstring).
        segment_overrides: per-call `SegmenterConfig` overrides for every grounding (e.g. iterations=1).
        max_image_pixels: larger frames are refused with InvalidInputError.
        segmenter_lock: the lock that guards the segmenter when other code uses it too (e.g. the ROS
            node's service); default: a lock of this tracker's own.
    """

    def __init__(self, segmenter, tracker_model: TrackerModel | None = None, policy: RegroundPolicy | None = None,
                 *, background: bool = False, segment_overrides: dict | None = None,
                 max_image_pixels: int = DEFAULT_MAX_PIXELS, segmenter_lock=None):
        self.segmenter = segmenter
        shared = getattr(getattr(segmenter, "sam", None), "tracker", None)
        if tracker_model is None:
            if shared is None:
                raise ValueError("tracker_model is required unless the segmenter's proposals_model is a SAM 2 / "
                                 "EdgeTAM model")
            tracker_model = shared
        #: the segmenter's proposer, when it runs on this very model (its image features are reused)
        self._shared_proposer = segmenter.sam if shared is not None and shared.model is tracker_model.model else None
        self.session = StreamingSession(tracker_model)
        self.policy = policy or RegroundPolicy()
        self.background = bool(background)
        self.segment_overrides = dict(segment_overrides or {})
        self.max_image_pixels = int(max_image_pixels)
        # the one lock: the segmenter has one user at a time
        self._segmenter_lock = segmenter_lock if segmenter_lock is not None else threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._expression: str | None = None
        self._frame_size: tuple[int, int] | None = None
        self._next_index = 0
        self._grounded_index: int | None = None
        self._pending_expression: str | None = None
        self._now: float | None = None  # the current frame's time (s) for the policy, or None: its clock
        self.last_grounding_error: BaseException | None = None

    # state ---------------------------------------------------------------------------------------
    @property
    def expression(self) -> str | None:
        return self._expression

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the stream (set by `start`), or None."""
        return self._frame_size

    @property
    def has_track(self) -> bool:
        return self.session.seeded

    @property
    def grounding_pending(self) -> bool:
        return self._pending is not None

    # API -----------------------------------------------------------------------------------------
    def start(self, image, expression: str, stamp: float | None = None) -> TrackResult:
        """Ground `expression` on `image` (full IteRPrimE) and seed the tracker with its mask.

        Any running background grounding is waited for and discarded. The stream's frame size is
        this image's. ``stamp``: the frame's time in seconds (e.g. its header stamp) for the policy's
        limits in seconds; None uses the policy's clock. Raises InvalidInputError for an unusable image
        or an empty expression.
        """
        t0 = time.perf_counter()
        self._now = stamp
        text = clean_expression(expression)
        rgb = self._validate_frame(image, check_size=False)
        self._drain_pending()
        self._expression = text
        self._frame_size = rgb.shape[:2]
        self._next_index = 0
        self.session.reset()
        self._grounded_index = None
        timings = {"validate": time.perf_counter() - t0}
        return self._ground_now(rgb, self._take_index(), NEW_EXPRESSION, t0, timings)

    def set_expression(self, expression: str) -> None:
        """Follow a new expression on the same stream: the next `update` grounds it."""
        text = clean_expression(expression)
        if self._frame_size is None:
            raise NotTrackingError("call start(image, expression) before set_expression()")
        self._expression = text
        self.policy.expression_changed()
        if self.background:
            self._drop_track()  # the old track is another object: report no track until grounded

    def update(self, image, stamp: float | None = None) -> TrackResult:
        """Process the next frame of the stream: track it, re-grounding when the policy says so.

        ``stamp`` as for :meth:`start`. A bad frame raises InvalidInputError and leaves the track
        untouched (the next good frame continues it).
        """
        t0 = time.perf_counter()
        self._now = stamp
        if self._frame_size is None or self._expression is None:
            raise NotTrackingError("call start(image, expression) before update()")
        rgb = self._validate_frame(image, check_size=True)
        timings = {"validate": time.perf_counter() - t0}
        idx = self._take_index()
        applied = self._collect_background(timings)
        reason = self.policy.due(self._now)
        started = None
        if reason is not None and self._pending is None:
            if not self.background:
                return self._ground_now(rgb, idx, reason, t0, timings)
            self._launch(rgb, idx, reason)
            started = reason
        res = self._track(rgb, idx, timings)
        res.grounding = applied
        res.reground_reason = started
        res.grounding_pending = self._pending is not None
        res.timings["total"] = time.perf_counter() - t0
        return res

    def stop(self) -> None:
        """Forget the expression and the track (waits for a running background grounding)."""
        self._drain_pending()
        self._drop_track()
        self._expression = None
        self._frame_size = None

    def close(self) -> None:
        """`stop` and release the background thread."""
        self.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> ReferringTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals -----------------------------------------------------------------------------------
    def _take_index(self) -> int:
        idx = self._next_index
        self._next_index += 1
        return idx

    def _validate_frame(self, image, check_size: bool) -> np.ndarray:
        if isinstance(image, np.ndarray) and image.dtype.kind == "f" and image.size \
                and not np.isfinite(image).all():
            raise InvalidInputError("frame holds NaN or infinite values (a corrupt frame); it was skipped")
        rgb = to_rgb_uint8(image, self.max_image_pixels)
        if check_size and self._frame_size is not None and rgb.shape[:2] != self._frame_size:
            h, w = rgb.shape[:2]
            fh, fw = self._frame_size
            raise InvalidInputError(f"frame is {w}x{h} but this track runs on {fw}x{fh} frames; it was skipped "
                                    "(call start() to track at a new resolution)")
        return rgb

    def _segment(self, rgb: np.ndarray, expression: str) -> SegmentationResult:
        with self._segmenter_lock:
            self.segmenter.set_image(rgb)
            return self.segmenter.segment(expression, **self.segment_overrides)

    def _ground_now(self, rgb: np.ndarray, idx: int, reason: str, t0: float, timings: dict) -> TrackResult:
        """Grounding on this frame, in this thread; seeds (or ends) the track; the result's source is 'grounding'."""
        t1 = time.perf_counter()
        g = self._segment(rgb, self._expression)
        timings["grounding"] = time.perf_counter() - t1
        score = None
        if g.found and g.mask.any():
            out = self.session.seed(rgb, g.mask, frame_index=idx, vision_features=self._shared_features(rgb))
            timings.update(out.timings)
            score, mask, self._grounded_index = out.object_score, g.mask, idx
        elif reason != NEW_EXPRESSION and self.session.seeded:
            # a failed re-grounding (lost / period) says nothing against the track: keep following it
            self.policy.grounded(self._now)
            res = self._track(rgb, idx, timings)
            res.grounding, res.reground_reason = g, reason
            res.timings["total"] = time.perf_counter() - t0
            return res
        else:
            self._drop_track()
            mask = np.zeros(rgb.shape[:2], bool)
        self.policy.grounded(self._now)
        bbox, centroid = mask_bbox_centroid(mask)
        timings["total"] = time.perf_counter() - t0
        return TrackResult(self._expression, idx, mask, bbox, centroid, score, lost=score is None,
                           source=GROUNDING, frames_since_grounding=0 if score is not None else None,
                           grounding=g, reground_reason=reason, timings=timings)

    def _shared_features(self, rgb: np.ndarray):
        """The grounding's image features of `rgb` when the segmenter's proposer is the tracker's model."""
        if self._shared_proposer is None:
            return None
        with self._segmenter_lock:
            return self._shared_proposer.features_for(rgb)

    def _track(self, rgb: np.ndarray, idx: int, timings: dict) -> TrackResult:
        if not self.session.seeded:
            self.policy.observe(None, self._now)
            mask = np.zeros(rgb.shape[:2], bool)
            return TrackResult(self._expression, idx, mask, None, None, None, lost=True, source=NONE,
                               frames_since_grounding=None, timings=timings)
        out = self.session.track(rgb, frame_index=idx)
        timings.update(out.timings)
        # an empty mask is lost whatever the score (SAM 2 blanks its mask when its own logit is <= 0,
        # so a lost_threshold below 0 would otherwise report "found" with nothing to act on)
        lost = self.policy.observe(out.object_score if out.mask.any() else None, self._now)
        mask = np.zeros_like(out.mask) if lost else out.mask
        bbox, centroid = mask_bbox_centroid(mask)
        return TrackResult(self._expression, idx, mask, bbox, centroid, out.object_score, lost=lost,
                           source=TRACKING, frames_since_grounding=idx - self._grounded_index, timings=timings)

    def _drop_track(self) -> None:
        self.session.reset()
        self._grounded_index = None

    # background grounding ------------------------------------------------------------------------
    def _launch(self, rgb: np.ndarray, idx: int, reason: str) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iterprime-grounding")
        snapshot, expression = rgb.copy(), self._expression

        def job() -> _Grounding:
            t = time.perf_counter()
            g = self._segment(snapshot, expression)
            return _Grounding(expression, snapshot, idx, g, reason, time.perf_counter() - t)

        self._pending = self._executor.submit(job)
        self._pending_expression = expression

    def _collect_background(self, timings: dict) -> SegmentationResult | None:
        """Apply a finished background grounding (re-seed on its snapshot frame); returns its result."""
        fut = self._pending
        if fut is None or not fut.done():
            return None
        self._pending, expression, self._pending_expression = None, self._pending_expression, None
        try:
            job: _Grounding = fut.result()
        except Exception as exc:  # noqa: BLE001 - a failed grounding must not end tracking
            LOG.error("background grounding failed: %s: %s", type(exc).__name__, exc)
            self.last_grounding_error = exc
            if expression == self._expression:  # an old expression's failure leaves the new one's trigger
                self.policy.grounded(self._now)  # retry after lost_frames / the period, not on every frame
            return None
        if job.expression != self._expression:
            return None  # superseded by a newer expression; policy still asks for that one
        t = time.perf_counter()
        if job.result.found and job.result.mask.any():
            self.session.seed(job.rgb, job.result.mask, frame_index=job.frame_index,
                              vision_features=self._shared_features(job.rgb))
            self._grounded_index = job.frame_index
        elif job.reason == NEW_EXPRESSION or not self.session.seeded:
            self._drop_track()
        # else: a failed lost / periodic re-grounding keeps the track it was meant to check
        self.policy.grounded(self._now)
        timings["grounding_background"] = job.seconds
        timings["reseed"] = time.perf_counter() - t
        return job.result

    def _drain_pending(self) -> None:
        fut, self._pending, self._pending_expression = self._pending, None, None
        if fut is not None:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - discarded anyway
                pass

