"""Deactivation while work is in flight, in-process (one context, DDS discovery OFF), issue 14:

- a `~/segment` call running when the node is deactivated still gets its answer (the service is not
  destroyed under the running callback; deactivation waits for it);
- the /tf listener exists from activation (use_depth) and never after: a lookup on an inactive or
  unconfigured node gets a reason and creates nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros]
rh.skip_without_rclpy()

from sim_node import TimedColourSegmenter  # noqa: E402


@pytest.fixture
def node_and_ctx(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(rh.pick_domain_id()))
    import rclpy

    from ros2_iterprime.ros.executor import NodeExecutor
    from ros2_iterprime.ros.node import IterPrimeNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", "model:=tiny-random", "-p", "autostart:=false"])
    seg = TimedColourSegmenter(delay=2.0)
    node = IterPrimeNode(segmenter=seg, context=ctx)
    ex = NodeExecutor(num_threads=4, context=ctx)  # the node's own executor (ros/entry.py)
    ex.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set() and ctx.ok():
            ex.spin_once(timeout_sec=0.05)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    yield node, ctx, ex
    stop.set()
    t.join(5)
    ex.shutdown(timeout_sec=2)
    node.close()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_a_segment_call_in_flight_is_answered_across_deactivate(node_and_ctx):
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from ros2_iterprime.ros import outputs as out
    from ros2_iterprime.ros.image import numpy_to_msg

    if out.SegmentSrv is None:
        pytest.skip("ros2_iterprime_msgs not built")
    node, ctx, ex = node_and_ctx
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    client_node = rclpy.create_node("segment_client", context=ctx)
    ex.add_node(client_node)
    try:
        cli = client_node.create_client(out.SegmentSrv, "/iterprime/segment")
        assert cli.wait_for_service(timeout_sec=10)
        req = out.SegmentSrv.Request(expression="the red box")
        img = np.full((48, 64, 3), 90, np.uint8)
        img[10:30, 20:40] = (220, 30, 30)
        req.image = numpy_to_msg(img, "rgb8")
        fut = cli.call_async(req)
        time.sleep(0.7)  # the model (2 s) is running now
        t0 = time.monotonic()
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        waited = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fut.done(), "the client never got its answer"
        res = fut.result()
        assert res.success and res.result.found, res.message
        assert waited > 0.5, "deactivate must wait for the running call"
        # after deactivation, new calls are not served
        assert node.lifecycle_state == "inactive" and node._srv is None
    finally:
        client_node.destroy_node()


def test_tf_listener_only_from_activation_to_deactivation(node_and_ctx):
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_msgs.msg import Header

    from ros2_iterprime.ros.tf import TargetFrameLookup

    if not TargetFrameLookup.importable():
        pytest.skip("neither tf2_ros nor tf2_msgs here")
    node, ctx, ex = node_and_ctx
    hdr = Header(frame_id="camera")
    hdr.stamp.sec = 5
    assert node._lookup_target_frame("base_link", hdr)[0] is None and node._tf is None  # unconfigured
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node._tf is None
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node._tf is not None and node._tf.available  # listening from activation (use_depth)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node._tf is None
    tf, reason = node._lookup_target_frame("base_link", hdr)  # e.g. a service call finishing late
    assert tf is None and "inactive" in reason and node._tf is None, "no listener is re-created"
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node._lookup_target_frame("base_link", hdr)[0] is None and node._tf is None
