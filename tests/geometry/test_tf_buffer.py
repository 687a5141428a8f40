"""The plain-Python TF buffer (geometry/tf_buffer.py) against hand-computed transforms: a chain
odom -> base_link -> camera moving over time, looked up at stamps between the samples (interpolation),
at the ends, outside the cache, at stamp 0 (latest common time), static links, loops and waits."""
import threading
import time
from types import SimpleNamespace as NS

import numpy as np
import pytest

from ros2_iterprime.geometry.tf_buffer import TransformBuffer, TransformLookupError, slerp
from ros2_iterprime.geometry.transforms import RigidTransform

S = 1_000_000_000


def yaw(deg):
    a = np.deg2rad(deg) / 2
    return np.array([0.0, 0.0, np.sin(a), np.cos(a)])


def base_at(t):  # the robot drives along x at 1 m/s and turns 10 deg/s
    return RigidTransform([t, 0.0, 0.0], yaw(10.0 * t))


CAM = RigidTransform([0.2, 0.0, 0.5], [-0.5, 0.5, -0.5, 0.5])  # base_link -> optical frame (static)


def filled(cache=10.0):
    buf = TransformBuffer(cache)
    for i in range(0, 41):  # 0 .. 4 s at 10 Hz
        t = i / 10
        buf.set_transform("odom", "base_link", int(t * S), base_at(t))
    buf.set_transform("base_link", "camera", 0, CAM, static=True)
    return buf


def test_chain_at_a_sample_is_the_product_of_the_links():
    buf = filled()
    got = buf.lookup("odom", "camera", int(2.0 * S))
    assert got.allclose(base_at(2.0) @ CAM, 1e-9)
    assert buf.lookup("camera", "odom", int(2.0 * S)).allclose((base_at(2.0) @ CAM).inverse(), 1e-9)


def test_between_samples_translation_is_linear_and_rotation_slerped():
    buf = filled()
    got = buf.lookup("odom", "base_link", int(2.05 * S))
    assert np.allclose(got.translation, [2.05, 0, 0], atol=1e-9)
    assert RigidTransform([0, 0, 0], got.rotation).allclose(RigidTransform([0, 0, 0], yaw(20.5)), 1e-9)
    # the camera at that stamp: the point 1 m in front of it, in odom
    p = buf.lookup("odom", "camera", int(2.05 * S)).apply([0, 0, 1.0])
    assert np.allclose(p, (base_at(2.05) @ CAM).apply([0, 0, 1.0]), atol=1e-9)


def test_outside_the_stored_interval_is_refused_with_a_reason():
    buf = filled()
    with pytest.raises(TransformLookupError, match="future"):
        buf.lookup("odom", "camera", int(4.5 * S))
    with pytest.raises(TransformLookupError, match="does not exist"):
        buf.lookup("map", "camera", int(2 * S))


def test_cache_time_drops_old_samples():
    buf = filled(cache=1.0)
    with pytest.raises(TransformLookupError, match="past"):
        buf.lookup("odom", "camera", int(2.5 * S))
    assert buf.lookup("odom", "camera", int(3.5 * S)).allclose(base_at(3.5) @ CAM, 1e-9)


def test_stamp_zero_is_the_latest_common_time():
    buf = filled()
    assert buf.lookup("odom", "camera", 0).allclose(base_at(4.0) @ CAM, 1e-9)


def test_messages_loops_and_bad_transforms():
    buf = TransformBuffer(5.0)
    def ts(parent, child, sec, x=0.0, w=1.0):
        return NS(header=NS(frame_id=parent, stamp=NS(sec=sec, nanosec=0)), child_frame_id=child,
                  transform=NS(translation=NS(x=x, y=0.0, z=0.0), rotation=NS(x=0.0, y=0.0, z=0.0, w=w)))
    n = buf.add_message(NS(transforms=[ts("/a", "b", 1, 1.0), ts("b", "c", 1, 2.0), ts("a", "d", 1, float("nan")),
                                       ts("a", "e", 1, 0.0, 0.0)]))
    assert n == 2 and buf.rejected == 2
    assert np.allclose(buf.lookup("a", "c", S).translation, [3, 0, 0])
    buf.set_transform("c", "a", S, RigidTransform.identity())  # a loop a -> b -> c -> a
    with pytest.raises(TransformLookupError, match="loop"):
        buf.lookup("b", "a", S)


def test_lookup_waits_for_data_that_arrives_later():
    buf = filled()
    threading.Timer(0.2, lambda: buf.set_transform("odom", "base_link", int(4.2 * S), base_at(4.2))).start()
    t0 = time.monotonic()
    got = buf.lookup("odom", "camera", int(4.1 * S), timeout_s=5.0)
    assert time.monotonic() - t0 < 4.0
    assert np.allclose(got.translation, (base_at(4.1) @ CAM).translation, atol=1e-9)


def test_slerp_endpoints_and_midpoint():
    assert np.allclose(slerp(yaw(0), yaw(90), 0.0), yaw(0))
    assert np.allclose(slerp(yaw(0), yaw(90), 1.0), yaw(90))
    assert np.allclose(slerp(yaw(0), yaw(90), 0.5), yaw(45))


def test_a_gap_of_lost_samples_is_refused_not_interpolated():
    buf = TransformBuffer(10.0)
    for i in list(range(0, 11)) + list(range(30, 41)):  # 10 Hz, samples 1.1 .. 2.9 s lost
        buf.set_transform("odom", "base_link", int(i / 10 * S), base_at(i / 10))
    assert buf.lookup("odom", "base_link", int(0.55 * S)).allclose(
        RigidTransform([0.55, 0, 0], buf.lookup("odom", "base_link", int(0.55 * S)).rotation), 1e-9)
    with pytest.raises(TransformLookupError, match="lost"):
        buf.lookup("odom", "base_link", int(2.0 * S))


def test_the_gap_rule_is_not_taught_by_the_gaps_it_detects():
    """100 Hz /tf to a starved listener: a 1 s loss, then a 0.15 s one. A mean spacing learnt the first
    loss (then allowing 0.4 s gaps: measured 50 mm off over DDS); the smallest recent spacing does not."""
    buf = TransformBuffer(10.0)
    stamps = [k / 100 for k in range(0, 101)] + [k / 100 for k in range(200, 206)] + \
             [k / 100 for k in range(220, 227)]
    for t in stamps:
        buf.set_transform("odom", "base_link", int(t * S), base_at(t))
    with pytest.raises(TransformLookupError, match="lost"):
        buf.lookup("odom", "base_link", int(1.5 * S))
    with pytest.raises(TransformLookupError, match="lost"):
        buf.lookup("odom", "base_link", int(2.125 * S))  # between 2.05 and 2.20, just after the 1 s loss
    got = buf.lookup("odom", "base_link", int(2.235 * S))  # between two 10 ms samples: interpolated
    assert np.allclose(got.translation, base_at(2.235).translation, atol=1e-6)
