"""Camera model, depth validity and back-projection (REP 103/105 optical frame), and the rigid-transform
arithmetic of the target frame, against hand-computed values and hostile inputs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ros2_iterprime.geometry.camera import (
    InvalidGeometryError,
    PinholeIntrinsics,
    backproject_mask,
    backproject_pixels,
    check_depth_range,
    mask_centroid_3d,
    mask_to_depth_grid,
    valid_depth,
)
from ros2_iterprime.geometry.transforms import (
    RigidTransform,
    canonical_quaternion,
    matrix_to_quaternion,
    normalize_quaternion,
    quaternion_multiply,
    quaternion_to_matrix,
)

INTR = PinholeIntrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480)
HYPO = settings(max_examples=300, deadline=None, derandomize=True, database=None)
# every kind of hostile float: NaN, +-inf, subnormals, huge, negative, zero
HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-310, -1e-310, 1e38, -1e38, 3.4e38, 1e308, np.nan, np.inf, -np.inf]),
)
# hostile or plausible (so that both the refusals and the accepted cameras are exercised)
FOCAL = st.one_of(HOSTILE, st.floats(0.5, 2e5), st.sampled_from([1.0, 500.0, 525.0, 1e5]))
CENTRE = st.one_of(HOSTILE, st.floats(-700.0, 1400.0), st.sampled_from([0.0, 239.5, 319.5, 640.0]))
DEPTHS = st.one_of(HOSTILE, st.floats(0.0, 25.0))


def _info(k=None, p=None, d=(), width=640, height=480, roi=None):
    return SimpleNamespace(k=np.zeros(9) if k is None else k, p=np.zeros(12) if p is None else p,
                           d=d, width=width, height=height, roi=roi)


def _k(fx=500.0, fy=400.0, cx=320.0, cy=240.0, skew=0.0):
    return [fx, skew, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


def _p(fx=500.0, fy=400.0, cx=320.0, cy=240.0, tx=0.0):
    return [fx, 0.0, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]


# ---------------------------------------------------------------- back-projection


def test_principal_point_projects_on_the_optical_axis():
    p = backproject_pixels(np.array([320.0]), np.array([240.0]), np.array([2.0]), INTR)
    np.testing.assert_allclose(p, [[0.0, 0.0, 2.0]])


def test_axes_follow_the_optical_frame_convention():
    # right of the centre -> +x, below -> +y, z forward (REP 103 "_optical" frames)
    p = backproject_pixels(np.array([420.0, 320.0]), np.array([240.0, 340.0]), np.array([1.0, 1.0]), INTR)
    np.testing.assert_allclose(p, [[0.2, 0.0, 1.0], [0.0, 0.25, 1.0]])
    np.testing.assert_allclose(INTR.project(p), [[420.0, 240.0], [320.0, 340.0]])


def test_backproject_pixels_refuses_non_finite_input():
    with pytest.raises(InvalidGeometryError):
        backproject_pixels(np.array([1.0]), np.array([1.0]), np.array([np.nan]), INTR)


def test_plane_centroid_matches_hand_computation():
    depth = np.full((480, 640), 1.5, np.float32)
    mask = np.zeros((480, 640), bool)
    mask[100:120, 400:431] = True  # centre pixel (415, 109.5)
    c = mask_centroid_3d(mask, depth, INTR)
    assert c.n_points == 20 * 31
    assert c.x == pytest.approx((415 - 320) * 1.5 / 500)
    assert c.y == pytest.approx((109.5 - 240) * 1.5 / 400)
    assert c.z == pytest.approx(1.5)


def test_invalid_and_out_of_range_depths_are_ignored_and_outliers_do_not_move_the_median():
    depth = np.full((10, 10), 2.0, np.float32)
    depth[0, :8] = [0.0, np.nan, np.inf, -1.0, 1e38, 0.01, 25.0, 1e-40]  # all invalid (range 0.05..20 m)
    depth[0, 8] = 15.0  # a flying pixel inside the range
    mask = np.zeros((10, 10), bool)
    mask[0:3, 0:9] = True
    intr = PinholeIntrinsics(10.0, 10.0, 2.0, 1.0)
    pts = backproject_mask(mask, depth, intr)
    assert pts.shape == (27 - 8, 3) and np.isfinite(pts).all()
    assert pts[:, 2].max() == pytest.approx(15.0) and pts[:, 2].min() == pytest.approx(2.0)
    c = mask_centroid_3d(mask, depth, intr)
    assert c.z == pytest.approx(2.0) and c.n_points == 19
    # the range is configurable: 15 m excluded with max_depth=10, 25 m included with max_depth=30
    assert backproject_mask(mask, depth, intr, max_depth=10.0).shape[0] == 18
    assert backproject_mask(mask, depth, intr, max_depth=30.0).shape[0] == 20


def test_16uc1_zeros_are_invalid_even_without_nan_conversion():
    raw = np.full((4, 4), 1200, np.uint16)
    raw[0, :] = 0
    metres = raw.astype(np.float32) * np.float32(0.001)  # zeros stay 0.0 here
    pts = backproject_mask(np.ones((4, 4), bool), metres, PinholeIntrinsics(4.0, 4.0, 1.5, 1.5))
    assert pts.shape == (12, 3) and np.allclose(pts[:, 2], 1.2)


def test_valid_depth_and_range_validation():
    d = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 0.049, 0.05, 1.0, 20.0, 20.001, 1e38, 5e-324])
    np.testing.assert_array_equal(valid_depth(d), [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    # min_depth = 0: any positive depth (0 itself stays invalid)
    np.testing.assert_array_equal(valid_depth(d, 0.0, 1e4), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1])
    for lo, hi in [(-1e-3, 1.0), (-1, 1), (2.0, 1.0), (1.0, 1.0), (np.nan, 1.0), (0.1, np.inf), (0.1, 1e5),
                   (5e-324, 1.0), ("a", 1.0)]:
        with pytest.raises(InvalidGeometryError):
            check_depth_range(lo, hi)


def test_no_valid_depth_gives_none():
    depth = np.full((4, 4), np.nan, np.float32)
    mask = np.ones((4, 4), bool)
    intr = PinholeIntrinsics(5.0, 5.0, 1.5, 1.5, 4, 4)
    assert mask_centroid_3d(mask, depth, intr) is None
    assert mask_centroid_3d(np.zeros((4, 4), bool), np.ones((4, 4), np.float32), intr) is None
    assert mask_centroid_3d(mask, np.ones((4, 4), np.float32), intr, min_points=17) is None
    assert mask_centroid_3d(mask, np.ones((4, 4), np.float32), intr, min_points=16).n_points == 16


def test_depth_at_half_resolution_scales_mask_and_intrinsics():
    depth_full = np.full((480, 640), 1.0, np.float32)
    mask = np.zeros((480, 640), bool)
    mask[200:280, 300:380] = True
    full = mask_centroid_3d(mask, depth_full, INTR)
    half = mask_centroid_3d(mask, np.full((240, 320), 1.0, np.float32), INTR)
    assert half.n_points == full.n_points // 4
    np.testing.assert_allclose(half.as_tuple(), full.as_tuple(), atol=2e-3)


def test_sizes_that_are_not_registered_are_refused():
    mask = np.ones((480, 640), bool)
    with pytest.raises(InvalidGeometryError, match="aspect"):
        mask_to_depth_grid(mask, np.ones((1, 640), np.float32), INTR)  # degenerate 640x1 depth
    with pytest.raises(InvalidGeometryError, match="aspect"):
        mask_to_depth_grid(np.ones((480, 480), bool), np.ones((480, 640), np.float32), INTR)
    with pytest.raises(InvalidGeometryError, match="CameraInfo vs depth"):
        mask_to_depth_grid(np.ones((480, 480), bool), np.ones((480, 480), np.float32), INTR)
    with pytest.raises(InvalidGeometryError, match="2-D"):
        backproject_mask(np.ones((2, 2, 2), bool), np.ones((2, 2)), INTR)
    with pytest.raises(InvalidGeometryError, match="dtype"):
        backproject_mask(np.ones((2, 2), bool), np.array([["a", "b"], ["c", "d"]]), INTR)


# ---------------------------------------------------------------- intrinsics validation


def test_intrinsics_from_camera_info_p_then_k():
    assert PinholeIntrinsics.from_camera_info(_info(k=_k())) == INTR
    assert PinholeIntrinsics.from_camera_info(_info(p=_p())) == INTR
    # rclpy gives numpy arrays (truthiness is ambiguous) and array.array for D
    info = _info(k=np.array(_k()), p=np.zeros(12))
    assert PinholeIntrinsics.from_camera_info(info) == INTR
    # P (the rectified image's camera) wins over K, as in image_geometry / depth_image_proc
    both = PinholeIntrinsics.from_camera_info(_info(k=_k(), p=_p(fx=480.0, cx=318.0), d=[0.1, 0.0, 0.0, 0.0, 0.0]))
    assert (both.fx, both.cx, both.has_distortion) == (480.0, 318.0, True)
    # the stereo baseline term Tx of a right camera is ignored (points stay in its own optical frame)
    assert PinholeIntrinsics.from_camera_info(_info(p=_p(tx=-30.0))).fx == 500.0
    assert PinholeIntrinsics.from_camera_info(_info(k=_k(), d=[0.0] * 5)).has_distortion is False


def test_real_camera_info_message():
    from sensor_msgs.msg import CameraInfo  # rclpy types: numpy K/P, array.array D, a RegionOfInterest

    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    info.k, info.p, info.d = _k(), _p(), [0.05, -0.1, 0.0, 0.0, 0.0]
    i = PinholeIntrinsics.from_camera_info(info)
    assert (i.fx, i.fy, i.cx, i.cy, i.width, i.height, i.has_distortion) == (500, 400, 320, 240, 640, 480, True)
    info.p = _p(fx=float("nan"))
    with pytest.raises(InvalidGeometryError, match=r"P\[0\]"):
        PinholeIntrinsics.from_camera_info(info)


def test_roi_shifts_the_principal_point():
    roi = SimpleNamespace(x_offset=100, y_offset=40, width=320, height=240, do_rectify=False)
    i = PinholeIntrinsics.from_camera_info(_info(k=_k(), roi=roi))
    assert (i.cx, i.cy, i.width, i.height) == (220.0, 200.0, 320, 240)
    empty_roi = SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0)
    assert PinholeIntrinsics.from_camera_info(_info(k=_k(), roi=empty_roi)) == INTR


@pytest.mark.parametrize("info, match", [
    (_info(), "all zero"),
    (_info(k=_k(fx=np.nan)), r"K\[0\]"),
    (_info(k=_k(cx=np.inf)), r"K\[2\]"),
    (_info(k=_k(fx=5e-324)), r"K\[0\]"),  # denormal
    (_info(k=_k(fy=-1e-310)), r"K\[4\]"),  # negative denormal
    (_info(k=_k(fx=-500.0)), "fx"),
    (_info(k=_k(fy=0.0)), "fy"),
    (_info(k=_k(fx=0.5)), "fx"),
    (_info(k=_k(fx=1e6)), "fx"),
    (_info(k=_k(cx=1e9)), "cx"),
    (_info(k=_k(cy=-500.0)), "cy"),
    (_info(k=_k(skew=5.0)), "skew"),
    (_info(k=_k()[:8] + [0.0]), "third row"),
    (_info(k=_k()[:8]), "8 entries"),
    (_info(k=_k(), p=_p(fx=np.nan)), r"P\[0\]"),  # a broken P is refused even with a good K
    (_info(k=_k(fx=np.inf), p=_p()), r"K\[0\]"),  # and a broken K even with a good P
    (_info(k=_k(), width=-5), "width"),
    (_info(k=["a"] * 9), "not numeric"),
])
def test_implausible_intrinsics_are_refused_with_a_reason(info, match):
    with pytest.raises(InvalidGeometryError, match=match):
        PinholeIntrinsics.from_camera_info(info)


def test_direct_construction_is_validated_too():
    for kwargs in [dict(fx=np.nan), dict(fx=np.inf), dict(fx=5e-324), dict(fx=0.0), dict(cy=np.nan),
                   dict(cx=2000.0), dict(width=-1), dict(height=1e9)]:
        args = dict(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480) | kwargs
        with pytest.raises(InvalidGeometryError):
            PinholeIntrinsics(**args)
    with pytest.raises(InvalidGeometryError):  # scaling to a 1-px high image gives fy < 1 px
        INTR.scaled_to(640, 1)


@HYPO
@given(k=st.lists(HOSTILE, min_size=9, max_size=9), p=st.lists(HOSTILE, min_size=12, max_size=12),
       use_p=st.booleans())
def test_hostile_camera_info_never_yields_non_finite_intrinsics(k, p, use_p):
    info = _info(k=k, p=p if use_p else None)
    try:
        i = PinholeIntrinsics.from_camera_info(info)
    except InvalidGeometryError:
        event("refused")
        return
    event("accepted")
    vals = [i.fx, i.fy, i.cx, i.cy]
    assert all(math.isfinite(v) for v in vals) and 1.0 <= i.fx <= 1e5 and 1.0 <= i.fy <= 1e5
    assert -640 <= i.cx <= 1280 and -480 <= i.cy <= 960


@HYPO
@given(fx=FOCAL, fy=FOCAL, cx=CENTRE, cy=CENTRE, use_p=st.booleans())
def test_hostile_pinhole_values_are_refused_or_plausible(fx, fy, cx, cy, use_p):
    info = _info(p=_p(fx, fy, cx, cy)) if use_p else _info(k=_k(fx, fy, cx, cy))
    try:
        i = PinholeIntrinsics.from_camera_info(info)
    except InvalidGeometryError as exc:
        event("refused")
        assert str(exc)  # always a reason
        return
    event("accepted")
    assert (i.fx, i.fy, i.cx, i.cy) == (fx, fy, cx, cy)
    assert 1.0 <= i.fx <= 1e5 and 1.0 <= i.fy <= 1e5 and -640 <= i.cx <= 1280 and -480 <= i.cy <= 960


@HYPO
@given(fx=FOCAL, fy=FOCAL, cx=CENTRE, cy=CENTRE, z=st.lists(DEPTHS, min_size=12, max_size=12))
def test_hostile_intrinsics_and_depth_never_give_a_non_finite_point(fx, fy, cx, cy, z):
    try:
        # a 4x3 camera (principal point scaled from 640x480 so that plausible values stay plausible)
        intr = PinholeIntrinsics.from_camera_info(_info(k=_k(fx, fy, cx / 160, cy / 160), width=4, height=3))
        mask, depth = np.ones((3, 4), bool), np.array(z, np.float64).reshape(3, 4)
        with np.errstate(over="ignore"):
            depth32 = depth.astype(np.float32)
        pts = backproject_mask(mask, depth, intr)
        c = mask_centroid_3d(mask, depth32, intr)
    except InvalidGeometryError:
        event("intrinsics refused")
        return
    event(f"points: {'some' if len(pts) else 'none'}")
    assert np.isfinite(pts).all() and ((pts[:, 2] >= 0.05) & (pts[:, 2] <= 20.0)).all()
    assert c is None or all(math.isfinite(v) for v in c.as_tuple())


# ---------------------------------------------------------------- rigid transforms

S = math.sqrt(0.5)
Q_Z90 = [0.0, 0.0, S, S]  # +90 deg about z: x -> y, y -> -x
Q_CYCLE = [0.5, 0.5, 0.5, 0.5]  # +120 deg about (1,1,1): x -> y, y -> z, z -> x


def test_quaternion_to_matrix_hand_computed():
    np.testing.assert_allclose(quaternion_to_matrix(Q_Z90), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(Q_CYCLE), [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), Q_CYCLE, atol=1e-12)
    # 180 deg about x: w = 0, the canonical sign makes x positive
    np.testing.assert_allclose(matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0], atol=1e-12)
    # q and -q: the same rotation, canonical w >= 0
    np.testing.assert_allclose(canonical_quaternion([-0.0, -0.0, -S, -S]), Q_Z90)


def test_transform_points_point_and_pose_hand_computed():
    tf = RigidTransform([1.0, 2.0, 3.0], Q_Z90)
    # (1,0,0) -> rotate -> (0,1,0) -> + t -> (1,3,3); (0,2,0) -> (-2,0,0) -> (-1,2,3)
    np.testing.assert_allclose(tf.apply([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), [[1, 3, 3], [-1, 2, 3]], atol=1e-12)
    np.testing.assert_allclose(tf.apply([0.0, 0.0, 5.0]), [1, 2, 8], atol=1e-12)
    pos, q = tf.apply_pose([1.0, 0.0, 0.0], Q_Z90)
    np.testing.assert_allclose(pos, [1, 3, 3], atol=1e-12)
    np.testing.assert_allclose(q, [0, 0, 1, 0], atol=1e-12)  # 90 + 90 = 180 deg about z
    m = tf.matrix()
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    assert RigidTransform.from_matrix(m).allclose(tf) and not tf.allclose(RigidTransform.identity())


def test_compose_and_inverse():
    a = RigidTransform([1.0, 2.0, 3.0], Q_Z90)
    b = RigidTransform([-0.5, 0.25, 2.0], Q_CYCLE)
    p = np.array([[0.3, -0.7, 1.1], [2.0, 0.0, -1.0]])
    np.testing.assert_allclose((a @ b).apply(p), a.apply(b.apply(p)), atol=1e-12)
    np.testing.assert_allclose(a.inverse().apply(a.apply(p)), p, atol=1e-12)
    np.testing.assert_allclose((a.inverse() @ a).matrix(), np.eye(4), atol=1e-12)
    # Hamilton product = matrix product, z90 after cycle: x -> y -> -x, y -> z -> z, z -> x -> y
    np.testing.assert_allclose(quaternion_to_matrix(quaternion_multiply(Q_Z90, Q_CYCLE)),
                               [[-1, 0, 0], [0, 0, 1], [0, 1, 0]], atol=1e-12)


def test_quaternion_normalisation_and_validation():
    np.testing.assert_allclose(RigidTransform([0, 0, 0], [0, 0, 3 * S, 3 * S]).rotation, Q_Z90)
    np.testing.assert_allclose(normalize_quaternion([0, 0, 0, 2.0]), [0, 0, 0, 1])
    for q in [[0, 0, 0, 0], [1e-9, 0, 0, 0], [np.nan, 0, 0, 1], [0, np.inf, 0, 1], [0, 0, 1], "abcd"]:
        with pytest.raises(InvalidGeometryError):
            RigidTransform([0.0, 0.0, 0.0], q)
    for t in [[np.nan, 0, 0], [0, 0, np.inf], [1e7, 0, 0], [0, 0]]:
        with pytest.raises(InvalidGeometryError):
            RigidTransform(t, Q_Z90)
    with pytest.raises(InvalidGeometryError):
        RigidTransform.identity().apply([[np.nan, 0.0, 0.0]])
    with pytest.raises(InvalidGeometryError):
        matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))  # a reflection is not a rotation


def test_from_msg_is_duck_typed_on_transform_stamped_and_pose():
    v = SimpleNamespace
    stamped = v(header=v(frame_id="base_link"), child_frame_id="camera_optical",
                transform=v(translation=v(x=1.0, y=2.0, z=3.0), rotation=v(x=0.0, y=0.0, z=S, w=S)))
    tf = RigidTransform.from_msg(stamped)
    np.testing.assert_allclose(tf.apply([1.0, 0.0, 0.0]), [1, 3, 3], atol=1e-12)
    pose = v(position=v(x=1.0, y=2.0, z=3.0), orientation=v(x=0.0, y=0.0, z=S, w=S))
    np.testing.assert_allclose(RigidTransform.from_msg(pose).matrix(), tf.matrix())
    bad = v(transform=v(translation=v(x=1.0, y=2.0, z=3.0), rotation=v(x=0.0, y=0.0, z=0.0, w=0.0)))
    with pytest.raises(InvalidGeometryError, match="zero quaternion"):
        RigidTransform.from_msg(bad)
