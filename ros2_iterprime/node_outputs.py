"""Output messages of the ROS 2 node (mask, overlay, centroid, markers, result, JSON summary).

ROS-only helper of ``ros2_iterprime.node``: imports the standard message packages (and the optional
``ros2_iterprime_msgs``) but not rclpy itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from .geometry import MaskPoint3D
from .results import SegmentationResult
from .ros_image import numpy_to_msg

try:  # custom interfaces: optional (the node also works with standard messages alone)
    from ros2_iterprime_msgs.msg import SegmentationResult as SegmentationResultMsg
    from ros2_iterprime_msgs.srv import Segment as SegmentSrv
except ImportError:  # pragma: no cover - depends on the install
    SegmentationResultMsg = None
    SegmentSrv = None

MARKER_NS = "iterprime"


@dataclass
class Outcome:
    """Everything published for one processed frame."""

    header: Any  # std_msgs/Header of the source image
    result: SegmentationResult
    point: MaskPoint3D | None  # 3-D centroid, None without (valid) depth
    processing_time: float  # seconds in the model (set_image + segment)
    latency: float  # seconds from the image stamp to publication (or processing time if no stamp)
    dropped_frames: int


def mask_msg(result: SegmentationResult, header) -> Image:
    """mono8 0/255, the image's size and header."""
    return numpy_to_msg(result.mask.astype(np.uint8) * 255, "mono8", header=header)


def centroid_msg(point: MaskPoint3D, header) -> PointStamped:
    msg = PointStamped()
    msg.header = header
    msg.point = Point(x=point.x, y=point.y, z=point.z)
    return msg


def markers_msg(outcome: Outcome, diameter: float = 0.05) -> MarkerArray:
    """Sphere + text at the 3-D centroid; a single DELETEALL when there is no 3-D target."""
    arr = MarkerArray()
    if outcome.point is None or not outcome.result.found:
        clear = Marker()
        clear.header = outcome.header
        clear.ns = MARKER_NS
        clear.action = Marker.DELETEALL
        arr.markers.append(clear)
        return arr
    p = outcome.point
    sphere = Marker()
    sphere.header = outcome.header
    sphere.ns = MARKER_NS
    sphere.id = 0
    sphere.type = Marker.SPHERE
    sphere.action = Marker.ADD
    sphere.pose.position = Point(x=p.x, y=p.y, z=p.z)
    sphere.pose.orientation.w = 1.0
    sphere.scale.x = sphere.scale.y = sphere.scale.z = float(diameter)
    sphere.color = ColorRGBA(r=0.1, g=0.9, b=0.2, a=0.9)
    text = Marker()
    text.header = outcome.header
    text.ns = MARKER_NS
    text.id = 1
    text.type = Marker.TEXT_VIEW_FACING
    text.action = Marker.ADD
    # optical frame (REP 103): -y is up in the image, so the label floats above the sphere
    text.pose.position = Point(x=p.x, y=p.y - 1.5 * float(diameter), z=p.z)
    text.pose.orientation.w = 1.0
    text.scale.z = max(0.02, 0.6 * float(diameter))
    text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    text.text = f"{outcome.result.expression[:60]} ({outcome.result.score:.2f})"
    arr.markers.extend([sphere, text])
    return arr


def _fallback_overlay(rgb: np.ndarray, result: SegmentationResult) -> np.ndarray:
    """Minimal overlay (heatmap tint + mask + centroid dot) if ros2_iterprime.visualize is unavailable."""
    out = rgb.astype(np.float32)
    heat = np.clip(result.heatmap, 0.0, 1.0)[..., None] if result.heatmap.shape == rgb.shape[:2] else 0.0
    out = out * (1 - 0.35 * heat) + np.array([255.0, 64.0, 0.0]) * 0.35 * heat
    m = result.mask
    out[m] = out[m] * 0.5 + np.array([0.0, 255.0, 0.0]) * 0.5
    if result.centroid is not None:
        u, v = int(round(result.centroid[0])), int(round(result.centroid[1]))
        out[max(0, v - 3): v + 4, max(0, u - 3): u + 4] = (255.0, 0.0, 0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_overlay_rgb(rgb: np.ndarray, result: SegmentationResult) -> np.ndarray:
    try:
        from .visualize import render_overlay
    except ImportError:  # pragma: no cover - the core ships visualize
        return _fallback_overlay(rgb, result)
    return render_overlay(rgb, result)


def overlay_msg(rgb: np.ndarray, result: SegmentationResult, header) -> Image:
    """bgr8 overlay (mask, heatmap, centroid, expression text), the image's size and header."""
    over = render_overlay_rgb(rgb, result)
    return numpy_to_msg(np.ascontiguousarray(over[:, :, ::-1]), "bgr8", header=header)


def summary_dict(outcome: Outcome) -> dict:
    r = outcome.result
    d = r.summary()
    d.update(
        frame_id=outcome.header.frame_id,
        stamp={"sec": int(outcome.header.stamp.sec), "nanosec": int(outcome.header.stamp.nanosec)},
        centroid_3d=list(outcome.point.as_tuple()) if outcome.point is not None else None,
        depth_used=outcome.point is not None,
        depth_points=outcome.point.n_points if outcome.point is not None else 0,
        processing_time=float(outcome.processing_time),
        latency=float(outcome.latency),
        dropped_frames=int(outcome.dropped_frames),
    )
    return d


def json_msg(outcome: Outcome) -> String:
    return String(data=json.dumps(summary_dict(outcome)))


def result_msg(outcome: Outcome, mask: Image | None = None):
    """ros2_iterprime_msgs/SegmentationResult (requires the interface package)."""
    if SegmentationResultMsg is None:
        raise RuntimeError("ros2_iterprime_msgs is not installed")
    r = outcome.result
    msg = SegmentationResultMsg()
    msg.header = outcome.header
    msg.expression = r.expression
    msg.primary_word = r.primary_word or ""
    msg.found = bool(r.found)
    msg.mask = mask if mask is not None else mask_msg(r, outcome.header)
    msg.score = float(r.score)
    if r.bbox is not None:
        x0, y0, x1, y1 = r.bbox
        msg.bbox = RegionOfInterest(x_offset=int(x0), y_offset=int(y0), width=int(x1 - x0), height=int(y1 - y0))
    if r.centroid is not None:
        msg.centroid_px = Point(x=float(r.centroid[0]), y=float(r.centroid[1]), z=0.0)
    if outcome.point is not None:
        p = outcome.point
        msg.centroid_3d = Point(x=p.x, y=p.y, z=p.z)
        msg.depth_used = True
        msg.depth_points = int(min(p.n_points, 2**32 - 1))
    msg.rounds = int(max(0, min(255, r.rounds)))
    msg.processing_time = float(outcome.processing_time)
    msg.latency = float(outcome.latency)
    msg.dropped_frames = int(min(outcome.dropped_frames, 2**32 - 1))
    return msg
