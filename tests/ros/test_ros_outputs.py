"""Output messages and the TF lookup rule, without DDS (ros2_iterprime.ros.outputs / ros.tf)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from ros2_iterprime.geometry.camera import MaskPoint3D, PinholeIntrinsics  # noqa: E402
from ros2_iterprime.geometry.target import target_3d  # noqa: E402
from ros2_iterprime.geometry.transforms import RigidTransform  # noqa: E402
from ros2_iterprime.results import SegmentationResult  # noqa: E402
from ros2_iterprime.ros import outputs as out  # noqa: E402
from ros2_iterprime.ros.image import msg_to_numpy  # noqa: E402
from ros2_iterprime.ros.tf import TargetFrameLookup  # noqa: E402

H, W = 60, 80
INTR = PinholeIntrinsics(100.0, 100.0, 39.5, 29.5, W, H)


def _header(sec=12, nanosec=345, frame="cam_optical"):
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)


def _result(found=True, probs=(0.7, 0.8)):
    mask = np.zeros((H, W), bool)
    mask[20:40, 30:50] = True
    return SegmentationResult(expression="the box", mask=mask, score=1.5 if found else 0.4, bbox=(30, 20, 50, 40),
                              centroid=(39.5, 29.5), heatmap=np.zeros((H, W), np.float32), primary_word="box",
                              kept_tokens=["box"], rounds=len(probs), match_probs=list(probs), found=found)


def _target(result):
    depth = np.full((H, W), 2.0, np.float32)
    depth[20:40, 30:50] = 1.0  # a box 1 m away in front of a wall at 2 m
    return target_3d(result.mask, np.zeros((H, W, 3), np.uint8), depth, INTR)


def test_confidence_is_the_last_used_round_and_never_nonfinite():
    assert _result(probs=(0.7, 0.8)).confidence == pytest.approx(0.8)
    r = _result(probs=(0.7, 0.9, 0.5))
    r.rounds = 2  # the third round dropped and was discarded
    assert r.confidence == pytest.approx(0.9)
    assert _result(probs=(float("nan"),)).confidence == 0.0


@pytest.mark.parametrize("status", [out.NOT_FOUND, out.LOW_CONFIDENCE])
def test_not_found_means_empty_mask_no_marker_no_cloud_and_a_kept_fallback(status):
    r = _result(found=status == out.LOW_CONFIDENCE)
    o = out.Outcome(_header(), "the box", status, "why", r, MaskPoint3D(0.1, 0.2, 1.0, 50), size=(W, H),
                    target=_target(r))
    assert not o.found
    assert not msg_to_numpy(out.mask_msg(o)).any()
    fb = out.fallback_mask_msg(o)
    assert (fb.width, fb.height) == (W, H) and (msg_to_numpy(fb) > 0).sum() == r.mask.sum()
    assert [m.action for m in out.markers_msg(o).markers] == [Marker.DELETEALL]
    assert out.points_msg(o).width == 0 and out.pose_msg(o) is None
    msg = out.result_msg(o)
    assert msg.status == status and not msg.found and not msg.depth_used and msg.bbox.width == 0
    d = out.summary_dict(o)
    assert d["mask_area"] == 0 and d["centroid"] is None and d["centroid_3d"] is None and d["box_3d"] is None


def test_found_target_gives_cloud_cube_pose_and_box_overlay():
    r = _result()
    t = _target(r)
    assert t.ok
    o = out.Outcome(_header(), "the box", out.OK, "", r, t.centroid_point(), size=(W, H), target=t, intrinsics=INTR)
    cloud = out.points_msg(o)
    assert cloud.width == t.n_points and cloud.header.frame_id == "cam_optical"
    cube = [m for m in out.markers_msg(o).markers if m.type == Marker.CUBE][0]
    assert cube.pose.position.z == pytest.approx(float(t.box.center[2]))
    pose = out.pose_msg(o)
    assert pose.header.frame_id == "cam_optical" and pose.header.stamp.sec == 12
    msg = out.result_msg(o)
    assert msg.depth_used and msg.depth_points == t.n_points and msg.box_size.x == pytest.approx(float(t.box.size[0]))
    # the overlay draws the box's edges (blue) where the projected corners are
    rgb = np.zeros((H, W, 3), np.uint8)
    drawn = out.draw_box(rgb, t.box.corners(), INTR)
    uv = INTR.project(t.box.corners())
    assert (drawn[..., 2] > 200).any() and not (rgb > 0).any()
    u, v = np.round(uv[0]).astype(int)
    assert drawn[min(max(v, 0), H - 1), min(max(u, 0), W - 1), 2] > 200


def test_pose_follows_target_frame_and_is_withheld_without_a_transform():
    r = _result()
    t = _target(r)
    o = out.Outcome(_header(), "the box", out.OK, "", r, t.centroid_point(), size=(W, H), target=t,
                    target_frame="base_link", target_message="no transform")
    assert out.pose_msg(o) is None, "never publish a pose claiming base_link in the camera frame"
    tf = RigidTransform.from_matrix(np.array([[0, 0, 1, 0.5], [-1, 0, 0, 0], [0, -1, 0, 1.2], [0, 0, 0, 1.0]]))
    o.target_in_frame = t.transformed(tf)
    pose = out.pose_msg(o)
    assert pose.header.frame_id == "base_link"
    np.testing.assert_allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z],
                               tf.apply(t.box.center), atol=1e-9)
    msg = out.result_msg(o)
    assert msg.target_valid and msg.target_frame == "base_link"
    assert msg.centroid_target.x == pytest.approx(float(tf.apply(t.centroid)[0]))


def test_nonfinite_numbers_never_leave_the_node():
    r = _result()
    r.score = float("nan")
    o = out.Outcome(_header(), "x", out.OK, "", r, MaskPoint3D(float("nan"), 0.0, 1.0, 5), processing_time=float("inf"),
                    latency=float("nan"), size=(W, H))
    msg = out.result_msg(o)
    assert all(math.isfinite(v) for v in (msg.score, msg.processing_time, msg.latency, msg.centroid_3d.x))
    assert not msg.depth_used
    out.json_msg(o)  # allow_nan=False: raises if anything non-finite slipped through
    assert [m.action for m in out.markers_msg(o).markers] == [Marker.DELETEALL]


class FakeBuffer:
    """tf2_ros.Buffer's lookup_transform(target_frame, source_frame, time, timeout) -> TransformStamped."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def lookup_transform(self, target_frame, source_frame, time, timeout):
        self.calls.append((target_frame, source_frame, time.nanoseconds, timeout.nanoseconds))
        if self.fail:
            raise self.fail
        t = TransformStamped()
        t.header.frame_id, t.child_frame_id = target_frame, source_frame
        t.transform.translation.x, t.transform.translation.z = 0.5, 1.2
        t.transform.rotation.w = 1.0
        return t


def test_lookup_uses_the_image_stamp_not_the_latest_transform():
    buf = FakeBuffer()
    tf, note = TargetFrameLookup(buffer=buf).lookup("base_link", _header(12, 345), 0.25)
    assert buf.calls == [("base_link", "cam_optical", 12 * 10**9 + 345, 250_000_000)]
    assert note == "" and tf.apply(np.zeros(3)) == pytest.approx([0.5, 0.0, 1.2])
    tf, note = TargetFrameLookup(buffer=buf).lookup("base_link", _header(0, 0), 0.1)
    assert buf.calls[-1][2] == 0 and "latest transform" in note  # unstamped images: the latest, said so


def test_lookup_failures_are_reasons_not_exceptions():
    lk = TargetFrameLookup(buffer=FakeBuffer(fail=LookupError('"base_link" passed to lookupTransform does not exist')))
    tf, reason = lk.lookup("base_link", _header(), 0.1)
    assert tf is None and "cam_optical -> base_link" in reason and "does not exist" in reason
    assert TargetFrameLookup(buffer=FakeBuffer()).lookup("base_link", _header(frame=""), 0.1)[0] is None


def test_without_tf2_the_reason_says_so(monkeypatch):
    import ros2_iterprime.ros.tf as tfmod

    monkeypatch.setattr(tfmod, "_tf2_ros", lambda: None)
    monkeypatch.setattr(tfmod, "_tf_message_type", lambda: None)
    lk = TargetFrameLookup(node=object())
    assert not lk.available and "tf2_ros" in lk.unavailable_reason and "tf2_msgs" in lk.unavailable_reason
    assert lk.lookup("base_link", _header(), 0.1) == (None, lk.unavailable_reason)


def test_invalid_stamps_are_reasons_not_exceptions():
    bad = Header(frame_id="cam_optical")
    bad.stamp.sec = -5
    tf, reason = TargetFrameLookup(buffer=FakeBuffer()).lookup("base_link", bad, 0.1)
    assert tf is None and "not a valid time" in reason


def test_a_tracker_that_cannot_load_is_retried_per_expression_not_per_frame():
    from ros2_iterprime.ros.inputs import Frame
    from ros2_iterprime.ros.processing import Processor
    from ros2_iterprime.ros.track import TrackRunner

    calls = []

    def load():
        calls.append(1)
        raise FileNotFoundError("facebook/sam2.1-hiera-tiny is not in the model cache")

    settings = {"target_frame": "", "min_confidence": 0.0}
    proc = Processor(None, settings.__getitem__, lambda: 0)
    runner = TrackRunner(proc, settings.__getitem__, load)
    frame = Frame(_header(), np.zeros((H, W, 3), np.uint8), 0, 1)
    first = runner.run(frame, "the box", "expression", None, 0)
    assert first.status == out.MODEL_ERROR and "not in the model cache" in first.message
    for _ in range(5):  # stream frames: answered with the reason, no new load attempt
        o = runner.run(frame, "the box", "stream", None, 0)
        assert o.status == out.MODEL_ERROR and "cannot load the tracker" in o.message and not o.found
    assert len(calls) == 1
    runner.run(frame, "the box", "expression", None, 0)  # a new expression tries again
    assert len(calls) == 2
