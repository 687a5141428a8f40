"""The pip route's /tf listener (ros/tf.py without tf2_ros) over real DDS, and the tf2_msgs type it uses.

tf2_msgs/TFMessage is built here from interfaces/tf2_msgs (no wheel exists); its type hash must be the
one of ROS 2's tf2_msgs, so the listener talks to real /tf publishers (robot_state_publisher, ...).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

rh.skip_without_rclpy()
pytest.importorskip("tf2_msgs.msg")

#: tf2_msgs/msg/TFMessage's RIHS01 type hash in ROS 2 Jazzy and later (geometry2's golden value)
TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_the_built_tfmessage_is_ros2s_type():
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    found = [Path(p) / "share" / "tf2_msgs" / "msg" / "TFMessage.json" for p in prefixes]
    found = [f for f in found if f.is_file()]
    if not found:
        pytest.skip("tf2_msgs comes from a ROS 2 install here (no generated type description to check)")
    hashes = json.loads(found[0].read_text())["type_hashes"]
    assert {"type_name": "tf2_msgs/msg/TFMessage", "hash_string": TFMESSAGE_HASH} in hashes


@pytest.mark.ros
def test_fallback_listener_interpolates_at_the_stamp_over_dds(monkeypatch):
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    import ros2_iterprime.ros.tf as tfmod

    monkeypatch.setattr(tfmod, "_tf2_ros", lambda: None)  # the pip route, even where tf2_ros exists
    c = rh.RosClient(rh.pick_domain_id())
    try:
        static_pub = c.node.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))

        def ts(parent, child, sec, x):
            m = TransformStamped()
            m.header.frame_id, m.child_frame_id = parent, child
            m.header.stamp.sec = sec
            m.transform.translation.x = x
            m.transform.rotation.w = 1.0
            return m

        static_pub.publish(TFMessage(transforms=[ts("base_link", "camera", 0, 0.2)]))  # before the listener
        lookup = tfmod.TargetFrameLookup(c.node, cache_time_s=30.0)
        assert lookup.backend == "python" and lookup.available
        pub = c.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        c.wait_subscribers(pub)
        for sec, x in ((100, 1.0), (102, 3.0)):
            pub.publish(TFMessage(transforms=[ts("odom", "base_link", sec, x)]))
        hdr = Header(frame_id="camera")
        hdr.stamp.sec, hdr.stamp.nanosec = 101, 500_000_000
        deadline = time.monotonic() + 20
        tf, reason = None, ""
        while tf is None and time.monotonic() < deadline:
            tf, reason = lookup.lookup("odom", hdr, 1.0)
        assert tf is not None, reason
        assert np.allclose(tf.translation, [2.5 + 0.2, 0, 0])  # odom <- base at 101.5 s, then base <- camera
        hdr.stamp.sec = 105
        tf, reason = lookup.lookup("odom", hdr, 0.2)
        assert tf is None and "extrapolation into the future" in reason
        lookup.close()
        assert not lookup.available and lookup.lookup("odom", hdr, 0.1)[0] is None
    finally:
        c.close()
