"""The node's outputs for one answered job, as ROS messages of any message classes (no ROS import).

One :class:`Outcome` per answered job; the functions here build every output message from it, with the
message classes of a :class:`MessageKit`: rclpy's in the node (``ros2_iterprime.ros.outputs``), rosbags'
in the offline bag replay (``ros2_iterprime.replay``), so both write the same outputs with the same
semantics.

Not-found semantics (a grasp planner must never act on a guess): unless ``outcome.found``, ``~/mask`` is
all zeros, ``~/markers`` is a DELETEALL, no ``~/centroid`` or ``~/pose`` is published, ``~/points`` is
empty, and the result carries ``found=false`` with the fallback guess in ``fallback_mask``. No published
number is ever non-finite (:func:`finite_or_none` guards the 3-D values once more, whatever the geometry
code returned).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geometry.camera import MaskPoint3D, PinholeIntrinsics
from ..geometry.target import Target3D
from ..results import SegmentationResult
from .image import numpy_to_msg
from .pointcloud2 import numpy_to_pointcloud2

MARKER_NS = "iterprime"

# Result statuses (ros2_iterprime_msgs/SegmentationResult STATUS_* constants).
OK = "ok"
NOT_FOUND = "not_found"
LOW_CONFIDENCE = "low_confidence"
INVALID_IMAGE = "invalid_image"
INVALID_EXPRESSION = "invalid_expression"
MODEL_ERROR = "model_error"
OUT_OF_MEMORY = "out_of_memory"
LOST = "lost"
NO_FRAME = "no_frame"  # answered by the node's scheduler itself
FRAME_TOO_OLD = "frame_too_old"
STATUSES = (OK, NOT_FOUND, LOW_CONFIDENCE, LOST, NO_FRAME, FRAME_TOO_OLD, INVALID_IMAGE, INVALID_EXPRESSION,
            MODEL_ERROR, OUT_OF_MEMORY)


@dataclass(frozen=True)
class MessageKit:
    """The message classes the builders use: each is called with keyword fields (``Point(x=..)``) or none,
    and ``Marker`` carries its constants (ADD, DELETE, DELETEALL, SPHERE, CUBE, TEXT_VIEW_FACING).
    ``SegmentationResult`` is None when ros2_iterprime_msgs is not available."""

    Image: Any
    RegionOfInterest: Any
    Point: Any
    PointStamped: Any
    Pose: Any
    PoseStamped: Any
    Quaternion: Any
    Vector3: Any
    ColorRGBA: Any
    String: Any
    Marker: Any
    MarkerArray: Any
    PointCloud2: Any
    PointField: Any
    SegmentationResult: Any = None


@dataclass
class Outcome:
    """Everything published for one answered job.

    Attributes:
        header: std_msgs/Header of the source image (an empty header with the node's time when no frame).
        expression: the expression answered.
        status: one of :data:`STATUSES`; ``found`` is ``status == OK``.
        message: detail for a non-ok status.
        result: the library's result (None when no model ran).
        point: 3-D centroid in the image's optical frame (None without valid depth or when not found).
        processing_time: seconds in the model; latency: seconds from the image stamp to publication.
        dropped_frames: cumulative frames dropped because the model was busy.
        size: (width, height) of the source image ((0, 0) when no frame).
        target: the cleaned cloud, centroid and box in the optical frame (None when not available,
            ``depth_message`` says why); target_in_frame: the same in ``target_frame`` (None when not
            set or no transform, ``target_message`` says why); intrinsics: the camera used (overlay box).
    """

    header: Any
    expression: str
    status: str
    message: str = ""
    result: SegmentationResult | None = None
    point: MaskPoint3D | None = None
    processing_time: float = 0.0
    latency: float = 0.0
    dropped_frames: int = 0
    size: tuple[int, int] = (0, 0)
    target: Target3D | None = None
    target_in_frame: Target3D | None = None
    target_frame: str = ""
    depth_message: str = ""
    target_message: str = ""
    intrinsics: PinholeIntrinsics | None = None
    source: str = "grounding"  # 'grounding' | 'tracking' | 'none' (mode track)
    object_score: float | None = None  # the tracker's object-presence logit (mode track)
    frames_since_grounding: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.status == OK and self.result is not None

    @property
    def confidence(self) -> float:
        return float(self.result.confidence) if self.result is not None else 0.0


def unregistered_depth_message(depth_frame: str, colour_frame: str) -> str:
    """Why a depth image of another frame than the colour image gives no 3-D output."""
    return (f"depth image frame {depth_frame!r} differs from the colour image frame {colour_frame!r}: the depth is "
            f"not registered to the colour image, so no 3-D output (use a registered stream, e.g. "
            f"aligned_depth_to_color/image_raw)")


def camera_model_note(intrinsics: PinholeIntrinsics, rectified: bool) -> str:
    """Why the back-projection may be wrong for this CameraInfo ('' when it looks rectified, or is declared so)."""
    if rectified:
        return ""
    why = [w for w, bad in (("non-zero distortion D", intrinsics.has_distortion),
                            ("K different from P", intrinsics.k_differs_from_p)) if bad]
    if not why:
        return ""
    return (f"CameraInfo has {' and '.join(why)}: 3-D assumes rectified images (fx, fy, cx, cy from P); if "
            f"'image'/'depth' are unrectified (image_raw), points carry the lens error: use the rectified "
            f"streams, or set images_rectified:=true when they are rectified already")


def attach_3d(o: Outcome, rgb: np.ndarray, depth_m: np.ndarray, depth_frame: str, intrinsics: PinholeIntrinsics,
              params: Any, target_frame: str = "", to_target_frame: Any = None, note: str = "") -> None:
    """The 3-D step of a found target: fills ``o.target``, ``o.point`` (optical frame), ``o.target_in_frame``
    (``target_frame``, through ``to_target_frame(target_frame, header) -> (RigidTransform | None, reason)``)
    or says why not in ``o.depth_message`` / ``o.target_message``. ``note``: a camera-model warning kept in
    ``depth_message``. Depth of another frame than the colour image's (both set) is refused."""
    from ..geometry.target import target_3d

    colour_frame = str(getattr(o.header, "frame_id", "") or "")
    depth_frame = str(depth_frame or "")
    if colour_frame and depth_frame and colour_frame != depth_frame:
        o.depth_message = unregistered_depth_message(depth_frame, colour_frame)
        return
    try:
        t = target_3d(o.result.mask, rgb, depth_m, intrinsics, params)
    except Exception as exc:  # InvalidGeometryError (unregistered depth, ...) or anything unexpected
        o.depth_message = f"3-D failed: {type(exc).__name__}: {str(exc)[:200]}"
        return
    o.intrinsics = intrinsics
    if not t.ok:
        o.depth_message = t.reason + (f"; {note}" if note else "")
        return
    o.depth_message = note
    o.target = t
    o.point = finite_or_none(t.centroid_point())
    if target_frame and to_target_frame is not None:
        try:
            tf, reason = to_target_frame(target_frame, o.header)
            if tf is not None:
                o.target_in_frame = t.transformed(tf)
        except Exception as exc:  # a TF failure never costs the optical-frame result
            reason = f"transform to {target_frame} failed: {type(exc).__name__}: {str(exc)[:200]}"
        o.target_message = reason  # why not, or a note such as "latest transform used", or ""


def tracked_result(tr: Any, base: SegmentationResult | None) -> SegmentationResult:
    """A tracked frame (``TrackResult``) as a SegmentationResult: its mask, the grounding's words and scores."""
    return SegmentationResult(
        expression=tr.expression, mask=tr.mask, score=float(base.score) if base is not None else 0.0,
        bbox=tr.bbox, centroid=tr.centroid, heatmap=np.zeros((0, 0), np.float32),  # no Grad-CAM on this frame
        primary_word=base.primary_word if base is not None else None,
        kept_tokens=list(base.kept_tokens) if base is not None else [],
        rounds=base.rounds if base is not None else 0,
        match_probs=list(base.match_probs) if base is not None else [],
        found=not tr.lost, timings=dict(tr.timings))


def track_status(tr: Any, base: SegmentationResult | None, base_status: tuple[str, str],
                 lost_threshold: float) -> tuple[str, str, SegmentationResult | None]:
    """(status, message, result) of one tracked frame (mode track; the node and the bag replay).

    ``tr``: the ReferringTracker's TrackResult; ``base``: the grounding the track was seeded from and
    ``base_status`` its (status, message) (ok / not_found / low_confidence). A lost frame is status
    ``lost`` (so: empty mask, no 3-D), a grounding that found nothing is its own status.
    """
    g = tr.grounding
    if tr.source == "grounding" and g is not None and not tr.lost and base_status[0] == OK:
        return OK, "", g
    if tr.source == "grounding" and g is not None:
        status, message = base_status
        if status == OK:  # found, yet the tracker could not take the mask
            status, message = LOST, "the grounding's mask did not seed a track"
        return status, message, g  # its mask is the fallback guess: the outputs never publish it as the target
    if base is not None and base_status[0] == LOW_CONFIDENCE:
        return base_status[0], base_status[1], tracked_result(tr, base)  # a track seeded by a low-confidence grounding
    if tr.lost:
        message = ("no track: the last grounding found nothing; re-grounding after lost_frames / lost_seconds"
                   if tr.source == "none" else
                   (f"object score {tr.object_score:.2f} < lost_threshold {lost_threshold:g}"
                    if tr.object_score is not None and tr.object_score < lost_threshold
                    else "the tracked mask is empty"))
        return LOST, message, tracked_result(tr, base)
    return OK, "", tracked_result(tr, base)


def classify(result: SegmentationResult, min_confidence: float) -> tuple[str, str]:
    """(status, message) of a grounding: ok, not_found or low_confidence (below ``min_confidence``)."""
    if not result.found:
        return NOT_FOUND, "no mask proposal passed the selection filters"
    if result.confidence < min_confidence:
        return LOW_CONFIDENCE, f"confidence {result.confidence:.3f} < min_confidence {min_confidence:g}"
    return OK, ""


def finite_or_none(point: MaskPoint3D | None) -> MaskPoint3D | None:
    """The point when all its coordinates are finite, else None (last line of defence)."""
    if point is None:
        return None
    return point if all(math.isfinite(v) for v in point.as_tuple()) else None


def _finite(x: float, default: float = 0.0) -> float:
    x = float(x)
    return x if math.isfinite(x) else default


def _mono8(mask: np.ndarray, header, kit: MessageKit):
    return numpy_to_msg(mask.astype(np.uint8) * 255, "mono8", header, kit.Image)


def mask_msg(outcome: Outcome, *, kit: MessageKit):
    """mono8 0/255 of the image's size and header: the object's mask when found, all zeros otherwise."""
    w, h = outcome.size
    if outcome.found:
        return _mono8(outcome.result.mask, outcome.header, kit)
    return _mono8(np.zeros((h, w), bool), outcome.header, kit)


def fallback_mask_msg(outcome: Outcome, *, kit: MessageKit):
    """The fallback guess (not_found / low_confidence) as mono8, or an empty 0x0 image."""
    r = outcome.result
    if r is None or outcome.found or outcome.status not in (NOT_FOUND, LOW_CONFIDENCE) or r.mask.size == 0:
        img = kit.Image()
        img.header = outcome.header
        img.encoding = "mono8"
        return img
    return _mono8(r.mask, outcome.header, kit)


def centroid_msg(point: MaskPoint3D, header, *, kit: MessageKit):
    msg = kit.PointStamped()
    msg.header = header
    msg.point = kit.Point(x=float(point.x), y=float(point.y), z=float(point.z))
    return msg


def _marker(kit: MessageKit, header, marker_id: int, kind: int, action: int | None = None):
    m = kit.Marker()
    m.header = header
    m.ns = MARKER_NS
    m.id = marker_id
    m.type = kind
    m.action = kit.Marker.ADD if action is None else action
    m.pose.orientation.w = 1.0
    return m


def markers_msg(outcome: Outcome, diameter: float = 0.05, *, kit: MessageKit):
    """Sphere + text at the 3-D centroid and a CUBE for the box; one DELETEALL without a found 3-D target."""
    Marker = kit.Marker  # noqa: N806
    arr = kit.MarkerArray()
    point = finite_or_none(outcome.point)
    if point is None or not outcome.found:
        arr.markers.append(_marker(kit, outcome.header, 0, Marker.SPHERE, Marker.DELETEALL))
        return arr
    d = float(diameter)
    sphere = _marker(kit, outcome.header, 0, Marker.SPHERE)
    sphere.pose.position = kit.Point(x=point.x, y=point.y, z=point.z)
    sphere.scale.x = sphere.scale.y = sphere.scale.z = d
    sphere.color = kit.ColorRGBA(r=0.1, g=0.9, b=0.2, a=0.9)
    text = _marker(kit, outcome.header, 1, Marker.TEXT_VIEW_FACING)
    # optical frame (REP 103): -y is up in the image, so the label floats above the sphere
    text.pose.position = kit.Point(x=point.x, y=point.y - 1.5 * d, z=point.z)
    text.scale.z = max(0.02, 0.6 * d)
    text.color = kit.ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    text.text = f"{outcome.expression[:60]} ({outcome.confidence:.2f})"
    arr.markers.extend([sphere, text])
    box = outcome.target.box if outcome.target is not None else None
    if box is not None:
        cube = _marker(kit, outcome.header, 2, Marker.CUBE)
        cube.pose = pose_of(box.center, box.quaternion, kit=kit)
        cube.scale.x, cube.scale.y, cube.scale.z = (float(v) for v in box.size)
        cube.color = kit.ColorRGBA(r=0.1, g=0.6, b=1.0, a=0.35)
        arr.markers.append(cube)
    else:  # a box from an earlier result must not linger
        arr.markers.append(_marker(kit, outcome.header, 2, Marker.CUBE, Marker.DELETE))
    return arr


def pose_of(center, quaternion, *, kit: MessageKit):
    """geometry_msgs/Pose from a centre (3,) and a unit quaternion (x, y, z, w)."""
    c = [float(v) for v in center]
    q = [float(v) for v in quaternion]
    return kit.Pose(position=kit.Point(x=c[0], y=c[1], z=c[2]),
                    orientation=kit.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))


def points_msg(outcome: Outcome, *, kit: MessageKit):
    """~/points: the cleaned cloud (x y z float32 + packed rgb) in the image's frame and header.

    An empty cloud (width 0) when there is no 3-D target, so a consumer never keeps acting on an old one.
    """
    t = outcome.target if outcome.found else None
    if t is None:
        return numpy_to_pointcloud2(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), outcome.header,
                                    kit.PointCloud2, kit.PointField)
    return numpy_to_pointcloud2(t.points, t.colors, outcome.header, kit.PointCloud2, kit.PointField)


def pose_msg(outcome: Outcome, *, kit: MessageKit):
    """~/pose: the box's centre and orientation, in ``target_frame`` when it is set (None without a
    transform at the image stamp), else in the image's optical frame. None without a 3-D target."""
    if not outcome.found:
        return None
    if outcome.target_frame:
        t, frame_id = outcome.target_in_frame, outcome.target_frame
    else:
        t, frame_id = outcome.target, outcome.header.frame_id
    if t is None or t.box is None:
        return None
    msg = kit.PoseStamped()
    msg.header.stamp = outcome.header.stamp
    msg.header.frame_id = frame_id
    msg.pose = pose_of(t.box.center, t.box.quaternion, kit=kit)
    return msg


def overlay_msg(rgb: np.ndarray, outcome: Outcome, *, kit: MessageKit):
    """bgr8 overlay (heatmap, mask outline, centroid, expression) of the image's size and header.

    Not found: the heatmap and the expression only (no mask is drawn: there is no target).
    """
    from ..visualize import render_overlay

    r = outcome.result
    if r is not None and not outcome.found:
        r = _without_mask(r)
    if r is not None and r.heatmap.shape != r.mask.shape:
        r = _with_heatmap(r)
    over = render_overlay(rgb, r) if r is not None else rgb
    if outcome.found and outcome.target is not None and outcome.target.box is not None \
            and outcome.intrinsics is not None:
        over = draw_box(over, outcome.target.box.corners(), outcome.intrinsics)
    return numpy_to_msg(np.ascontiguousarray(over[:, :, ::-1]), "bgr8", outcome.header, kit.Image)


def draw_box(rgb: np.ndarray, corners: np.ndarray, intrinsics: PinholeIntrinsics) -> np.ndarray:
    """The 12 edges of a 3-D box (8 corners, optical frame) projected into the image (RGB, a copy).

    Corners whose indices differ in one bit share an edge (box3d.OrientedBox3D.corners). A box reaching
    behind the camera (z <= 0) is not drawn.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    c = np.asarray(corners, np.float64)
    if c.shape != (8, 3) or not np.isfinite(c).all() or (c[:, 2] <= 1e-6).any():
        return rgb
    uv = intrinsics.scaled_to(rgb.shape[1], rgb.shape[0]).project(c)
    img = PILImage.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(img)
    width = max(1, min(rgb.shape[:2]) // 240 + 1)
    for i in range(8):
        for bit in (1, 2, 4):
            j = i ^ bit
            if j > i:
                draw.line([tuple(uv[i]), tuple(uv[j])], fill=(40, 160, 255), width=width)
    return np.asarray(img)


def _with_heatmap(r: SegmentationResult) -> SegmentationResult:
    import dataclasses

    return dataclasses.replace(r, heatmap=np.zeros(r.mask.shape, np.float32))


def _without_mask(r: SegmentationResult) -> SegmentationResult:
    import dataclasses

    return dataclasses.replace(r, mask=np.zeros_like(r.mask), bbox=None, centroid=None)


def summary_dict(outcome: Outcome) -> dict:
    """JSON-ready summary (~/result_json); the same facts as ~/result, without images."""
    r = outcome.result
    d = r.summary() if r is not None else {"expression": outcome.expression, "image_size": list(outcome.size)}
    point = finite_or_none(outcome.point) if outcome.found else None
    if not outcome.found:
        d.update(bbox=None, centroid=None, mask_area=0)
    t = outcome.target if outcome.found else None
    tt = outcome.target_in_frame if outcome.found else None

    def box(tgt):
        if tgt is None or tgt.box is None:
            return None
        return {"center": [float(v) for v in tgt.box.center], "quaternion_xyzw": [float(v) for v in tgt.box.quaternion],
                "size": [float(v) for v in tgt.box.size]}
    d.update(
        expression=outcome.expression,
        status=outcome.status,
        message=outcome.message,
        found=outcome.found,
        confidence=_finite(outcome.confidence),
        frame_id=outcome.header.frame_id,
        stamp={"sec": int(outcome.header.stamp.sec), "nanosec": int(outcome.header.stamp.nanosec)},
        centroid_3d=list(point.as_tuple()) if point is not None else None,
        depth_used=point is not None,
        depth_points=point.n_points if point is not None else 0,
        depth_message=outcome.depth_message,
        box_3d=box(t),
        target_frame=outcome.target_frame,
        target_valid=tt is not None,
        target_message=outcome.target_message,
        centroid_target=[float(v) for v in tt.centroid] if tt is not None and tt.centroid is not None else None,
        box_target=box(tt),
        source=outcome.source,
        object_score=None if outcome.object_score is None else _finite(outcome.object_score),
        frames_since_grounding=outcome.frames_since_grounding,
        processing_time=_finite(outcome.processing_time),
        latency=_finite(outcome.latency),
        dropped_frames=int(outcome.dropped_frames),
    )
    d.update(outcome.extra)
    return d


def _json_safe(obj):
    """Non-finite floats -> None, recursively (JSON has no NaN; consumers must never see one)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def json_text(outcome: Outcome) -> str:
    """~/result_json's text: :func:`summary_dict` as JSON (non-finite numbers become null)."""
    return json.dumps(_json_safe(summary_dict(outcome)), allow_nan=False)


def json_msg(outcome: Outcome, *, kit: MessageKit):
    return kit.String(data=json_text(outcome))


def result_msg(outcome: Outcome, mask: Any = None, *, kit: MessageKit):
    """ros2_iterprime_msgs/SegmentationResult (requires the interface package)."""
    if kit.SegmentationResult is None:
        raise RuntimeError("ros2_iterprime_msgs is not installed")
    r = outcome.result
    msg = kit.SegmentationResult()
    msg.header = outcome.header
    msg.expression = outcome.expression
    msg.status = outcome.status
    msg.message = outcome.message
    msg.found = outcome.found
    msg.confidence = _finite(outcome.confidence)
    msg.mask = mask if mask is not None else mask_msg(outcome, kit=kit)
    msg.fallback_mask = fallback_mask_msg(outcome, kit=kit)
    if r is not None:
        msg.primary_word = r.primary_word or ""
        msg.score = _finite(r.score)
        msg.rounds = int(max(0, min(255, r.rounds)))
    if outcome.found:
        if r.bbox is not None:
            x0, y0, x1, y1 = r.bbox
            msg.bbox = kit.RegionOfInterest(x_offset=int(x0), y_offset=int(y0), width=int(x1 - x0),
                                        height=int(y1 - y0))
        if r.centroid is not None:
            msg.centroid_px = kit.Point(x=_finite(r.centroid[0]), y=_finite(r.centroid[1]), z=0.0)
        point = finite_or_none(outcome.point)
        if point is not None:
            msg.centroid_3d = kit.Point(x=point.x, y=point.y, z=point.z)
            msg.depth_used = True
            msg.depth_points = int(min(point.n_points, 2**32 - 1))
            if outcome.target is not None and outcome.target.box is not None:
                b = outcome.target.box
                msg.box_pose = pose_of(b.center, b.quaternion, kit=kit)
                msg.box_size = kit.Vector3(x=float(b.size[0]), y=float(b.size[1]), z=float(b.size[2]))
        tt = outcome.target_in_frame
        if point is not None and tt is not None and tt.centroid is not None:
            msg.target_valid = True
            c = [float(v) for v in tt.centroid]
            msg.centroid_target = kit.Point(x=c[0], y=c[1], z=c[2])
            if tt.box is not None:
                msg.box_pose_target = pose_of(tt.box.center, tt.box.quaternion, kit=kit)
    msg.source = outcome.source
    msg.tracking = outcome.object_score is not None
    msg.object_score = _finite(outcome.object_score) if outcome.object_score is not None else 0.0
    fsg = outcome.frames_since_grounding
    msg.frames_since_grounding = int(min(max(fsg, 0), 2**32 - 1)) if fsg is not None else 0
    msg.depth_message = outcome.depth_message
    msg.target_frame = outcome.target_frame
    msg.target_message = outcome.target_message
    msg.processing_time = _finite(outcome.processing_time)
    msg.latency = _finite(outcome.latency)
    msg.dropped_frames = int(min(outcome.dropped_frames, 2**32 - 1))
    return msg
