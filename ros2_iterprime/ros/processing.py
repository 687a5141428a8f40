"""Run the library on one frame and turn every possible ending into an :class:`~.outputs.Outcome`.

The only place the node calls the model. Errors never escape: bad images and expressions become
``invalid_image`` / ``invalid_expression`` results, model failures ``model_error``, out-of-memory
``out_of_memory`` (after freeing the accelerator's cache), each with a reason in ``message``.
The model is shared by the worker thread and the ``~/segment`` service through one lock; the per-image
encoders are cached by frame sequence number, so a further expression on the same frame reuses them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError, IterPrimeError, NoImageError
from ..geometry.target import Target3DParams
from ..messages.outputs import attach_3d, camera_model_note, classify
from . import outputs as out
from .inputs import DepthSource, Frame

__all__ = ["Processor", "free_accelerator_memory"]


def free_accelerator_memory() -> None:
    """Return cached accelerator memory to the driver (no-op on CPU)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Processor:
    """Segmentation + 3-D centroid for one frame.

    Args:
        segmenter: a loaded ``ReferringSegmenter``.
        setting: callable name -> current parameter value.
        now_ns: the node's clock (ns) for latencies.
    """

    def __init__(self, segmenter, setting: Callable[[str], Any], now_ns: Callable[[], int],
                 to_target_frame: Callable[[str, Any], tuple[Any, str]] | None = None):
        self.segmenter = segmenter
        self.setting = setting
        self.now_ns = now_ns
        self.to_target_frame = to_target_frame  # (target_frame, header) -> (RigidTransform | None, reason)
        #: (cause, text) -> None: a condition worth one warning and a /diagnostics entry (the node logs it)
        self.warn: Callable[[str, str], None] | None = None
        self.lock = threading.Lock()
        #: (frame seq, segmenter.image_generation) of the image set in the segmenter by run(); any other
        #: set_image (a tracker's grounding) bumps the generation and so invalidates it
        self._cached: tuple[int, int] | None = None

    def forget_image(self) -> None:
        """Drop the per-image caches (deactivation; frees the image embeddings)."""
        with self.lock:
            self._cached = None
            if self.segmenter is not None:
                self.segmenter.reset_image()

    def overrides(self) -> dict:
        s = self.setting
        return {"iterations": int(s("iterations")), "alpha": float(s("alpha")), "pwem_mode": int(s("pwem_mode")),
                "proposals": str(s("proposals")), "points_per_side": int(s("points_per_side"))}

    def latency(self, frame: Frame | None, seconds: float) -> float:
        if frame is None or frame.stamp_ns <= 0:
            return seconds
        return (self.now_ns() - frame.stamp_ns) / 1e9

    def failure(self, header, expression: str, status: str, message: str, frame: Frame | None = None,
                seconds: float = 0.0, dropped: int = 0) -> out.Outcome:
        size = (int(frame.rgb.shape[1]), int(frame.rgb.shape[0])) if frame is not None else (0, 0)
        return out.Outcome(header, expression, status, message, None, None, seconds,
                           self.latency(frame, seconds), dropped, size)

    def run(self, frame: Frame, expression: str, depth: DepthSource | None = None, dropped: int = 0) -> out.Outcome:
        """Segment ``expression`` on ``frame`` (frame.seq >= 0 frames share the per-image cache).

        ``depth``: where the depth image comes from (a :class:`~.inputs.DepthClaim` opened when the job
        started, or :class:`~.inputs.FixedDepth`); it is asked only after segmentation, for a found target.
        """
        t0 = time.perf_counter()
        status, message, result = out.MODEL_ERROR, "", None
        stage = "image"
        try:
            with self.lock:
                gen = getattr(self.segmenter, "image_generation", None)
                if frame.seq < 0 or gen is None or self._cached != (frame.seq, gen):
                    self._cached = None
                    self.segmenter.set_image(frame.rgb)
                    if frame.seq >= 0 and gen is not None:
                        self._cached = (frame.seq, self.segmenter.image_generation)
                stage = "expression"
                result = self.segmenter.segment(expression, **self.overrides())
        except (InvalidInputError, NoImageError) as exc:
            status = out.INVALID_IMAGE if stage == "image" else out.INVALID_EXPRESSION
            message = str(exc)
        except IterPrimeError as exc:
            message = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # model failures, out-of-memory: the node goes on
            if _is_oom(exc):
                status = out.OUT_OF_MEMORY
                message = (f"out of memory on a {frame.rgb.shape[1]}x{frame.rgb.shape[0]} frame "
                           f"(try a smaller image, dtype:=float16 or device:=cpu): {str(exc)[:200]}")
                with self.lock:
                    self._cached = None
                free_accelerator_memory()
            else:
                message = f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.perf_counter() - t0
        if result is None:
            return self.failure(frame.header, expression, status, message, frame, seconds, dropped)
        status, message = self.classify(result)
        o = out.Outcome(frame.header, expression, status, message, result, None, seconds,
                        self.latency(frame, seconds), dropped, (int(frame.rgb.shape[1]), int(frame.rgb.shape[0])))
        target_frame = str(self.setting("target_frame"))  # read once: the label and the transform agree
        o.target_frame = target_frame
        if status == out.OK:
            self.add_3d(o, frame, depth, target_frame)
        o.processing_time = time.perf_counter() - t0
        o.latency = self.latency(frame, o.processing_time)  # after the 3-D step (SegmentationResult.msg)
        return o

    def classify(self, result) -> tuple[str, str]:
        """(status, message) of a grounding: ok, not_found or low_confidence (min_confidence)."""
        return classify(result, float(self.setting("min_confidence")))

    def target_params(self) -> Target3DParams:
        s = self.setting
        return Target3DParams(erosion_px=int(s("erosion_px")), min_depth=float(s("min_depth")),
                              max_depth=float(s("max_depth")), voxel_size=float(s("voxel_size")),
                              max_points=int(s("max_points")), min_points=int(s("min_depth_points")))

    def add_3d(self, o: out.Outcome, frame: Frame, depth_source: DepthSource | None, target_frame: str = "") -> None:
        """The cleaned cloud, centroid and box of a found target (and in ``target_frame``), or why not.

        The depth is asked for here, after segmentation (it may arrive after its colour frame).
        """
        if depth_source is None:
            o.depth_message = "no depth image received" if self.setting("use_depth") else ""
            return
        depth, intrinsics = depth_source.get()
        if depth is None:
            why = getattr(depth_source, "missing_reason", None)  # a claim says whether its depth was late
            o.depth_message = why() if why is not None else (
                f"no depth image within sync_slop ({float(self.setting('sync_slop')):g} s) of the colour image")
            return
        if intrinsics is None:
            o.depth_message = "no valid CameraInfo received"
            return
        note = camera_model_note(intrinsics, bool(self.setting("images_rectified")))
        if note and self.warn is not None:
            self.warn("camera_model", note)
        attach_3d(o, frame.rgb, depth.depth_m, str(getattr(depth.header, "frame_id", "") or ""), intrinsics,
                  self.target_params(), target_frame, self.to_target_frame, note)
        if o.depth_message.startswith("depth image frame") and self.warn is not None:
            self.warn("depth_frame", o.depth_message)
