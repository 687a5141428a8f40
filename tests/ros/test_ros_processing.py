"""The node's model call and 3-D step without DDS (ros2_iterprime.ros.processing), issue 14:
depth asked for after segmentation and refused from another frame, one warning for an unrectified camera
model, target_frame read once per job, latency measured after the 3-D step."""
from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ros2_iterprime.geometry.camera import PinholeIntrinsics  # noqa: E402
from ros2_iterprime.geometry.transforms import RigidTransform  # noqa: E402
from ros2_iterprime.results import SegmentationResult  # noqa: E402
from ros2_iterprime.ros import outputs as out  # noqa: E402
from ros2_iterprime.ros.inputs import DepthFrame, FixedDepth, Frame  # noqa: E402
from ros2_iterprime.ros.processing import Processor  # noqa: E402

H, W = 60, 80
S = 1_000_000_000


class BoxSegmenter:
    """Finds the box at rows 20:40, cols 30:50; records the order of calls."""

    def __init__(self, log):
        self.log = log

    def set_image(self, rgb):
        self.log.append("set_image")

    def segment(self, expression, **kw):
        self.log.append("segment")
        mask = np.zeros((H, W), bool)
        mask[20:40, 30:50] = True
        return SegmentationResult(expression, mask, 1.5, (30, 20, 50, 40), (39.5, 29.5),
                                  np.zeros((H, W), np.float32), "box", ["box"], 1, [0.8], True)


class Clock:
    def __init__(self):
        self.ns = 100 * S

    def __call__(self):
        return self.ns


class LoggedDepth:
    """A depth source that records when it is asked and makes the 3-D step 'take' 0.25 s."""

    def __init__(self, log, clock, frame_id="cam", camera_info=None):
        self.log, self.clock = log, clock
        depth = np.full((H, W), 2.0, np.float32)
        depth[20:40, 30:50] = 1.0
        self.depth = DepthFrame(Header(frame_id=frame_id), depth, 100 * S)
        self.intr = (PinholeIntrinsics.from_camera_info(camera_info) if camera_info is not None
                     else PinholeIntrinsics(100.0, 100.0, 39.5, 29.5, W, H))

    def get(self):
        self.log.append("depth")
        self.clock.ns += int(0.25 * S)
        return self.depth, self.intr

    def release(self):
        pass


def settings(**kw):
    base = {"iterations": 1, "alpha": 0.2, "pwem_mode": 0, "proposals": "cam_points", "points_per_side": 16,
            "min_confidence": 0.0, "target_frame": "", "use_depth": True, "sync_slop": 0.05, "erosion_px": 0,
            "min_depth": 0.05, "max_depth": 20.0, "voxel_size": 0.0, "max_points": 20000, "min_depth_points": 10,
            "images_rectified": False}
    base.update(kw)
    return base


def frame(frame_id="cam"):
    return Frame(Header(stamp=Time(sec=100, nanosec=0), frame_id=frame_id), np.zeros((H, W, 3), np.uint8), 100 * S, 1)


def test_depth_is_asked_for_after_segmentation_and_latency_includes_the_3d_step():
    log, clock = [], Clock()
    proc = Processor(BoxSegmenter(log), settings().__getitem__, clock)
    clock.ns += int(0.1 * S)  # the frame is 0.1 s old when the job starts
    o = proc.run(frame(), "the box", LoggedDepth(log, clock))
    assert log == ["set_image", "segment", "depth"]
    assert o.status == out.OK and o.point is not None and abs(o.point.z - 1.0) < 1e-6
    assert o.latency == pytest.approx(0.35, abs=1e-6)  # stamp -> after the 3-D step, not before it


def test_depth_from_another_frame_is_refused_with_the_reason():
    log, clock = [], Clock()
    warned = []
    proc = Processor(BoxSegmenter(log), settings().__getitem__, clock)
    proc.warn = lambda cause, text: warned.append(cause)
    o = proc.run(frame("camera_color_optical_frame"), "the box", LoggedDepth(log, clock, "camera_depth_optical_frame"))
    assert o.status == out.OK and o.target is None and o.point is None
    assert "camera_depth_optical_frame" in o.depth_message and "camera_color_optical_frame" in o.depth_message
    assert out.points_msg(o).width == 0 and out.pose_msg(o) is None and warned == ["depth_frame"]
    # an unset frame_id on either side cannot be compared: used as before
    assert proc.run(frame(""), "the box", LoggedDepth(log, clock, "x")).point is not None


@pytest.mark.parametrize("d,k_eq_p,rectified,warns", [
    ([0.1, -0.05, 0, 0, 0], True, False, True),   # distortion, raw stream
    ([0.0] * 5, False, False, True),              # K != P (image_raw of a calibrated camera)
    ([0.1, -0.05, 0, 0, 0], False, True, False),  # declared rectified: no warning
    ([0.0] * 5, True, False, False),              # a clean rectified CameraInfo
])
def test_an_unrectified_camera_model_gets_one_warning(d, k_eq_p, rectified, warns):
    k = [100.0, 0, 39.5, 0, 100.0, 29.5, 0, 0, 1]
    p = [100.0, 0, 39.5, 0, 0, 100.0, 29.5, 0, 0, 0, 1, 0] if k_eq_p else [95.0, 0, 41.0, 0, 0, 95.0, 28.0, 0, 0, 0, 1, 0]
    info = NS(k=k, p=p, d=d, width=W, height=H, roi=None)
    log, clock, warned = [], Clock(), []
    proc = Processor(BoxSegmenter(log), settings(images_rectified=rectified).__getitem__, clock)
    proc.warn = lambda cause, text: warned.append((cause, text))
    o = proc.run(frame(), "the box", LoggedDepth(log, clock, camera_info=info))
    assert o.point is not None  # a warning, not a refusal
    assert bool(o.depth_message) == warns and bool(warned) == warns
    if warns:
        assert "rectified" in o.depth_message and warned[0][0] == "camera_model"


def test_target_frame_is_read_once_per_job():
    """A `ros2 param set target_frame` while a job runs must not label one frame's numbers as another's."""
    reads = iter(["base_link", "map", "map", "map"])
    s = settings()

    def setting(name):
        return next(reads) if name == "target_frame" else s[name]

    asked = []

    def to_target(name, header):
        asked.append(name)
        return RigidTransform([1.0, 0, 0], [0, 0, 0, 1]), ""

    log, clock = [], Clock()
    proc = Processor(BoxSegmenter(log), setting, clock, to_target)
    o = proc.run(frame(), "the box", LoggedDepth(log, clock))
    assert asked == [o.target_frame] and o.target_in_frame is not None
    pose = out.pose_msg(o)
    assert pose.header.frame_id == asked[0]


def test_a_fixed_depth_without_camera_info_says_so():
    log, clock = [], Clock()
    proc = Processor(BoxSegmenter(log), settings().__getitem__, clock)
    o = proc.run(frame(), "the box", FixedDepth(None, None))
    assert o.point is None and "sync_slop" in o.depth_message


def test_input_warnings_reach_diagnostics():
    from diagnostic_msgs.msg import DiagnosticStatus

    from ros2_iterprime.ros.diagnostics import NodeStats, diagnostic_status

    clock = [100.0]
    stats = NodeStats(clock=lambda: clock[0])
    kw = dict(state="active", model="m", device="cpu", mode="on_command", expression=None, model_loaded=True,
              configure_error=None)
    assert diagnostic_status("n", stats=stats, **kw).level == DiagnosticStatus.OK
    stats.note("camera_model", "CameraInfo has non-zero distortion D: ...")
    st = diagnostic_status("n", stats=stats, **kw)
    values = {v.key: v.value for v in st.values}
    assert st.level == DiagnosticStatus.WARN and "camera_model" in st.message
    assert values["warning.camera_model"].startswith("CameraInfo has non-zero distortion D")
    clock[0] += 31.0  # not seen for 30 s: the condition is gone
    assert diagnostic_status("n", stats=stats, **kw).level == DiagnosticStatus.OK
