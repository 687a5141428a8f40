"""``mode: track`` of the node: ground once with IteRPrimE, then follow the object on every frame.

A thin adapter over :class:`ros2_iterprime.tracking.ReferringTracker` (docs/tracking.md): a new
expression is grounded on a fresh frame (``start``: full IteRPrimE, its mask seeds a SAM 2.1 / EdgeTAM
streaming session), every further frame is one tracker step (``update``), and the tracker's policy
re-grounds when the object stays lost for ``lost_frames`` frames or every ``reground_period`` seconds.
Each frame becomes an :class:`~.outputs.Outcome` like any other result, with ``source`` 'grounding'
(IteRPrimE ran on this frame), 'tracking' (propagated) or 'none' (no track), the tracker's
``object_score`` and ``frames_since_grounding``. A lost object is status ``lost`` with an empty mask.

The tracker model is loaded at configure when ``mode`` is track, otherwise at the first track job. It
shares the node's model lock with the ``~/segment`` service, so the segmenter has one user at a time.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError
from ..messages.outputs import track_status
from ..results import SegmentationResult
from ..tracking.tracker import TRACKERS_BY_PROFILE, tracker_id  # noqa: F401 (re-exported)
from . import outputs as out
from .inputs import DepthSource, Frame
from .processing import Processor, _is_oom, free_accelerator_memory

__all__ = ["TRACKERS_BY_PROFILE", "TrackRunner", "tracker_id"]



class TrackRunner:
    """Owns the node's ReferringTracker; turns its TrackResults into Outcomes.

    Args:
        processor: the node's :class:`Processor` (segmenter, lock, 3-D step, statuses).
        setting: callable name -> current parameter value.
        load: callable () -> TrackerModel or None (None: the segmenter's own SAM 2 proposer model).
    """

    def __init__(self, processor: Processor, setting: Callable[[str], Any], load: Callable[[], Any]):
        self.processor = processor
        self.setting = setting
        self._load = load
        self.tracker = None
        self.load_error: str | None = None  # why the last load failed (retried on the next expression only)
        self._grounding: SegmentationResult | None = None  # the result the current track was seeded from
        self._grounding_status = (out.NOT_FOUND, "")

    @property
    def loaded(self) -> bool:
        return self.tracker is not None

    def ensure_loaded(self) -> None:
        """Build the tracker (loading its model) if not done yet; raises what loading raises."""
        if self.tracker is not None:
            return
        from ..tracking import ReferringTracker, RegroundPolicy

        try:
            model = self._load()
        except Exception as exc:
            self.load_error = f"cannot load the tracker: {type(exc).__name__}: {str(exc)[:300]}"
            raise
        self.load_error = None
        policy = RegroundPolicy(self.reground_settings())
        s = self.setting
        self.tracker = ReferringTracker(self.processor.segmenter, model, policy,
                                        background=bool(s("background_regrounding")),
                                        segment_overrides=self.processor.overrides(),
                                        segmenter_lock=self.processor.lock)

    def reground_settings(self):
        """The policy's settings from the node's parameters (limits in frames and in seconds)."""
        from ..tracking import RegroundSettings

        s = self.setting
        return RegroundSettings(lost_threshold=float(s("lost_threshold")), lost_frames=int(s("lost_frames")),
                                reground_period=float(s("reground_period")), lost_seconds=float(s("lost_seconds")),
                                reground_period_frames=int(s("reground_period_frames")))

    def apply_settings(self) -> None:
        """Parameters changed at run time: policy thresholds and the grounding overrides."""
        if self.tracker is None:
            return
        self.tracker.policy.settings = self.reground_settings()
        self.tracker.segment_overrides = self.processor.overrides()

    def stop(self) -> None:
        """Forget the expression and the track (mode changed, target cleared, deactivation)."""
        if self.tracker is not None and self.tracker.expression is not None:
            self.tracker.stop()
        self._grounding = None

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        self._grounding = None

    # ------------------------------------------------------------------------------------------
    def run(self, frame: Frame, expression: str, trigger: str, depth: DepthSource | None, dropped: int) -> out.Outcome:
        """One frame of the track: ``start`` for a new expression (or a new frame size), else ``update``.

        The policy's limits in seconds run on the image stamps (the arrival time for unstamped frames).
        """
        t0 = time.perf_counter()
        proc = self.processor
        if self.tracker is None and self.load_error is not None and trigger != "expression":
            # the load failed: answer every frame with the reason, retry only for a new expression
            return proc.failure(frame.header, expression, out.MODEL_ERROR, self.load_error, frame, 0.0, dropped)
        try:
            self.ensure_loaded()
            self.apply_settings()
            trk = self.tracker
            restart = (trigger == "expression" or trk.expression != expression
                       or trk.frame_size != tuple(frame.rgb.shape[:2]))
            when = (frame.stamp_ns if frame.stamp_ns > 0 else frame.received_ns) / 1e9
            tr = trk.start(frame.rgb, expression, when) if restart else trk.update(frame.rgb, when)
        except InvalidInputError as exc:  # a bad frame: the track (and the node) go on
            return proc.failure(frame.header, expression, out.INVALID_IMAGE, str(exc), frame,
                                time.perf_counter() - t0, dropped)
        except Exception as exc:
            if _is_oom(exc):
                free_accelerator_memory()
                status, msg = out.OUT_OF_MEMORY, f"out of memory while tracking: {str(exc)[:200]}"
            else:
                status, msg = out.MODEL_ERROR, f"tracking failed: {type(exc).__name__}: {str(exc)[:300]}"
            return proc.failure(frame.header, expression, status, msg, frame, time.perf_counter() - t0, dropped)
        o = self._outcome(frame, tr, time.perf_counter() - t0, depth, dropped)
        o.processing_time = time.perf_counter() - t0
        o.latency = proc.latency(frame, o.processing_time)  # after the 3-D step
        return o

    def _outcome(self, frame: Frame, tr, seconds: float, depth, dropped: int) -> out.Outcome:
        proc = self.processor
        g = tr.grounding
        # IteRPrimE ran (or, in the background, landed) on this frame; a failed re-grounding that left the
        # track running (source 'tracking') does not replace the grounding the track was seeded from
        if g is not None and (tr.source != "tracking" or g.found):
            self._grounding = g
            self._grounding_status = proc.classify(g)
        size = (int(frame.rgb.shape[1]), int(frame.rgb.shape[0]))
        status, message, result = track_status(tr, self._grounding, self._grounding_status,
                                               float(self.setting("lost_threshold")))
        o = out.Outcome(frame.header, tr.expression, status, message, result, None, seconds,
                        proc.latency(frame, seconds), dropped, size)
        target_frame = str(self.setting("target_frame"))  # read once per job: label and transform agree
        o.target_frame = target_frame
        o.source = tr.source
        o.object_score = tr.object_score
        o.frames_since_grounding = tr.frames_since_grounding
        o.extra.update(reground_reason=tr.reground_reason, grounding_pending=bool(tr.grounding_pending),
                       grounding_applied=g is not None)
        if status == out.OK:
            proc.add_3d(o, frame, depth, target_frame)
        return o
