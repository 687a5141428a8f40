"""The ``~/segment`` service: one image (or the newest frame) + expression -> one result, synchronously.

The request may carry its own image (and depth + CameraInfo for 3-D); with an empty image the newest
received frame is used, refused when older than ``max_frame_age``. Every request gets a response:
bad input and internal errors become ``success=false`` with a reason, never an exception.
"""
from __future__ import annotations

from typing import Any

from ..geometry.camera import PinholeIntrinsics
from . import outputs as out
from .expression_input import clean_text
from .image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8
from .inputs import DepthFrame, Frame, stamp_ns

__all__ = ["answer_segment_request"]


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
        return frame, depth, intr
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
    if s("use_depth"):
        depth, intr = node.depth_sync.match(frame.stamp_ns, float(s("sync_slop")))
    return frame, depth, intr


def answer_segment_request(node: Any, request, response):
    """Fill ``response`` for ``request`` (ros2_iterprime_msgs/srv/Segment) on an IterPrimeNode."""
    response.success = False
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
        frame, depth, intr = got
        o = proc.run(frame, expression, depth, intr, int(node.scheduler.counts["dropped"]))
        node.stats.result(o.status, o.latency, o.processing_time)
        response.result = out.result_msg(o)
        response.success = o.status in (out.OK, out.NOT_FOUND, out.LOW_CONFIDENCE)
        response.message = o.status if not o.message else f"{o.status}: {o.message}"
    except Exception as exc:  # never let a request take the node down
        response.success = False
        response.message = f"internal error: {type(exc).__name__}: {exc}"
        node.log.error("service", response.message)
    return response
