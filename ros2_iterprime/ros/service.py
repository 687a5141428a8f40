"""The ``~/segment`` service: one image (or the newest frame) + expression -> one result, synchronously.

The request may carry its own image (and depth + CameraInfo for 3-D); with an empty image the newest
received frame is used, refused when older than ``max_frame_age``, and its depth is paired after the
model ran, as for the topics. Every request gets a response: bad input and internal errors become
``success=false`` with a reason, never an exception. Deactivation waits for a call in progress
(:class:`RequestGate`) instead of destroying the service under it, so the client always gets its answer.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ..geometry.camera import PinholeIntrinsics
from . import outputs as out
from .expression_input import clean_text
from .image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8
from .inputs import DepthFrame, FixedDepth, Frame, stamp_ns

__all__ = ["RequestGate", "answer_segment_request"]


class RequestGate:
    """Counts the ``~/segment`` calls in progress; closing it refuses new ones and waits for those running."""

    def __init__(self):
        self._cond = threading.Condition()
        self._open = False
        self._running = 0

    def open(self) -> None:
        with self._cond:
            self._open = True

    def enter(self) -> bool:
        """False when closed (the caller answers 'not active'); else the caller must :meth:`leave`."""
        with self._cond:
            if not self._open:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new calls and wait for the running ones; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._open = False
            while self._running > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True


def _request_frame(node: Any, request, response):
    """(frame, depth, intrinsics) for the request, or None with ``response.message`` set."""
    s = node.setting
    depth = intr = None
    if request.image.width > 0 and request.image.height > 0:
        try:
            rgb = to_rgb8(msg_to_numpy(request.image), request.image.encoding)
        except ImageConversionError as exc:
            response.message = f"invalid image: {exc}"
            return None
        frame = Frame(request.image.header, rgb, stamp_ns(request.image.header), -1, node.now_ns())
        if request.depth.width > 0 and request.depth.height > 0:
            try:
                d = depth_to_metres(msg_to_numpy(request.depth), request.depth.encoding,
                                    s("depth_scale"), s("min_depth"), s("max_depth"))
                intr = PinholeIntrinsics.from_camera_info(request.camera_info)
            except (ImageConversionError, ValueError) as exc:
                response.message = f"invalid depth/camera_info: {exc}"
                return None
            depth = DepthFrame(request.depth.header, d, stamp_ns(request.depth.header))
        return frame, FixedDepth(depth, intr), None
    frame = node.scheduler.frame
    if frame is None:
        response.message = "no image received yet on " + node.resolve_topic_name("image")
        return None
    max_age = float(s("max_frame_age"))
    age = frame.age_s(node.now_ns())
    if max_age > 0 and age > max_age:
        response.message = (f"the newest image on {node.resolve_topic_name('image')} is {age:.1f} s "
                            f"old (max_frame_age {max_age:g} s)")
        return None
    claim = node.depth_sync.claim(frame.stamp_ns, frame.received_ns, float(s("sync_slop"))) if s("use_depth") else None
    return frame, claim, claim


def answer_segment_request(node: Any, request, response):
    """Fill ``response`` for ``request`` (ros2_iterprime_msgs/srv/Segment) on an IterPrimeNode."""
    response.success = False
    if not node.segment_gate.enter():
        response.message = f"node is not active ({node.lifecycle_state})"
        return response
    claim = None
    try:
        proc = node.processor
        if proc is None or node.lifecycle_state != "active":
            response.message = f"node is not active ({node.lifecycle_state})"
            return response
        expression = clean_text(request.expression)
        if not expression:
            response.message = "empty expression"
            return response
        got = _request_frame(node, request, response)
        if got is None:
            return response
        frame, depth, claim = got
        o = proc.run(frame, expression, depth, int(node.scheduler.counts["dropped"]))
        node.stats.result(o.status, o.latency, o.processing_time)
        response.result = out.result_msg(o)
        response.success = o.status in (out.OK, out.NOT_FOUND, out.LOW_CONFIDENCE)
        response.message = o.status if not o.message else f"{o.status}: {o.message}"
    except Exception as exc:  # never let a request take the node down
        response.success = False
        response.message = f"internal error: {type(exc).__name__}: {exc}"
        node.log.error("service", response.message)
    finally:
        if claim is not None:
            claim.release()
        node.segment_gate.leave()
    return response
