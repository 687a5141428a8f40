"""Real sensor timing through the real node over DDS (issue 14), driven by tests/sensor_sim.py.

The rig: a robot moving in odom (TF odom -> base_link at 100 Hz, the camera on /tf_static), colour at
30 Hz, depth at 30 or 15 Hz arriving 5-40 ms AFTER its colour frame, CameraInfo; the node is the real
`iterprime_node` with a model stand-in that finds the red box after a set time (tests/sim_node.py).
Checked frame by frame against the ray-cast ground truth of each result's own stamp:

- every cloud point lies on the box's surface where the box was at that stamp (a depth image paired
  from another frame puts it off the box by the motion: ~1 cm per frame here);
- with 15 Hz depth and a slop below one depth period, only colour frames with their own depth get 3-D;
- unregistered depth (another frame_id) gives no 3-D output at all, with the reason;
- the pose in target_frame (odom) is correct for the image stamp while the camera moves, also after a
  model run longer than tf2's default 10 s cache and for a target_frame set after the image was taken;
- mode track: a periodic re-grounding that finds nothing leaves the track running.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
rh.skip_without_rclpy()
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs (scripts/build_tf2_msgs.sh) is needed for /tf")
# tf_timeout 3.0 where TF matters: the node's Python callbacks share 2 cores with other jobs here, so /tf may
# reach it a little late; the lookup waits for it (the default 0.1 s suits a machine of its own)

from sensor_msgs.msg import PointCloud2  # noqa: E402
from sensor_sim import BOX_CENTER_ODOM, BOX_ROT_ODOM, BOX_SIZE, DdsRig, SensorSim, SimConfig  # noqa: E402
from std_msgs.msg import String  # noqa: E402

NS = "/iterprime"
SIM_NODE = [sys.executable, str(rh.ROOT / "tests" / "sim_node.py")]


def _stamp(d) -> int:
    return d["stamp"]["sec"] * 1_000_000_000 + d["stamp"]["nanosec"]


def _cloud_xyz(msg) -> np.ndarray:
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, msg.point_step)
    return raw[:, :12].copy().view(np.float32).reshape(-1, 3).astype(np.float64)


def _start(params: dict, model: dict, domain: int):
    env = {"ITERPRIME_SIM_MODEL": json.dumps(model)}
    node = rh.NodeProcess(domain, params=params, command=SIM_NODE, env=env)
    c = rh.RosClient(domain)
    node.wait_ready()
    c.collect(f"{NS}/result_json", String)
    return node, c


def _finish(node, c, rig=None):
    if rig is not None:
        rig.stop()
    c.close()
    code = node.stop()
    log = node.log()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    return log


def _results(c, rig=None):
    """The node's results; with ``rig``, only those of frames the rig sent (its stamps and frame id)."""
    res = [json.loads(m.data) for m in c.received[f"{NS}/result_json"]]
    if rig is not None:
        mine = set(rig.sent["image"])
        res = [r for r in res if _stamp(r) in mine and r["frame_id"] == rig.sim.cfg.colour_frame]
    return res



def _stream_until(c, rig, enough, max_s: float = 60.0, settle_s: float = 1.5) -> None:
    """Run the rig until ``enough(results of its own frames)`` holds (or ``max_s``), then let the last
    results in. The machine may be loaded (the node's threads share 2 cores with other jobs): the test
    asks for a number of results, not for a rate."""
    rig.start(max_s)
    deadline = time.monotonic() + max_s + 5
    while time.monotonic() < deadline and rig._thread.is_alive():
        if enough(_results(c, rig)):
            break
        time.sleep(0.2)
    rig.stop()
    time.sleep(settle_s)


def _ok(n):
    return lambda res: sum(r["status"] == "ok" for r in res) >= n


LATE = "the depth stream is late"  # the node's reason when a frame's own depth had not arrived in time


def _late(r) -> bool:
    """No 3-D because the frame's own depth had not reached the node when the model finished: on this
    shared 2-core host the node's callbacks run up to ~0.4 s behind the rig (measured), a real outcome
    the node must report, never paper over with a neighbour's depth."""
    return not r["depth_used"] and "sync_slop" in r["depth_message"] and LATE in r["depth_message"]


def _own_depth_not_received(r, slop: float) -> bool:
    """No 3-D, and the node never received this frame's depth: late (above), or lost on the way (a starved
    node's best-effort depth queue, 5 deep, overflows: measured here). Then the closest depth the node did
    receive is beyond the slop; its own, had it been received and not used, would be 0 s away (a bug)."""
    if r["depth_used"] or "sync_slop" not in r["depth_message"]:
        return False
    if _late(r):
        return True
    m = re.search(r"closest is ([-+][0-9.]+) s", r["depth_message"])
    return m is not None and abs(float(m.group(1))) > slop

def test_depth_arriving_after_colour_is_paired_with_its_own_frame():
    """Continuous mode, model 0.3 s: a job starts on the newest colour frame, whose depth (5-40 ms later)
    has often not arrived yet (with the default 50 ms slop the previous frame's depth, 33 ms older, was
    taken instead: the cloud ~1 cm off the box).
    (The model time leaves the depth time to arrive even when this loaded machine delays the rig.)"""
    domain = rh.pick_domain_id()
    # sync_slop 0.02 s, below the 33 ms frame period: the neighbour's depth is never acceptable, so a wrong
    # pairing cannot hide behind the slop, and a depth that a starved node reads too late gives "no depth"
    node, c = _start({"mode": "continuous", "max_rate_hz": 0.0, "erosion_px": 2, "sync_slop": 0.02},
                     {"delay": 0.3}, domain)
    rig = None
    try:
        c.collect(f"{NS}/points", PointCloud2)
        rig = DdsRig(c, SensorSim(SimConfig(seed=1)))
        rig.wait_matched()
        _, expr_pub = c.input_publishers()
        expr_pub.publish(String(data="the red box"))
        time.sleep(0.3)
        _stream_until(c, rig, lambda res: sum(r["status"] == "ok" and r["depth_used"] for r in res) >= 10)
        results = [r for r in _results(c, rig) if r["status"] == "ok"]
        clouds = {(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec): m
                  for m in c.received[f"{NS}/points"] if m.width > 0}
    finally:
        _finish(node, c, rig)
    checked = 0
    for r in results:
        assert r["frame_id"] == "camera_color_optical_frame"
        if not r["depth_used"]:
            # every frame has its depth here (30 Hz): without it, only because the node never received it
            assert _own_depth_not_received(r, 0.02), r["depth_message"]
            continue
        cloud = clouds.get(_stamp(r))
        assert cloud is not None and cloud.header.frame_id == "camera_color_optical_frame"
        pts = _cloud_xyz(cloud)
        on = rig.sim.on_box(pts, _stamp(r))
        assert on.mean() > 0.99, (f"frame {_stamp(r)}: {100 * (1 - on.mean()):.1f} % of the cloud is off the box "
                                  f"at its stamp (depth of another frame?)")
        checked += 1
        # the latency covers the whole job, the 3-D step included (stamp -> publication)
        assert r["latency"] >= r["processing_time"]
    # matching when the job starts (before the depth arrives) gave almost none: 10 within the stream's 60 s
    assert checked >= 10, (f"only {checked} of {len(results)} frames got their depth (rig late {rig.late_s:.2f} s, "
                           f"skipped {rig.skipped}): {[r['depth_message'] for r in results if not r['depth_used']]}")


def test_15hz_depth_only_frames_with_their_own_depth_get_3d():
    domain = rh.pick_domain_id()
    node, c = _start({"mode": "continuous", "max_rate_hz": 0.0, "sync_slop": 0.02}, {"delay": 0.3}, domain)
    rig = None
    try:
        rig = DdsRig(c, SensorSim(SimConfig(depth_hz=15.0, seed=2)))
        rig.wait_matched()
        _, expr_pub = c.input_publishers()
        expr_pub.publish(String(data="the red box"))
        time.sleep(0.3)
        # which frames a job lands on depends on the model time and the host (a 0.35 s job cycle can land on
        # frames without depth for seconds): stream until both kinds were seen a few times
        with_depth = rig.sent["depth"]  # the rig's own record, growing while it streams

        def enough(res):
            ok = [r for r in res if r["status"] == "ok"]
            return (sum(r["depth_used"] for r in ok) >= 3
                    and sum(_stamp(r) not in with_depth and not _late(r) for r in ok) >= 3)

        _stream_until(c, rig, enough)
        results = [r for r in _results(c, rig) if r["status"] == "ok"]
        with_depth = set(rig.sent["depth"])
    finally:
        _finish(node, c, rig)
    used = [r for r in results if r["depth_used"]]
    for r in results:
        own = _stamp(r) in with_depth
        # never the neighbour's depth (33 ms away, beyond the 20 ms slop): 3-D only with the frame's own
        assert not r["depth_used"] or own
        if own and not r["depth_used"]:  # its own depth was sent: refused only when the node never received it
            assert _own_depth_not_received(r, 0.02), r["depth_message"]
        if not own:
            assert "sync_slop" in r["depth_message"], r["depth_message"]
    without = [r for r in results if _stamp(r) not in with_depth and not _late(r)]
    assert len(used) >= 3 and len(without) >= 3, (len(used), len(without), [r["depth_message"] for r in results])
    # 15 Hz depth: the closest depth image of a frame without its own is a colour period (33 ms) away
    assert all(_own_depth_not_received(r, 0.03) for r in without), [r["depth_message"] for r in without]


def test_unregistered_depth_is_never_used():
    domain = rh.pick_domain_id()
    node, c = _start({"mode": "continuous", "max_rate_hz": 0.0}, {"delay": 0.3}, domain)
    rig = None
    from geometry_msgs.msg import PointStamped, PoseStamped

    try:
        c.collect(f"{NS}/points", PointCloud2)
        c.collect(f"{NS}/centroid", PointStamped)
        c.collect(f"{NS}/pose", PoseStamped)
        rig = DdsRig(c, SensorSim(SimConfig(unaligned_depth=True, seed=3)))
        rig.wait_matched()
        _, expr_pub = c.input_publishers()
        expr_pub.publish(String(data="the red box"))
        time.sleep(0.3)
        _stream_until(c, rig, lambda res: sum(r["status"] == "ok" and "camera_depth_optical_frame" in
                                              r["depth_message"] for r in res) >= 5, settle_s=1.0)
        results = [r for r in _results(c, rig) if r["status"] == "ok"]
        clouds = list(c.received[f"{NS}/points"])
        centroids, poses = list(c.received[f"{NS}/centroid"]), list(c.received[f"{NS}/pose"])
    finally:
        log = _finish(node, c, rig)
    refused = 0
    for r in results:
        assert not r["depth_used"] and r["centroid_3d"] is None and r["box_3d"] is None
        # the reason names both frames
        if "camera_depth_optical_frame" in r["depth_message"]:
            assert "camera_color_optical_frame" in r["depth_message"]
            refused += 1
        else:  # no depth at all: only when the node never received one within the (default 0.05 s) slop
            assert _own_depth_not_received(r, 0.05), r["depth_message"]
    assert refused >= 5, [r["depth_message"] for r in results]
    assert clouds and all(m.width == 0 for m in clouds)
    assert not centroids and not poses
    warnings = [ln for ln in log.splitlines() if "WARN" in ln and "differs from the colour image frame" in ln]
    assert len(warnings) == 1, warnings  # one warning, not one per frame


def _pose_checks(sim: SensorSim, r: dict) -> None:
    assert r["depth_used"], (r["depth_message"], r["frame_id"], r["image_size"])
    assert r["target_valid"], r["target_message"]
    c_opt = np.array(r["centroid_3d"])
    c_odom = np.array(r["centroid_target"])
    truth = sim.camera_pose(sim.t_of(_stamp(r))).apply(c_opt)  # the camera where the image was taken
    assert np.abs(c_odom - truth).max() < 5e-4, (c_odom, truth)  # a stamp off by one frame: ~10 mm
    local = (c_odom - BOX_CENTER_ODOM) @ BOX_ROT_ODOM  # and it lies on the (static) box in odom
    assert (np.abs(local) <= BOX_SIZE / 2 + 0.004).all(), local


def _why(r: dict) -> str:
    return r["depth_message"] or r["target_message"]


def _pose_or_refusal(sim: SensorSim, r: dict) -> None:
    """A result in target_frame odom is exactly right for its image stamp, or says why it has no pose."""
    assert r["target_frame"] == "odom"
    if not r["depth_used"]:  # its depth reached a starved node too late, or never
        assert _own_depth_not_received(r, 0.02), r["depth_message"]
        assert not r["target_valid"] and r["box_target"] is None
    elif not r["target_valid"]:
        # a node starved of CPU falls behind on /tf (measured ~1 s here) and its queue drops samples: it must
        # say so (a gap, or no transform within tf_timeout), never interpolate across the gap
        assert r["target_message"] and r["box_target"] is None and r["centroid_target"] is None, r
    else:
        _pose_checks(sim, r)


def test_pose_in_target_frame_is_the_one_at_the_image_stamp_while_the_camera_moves():
    """target_frame odom, model 0.5 s: the camera moves ~15 cm and turns ~10 deg during each run."""
    domain = rh.pick_domain_id()
    # sync_slop 0.02 (below the frame period): a lost depth image is never replaced by the neighbour's
    node, c = _start({"mode": "continuous", "max_rate_hz": 0.0, "target_frame": "odom", "tf_timeout": 3.0,
                      "sync_slop": 0.02}, {"delay": 0.5}, domain)
    rig = None
    try:
        # 30 Hz camera, 100 Hz odometry. With rclpy's own MultiThreadedExecutor (ros2/rclpy#1452) the node
        # spent a core on its executor and lost most frames' depth or /tf samples here (2 of 19 results
        # with a pose in a CI run); ros/executor.py fixed that (24 of 24 in the same setting, measured)
        rig = DdsRig(c, SensorSim(SimConfig(seed=4)))
        rig.wait_matched(("image", "depth", "camera_info", "tf", "tf_static"))
        _, expr_pub = c.input_publishers()
        expr_pub.publish(String(data="the red box"))
        time.sleep(0.3)
        _stream_until(c, rig, lambda res: sum(r["status"] == "ok" and bool(r["target_valid"]) for r in res) >= 4,
                      max_s=90.0, settle_s=2.0)
        results = [r for r in _results(c, rig) if r["status"] == "ok"]
    finally:
        _finish(node, c, rig)
    valid = 0
    for r in results:
        _pose_or_refusal(rig.sim, r)
        valid += bool(r["target_valid"])
    assert valid >= 4, f"only {valid} of {len(results)} results had the transform: {[_why(r) for r in results]}"


def test_target_frame_after_a_model_run_longer_than_tf2s_default_cache():
    """on_command, model 11 s (a CPU grounding), target_frame set AFTER the image was taken: the transform
    at the image stamp is still there (listener since activation, tf_cache_time 120 s).

    A starved node may have lost that frame's depth or the /tf samples around its stamp (then it must say
    so, checked by _pose_or_refusal): the request is repeated, at most 5 times, until one result has the
    transform."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    domain = rh.pick_domain_id()
    node, c = _start({"mode": "on_command", "max_frame_age": 5.0, "tf_timeout": 3.0, "sync_slop": 0.02},
                     {"delay": 11.0}, domain)
    rig = None
    answers = []
    try:
        rig = DdsRig(c, SensorSim(SimConfig(seed=5)))
        rig.wait_matched(("image", "depth", "camera_info", "tf", "tf_static"))
        _, expr_pub = c.input_publishers()
        cli = c.node.create_client(SetParameters, f"{NS}/set_parameters")
        assert cli.wait_for_service(timeout_sec=20)

        def set_target(frame: str) -> None:
            fut = cli.call_async(SetParameters.Request(parameters=[Parameter("target_frame", value=frame)
                                                                   .to_parameter_msg()]))
            c.wait_for(lambda: fut.done(), 20, "set_parameters")
            assert fut.result().results[0].successful

        rig.start(5 * 30.0)  # longer than 5 requests can take on a loaded host (the rig is stopped at the end)
        time.sleep(1.0)
        for _ in range(5):
            set_target("")
            expr_pub.publish(String(data="the red box"))  # answered on the newest frame
            time.sleep(0.5)
            set_target("odom")  # after the image was taken, while the model runs
            n = len(answers)
            c.wait_for(lambda: len(c.received[f"{NS}/result_json"]) > n, 60, "a result")
            r = json.loads(c.received[f"{NS}/result_json"][n].data)
            answers.append(r)
            assert _stamp(r) in set(rig.sent["image"]), f"a result for a frame this test never sent: {r['frame_id']}"
            assert r["status"] == "ok" and r["processing_time"] > 10.5 and r["latency"] > 10.5, r
            _pose_or_refusal(rig.sim, r)
            if r["target_valid"]:
                break
    finally:
        _finish(node, c, rig)
    assert answers[-1]["target_valid"], [_why(r) for r in answers]


def test_track_survives_a_failed_periodic_regrounding():
    """mode track, re-grounding every 1.5 s; every grounding after the first finds nothing."""
    domain = rh.pick_domain_id()
    params = {"mode": "track", "reground_period": 1.5, "lost_threshold": -100.0, "lost_frames": 100000,
              "lost_seconds": 0.0, "use_depth": "false"}
    node, c = _start(params, {"delay": 0.05, "found_calls": 1}, domain)
    rig = None
    try:
        rig = DdsRig(c, SensorSim(SimConfig(seed=6)))
        rig.wait_matched(("image",))
        _, expr_pub = c.input_publishers()
        expr_pub.publish(String(data="the red box"))
        time.sleep(0.3)
        def enough(res):  # a re-grounding applied to a running track, and 3 frames after it
            idx = [i for i, r in enumerate(res) if r.get("grounding_applied") and r["source"] == "tracking"]
            return bool(idx) and len(res) - idx[0] >= 3

        _stream_until(c, rig, enough, max_s=60.0, settle_s=2.0)
        results = _results(c, rig)
    finally:
        _finish(node, c, rig)
    assert results and results[0]["source"] == "grounding" and results[0]["found"]
    failed = [i for i, r in enumerate(results) if r.get("grounding_applied") and r["source"] == "tracking"]
    assert failed, "no periodic re-grounding was applied: " + str([(r["source"], r.get("reground_reason"))
                                                                  for r in results])
    after = results[failed[0]:]
    assert len(after) >= 3
    assert all(r["source"] == "tracking" for r in after), [r["source"] for r in after]
    fsg = [r["frames_since_grounding"] for r in after]
    assert fsg == sorted(fsg) and fsg[0] > 0, fsg  # the same track goes on: never re-seeded, never dropped
