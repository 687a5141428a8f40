"""The node's executor (ros/executor.py) under sensor traffic, in-process (one context, DDS discovery OFF).

rclpy's MultiThreadedExecutor re-submits a task that is still waiting for a pool thread and spins without
waiting meanwhile (ros2/rclpy#1452): with a camera-like stream the node spent a core on the executor alone.
Here the work is counted, not timed: pool submissions per callback and spins per message.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros]
rh.skip_without_rclpy()


def _stream_through(executor_cls, monkeypatch, seconds: float = 1.5, rate_hz: float = 200.0):
    """A node subscribing (mutually exclusive group, 5 ms callbacks, as the node's image/depth inputs)
    to a 200 Hz stream and a 100 Hz one (as /tf, reentrant); returns (messages sent, messages received,
    pool submissions, spins)."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(rh.pick_domain_id()))
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import String

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("executor_probe", context=ctx)
    got = {"a": 0, "b": 0}

    def slow(_msg):
        got["a"] += 1
        time.sleep(0.005)

    def fast(_msg):
        got["b"] += 1

    inputs = MutuallyExclusiveCallbackGroup()
    node.create_subscription(String, "a", slow, qos_profile_sensor_data, callback_group=inputs)
    node.create_subscription(String, "b", fast, 100, callback_group=ReentrantCallbackGroup())
    pub_a = node.create_publisher(String, "a", qos_profile_sensor_data)
    pub_b = node.create_publisher(String, "b", 100)
    ex = executor_cls(num_threads=4, context=ctx)
    ex.add_node(node)
    counts = {"submit": 0, "spin": 0}
    pool_submit = ex._executor.submit

    def counting_submit(*a, **k):
        counts["submit"] += 1
        return pool_submit(*a, **k)

    ex._executor.submit = counting_submit
    stop = threading.Event()

    def spin():
        while not stop.is_set() and ctx.ok():
            counts["spin"] += 1
            ex.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    t0, k = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        pub_a.publish(String(data="x"))
        if k % 2 == 0:
            pub_b.publish(String(data="y"))
        k += 1
        time.sleep(1.0 / rate_hz)
    time.sleep(0.3)
    stop.set()
    spinner.join(5)
    ex.shutdown(timeout_sec=2)
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    sent = k + (k + 1) // 2
    return sent, got["a"] + got["b"], counts["submit"], counts["spin"]


def test_the_node_executor_submits_each_callback_once_and_sleeps_between_messages(monkeypatch):
    from ros2_iterprime.ros.executor import NodeExecutor

    sent, received, submitted, spins = _stream_through(NodeExecutor, monkeypatch)
    assert received >= 0.8 * sent, (received, sent)  # the stream got through (rclpy's own: 2-40 % here)
    # one submission per callback, plus the few that find their group busy and are retried by rclpy
    assert submitted <= 1.5 * received + 20, (submitted, received)
    # the spinning thread waits between messages instead of yielding the same queued task again and again
    assert spins <= 4 * received + 50, (spins, received)


def test_rclpys_own_executor_is_the_counter_example(monkeypatch):
    """The bug this executor works around, measured the same way (if a future rclpy fixes it, this
    test says so and ros/executor.py can go)."""
    from rclpy.executors import MultiThreadedExecutor

    sent, received, submitted, spins = _stream_through(MultiThreadedExecutor, monkeypatch)
    # measured here: 8 and 176 of ~450 messages received, 9087 and 5289 submissions
    assert submitted > 3 * max(received, 1), (
        f"rclpy's MultiThreadedExecutor no longer re-submits queued tasks ({submitted} submissions, {spins} "
        f"spins for {received} messages): ros2/rclpy#1452 is fixed in this rclpy; NodeExecutor can go")
