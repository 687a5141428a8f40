"""The node's output messages: :mod:`ros2_iterprime.messages.outputs` with rclpy's message classes.

Everything about what is published for an :class:`Outcome` (not-found semantics, finite numbers, the
result fields) lives in ``messages.outputs``, shared with the offline bag replay; this module binds it
to the rclpy classes (and the optional ``ros2_iterprime_msgs``) and keeps the names the node uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import Point, PointStamped, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from ..messages import outputs as _m
from ..messages.outputs import (  # noqa: F401 (the node's modules use these names from here)
    FRAME_TOO_OLD,
    INVALID_EXPRESSION,
    INVALID_IMAGE,
    LOST,
    LOW_CONFIDENCE,
    MARKER_NS,
    MODEL_ERROR,
    NO_FRAME,
    NOT_FOUND,
    OK,
    OUT_OF_MEMORY,
    STATUSES,
    MessageKit,
    Outcome,
    draw_box,
    finite_or_none,
    json_text,
    summary_dict,
)

try:  # custom interfaces: optional (the node also works with standard messages alone)
    from ros2_iterprime_msgs.msg import SegmentationResult as SegmentationResultMsg
    from ros2_iterprime_msgs.srv import Segment as SegmentSrv
except ImportError:  # pragma: no cover - depends on the install
    SegmentationResultMsg = None
    SegmentSrv = None

#: rclpy's message classes for the shared builders
KIT = MessageKit(Image=Image, RegionOfInterest=RegionOfInterest, Point=Point, PointStamped=PointStamped, Pose=Pose,
                 PoseStamped=PoseStamped, Quaternion=Quaternion, Vector3=Vector3, ColorRGBA=ColorRGBA, String=String,
                 Marker=Marker, MarkerArray=MarkerArray, PointCloud2=PointCloud2, PointField=PointField,
                 SegmentationResult=SegmentationResultMsg)


def mask_msg(outcome: Outcome) -> Image:
    return _m.mask_msg(outcome, kit=KIT)


def fallback_mask_msg(outcome: Outcome) -> Image:
    return _m.fallback_mask_msg(outcome, kit=KIT)


def centroid_msg(point, header) -> PointStamped:
    return _m.centroid_msg(point, header, kit=KIT)


def markers_msg(outcome: Outcome, diameter: float = 0.05) -> MarkerArray:
    return _m.markers_msg(outcome, diameter, kit=KIT)


def pose_of(center, quaternion) -> Pose:
    return _m.pose_of(center, quaternion, kit=KIT)


def points_msg(outcome: Outcome) -> PointCloud2:
    return _m.points_msg(outcome, kit=KIT)


def pose_msg(outcome: Outcome) -> PoseStamped | None:
    return _m.pose_msg(outcome, kit=KIT)


def overlay_msg(rgb: np.ndarray, outcome: Outcome) -> Image:
    return _m.overlay_msg(rgb, outcome, kit=KIT)


def json_msg(outcome: Outcome) -> String:
    return _m.json_msg(outcome, kit=KIT)


def result_msg(outcome: Outcome, mask: Any = None):
    """ros2_iterprime_msgs/SegmentationResult (requires the interface package)."""
    return _m.result_msg(outcome, mask, kit=KIT)
