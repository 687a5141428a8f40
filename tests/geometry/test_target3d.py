"""The target's 3-D side (issue #11): masked cloud, cleaning rules, oriented box, robust centroid and
target_3d, on ray-cast scenes of a box on a table with exact ground truth (tests/scene3d.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from scene3d import BOX_RGB, oblique_scene, render_scene, top_down_scene
from scipy import ndimage

from ros2_iterprime.geometry.box import OrientedBox3D, fit_oriented_box, robust_centroid
from ros2_iterprime.geometry.camera import InvalidGeometryError, PinholeIntrinsics, mask_centroid_3d
from ros2_iterprime.geometry.pointcloud import (
    CloudParams,
    cap_points,
    erosion_distance,
    masked_point_cloud,
    statistical_outlier_filter,
    voxel_downsample,
)
from ros2_iterprime.geometry.target import Target3DParams, target_3d
from ros2_iterprime.geometry.transforms import RigidTransform, quaternion_to_matrix

HYPO = settings(max_examples=60, deadline=None, derandomize=True, database=None)
TOP_Z = 0.85  # the top face of the box in top_down_scene()


@pytest.fixture(scope="module")
def top():
    return top_down_scene()


@pytest.fixture(scope="module")
def oblique():
    return oblique_scene()


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _expected_points(mask, depth, intr):
    """The hand formula of the pinhole back-projection over the mask's pixels (row-major)."""
    v, u = np.nonzero(mask)
    z = depth[v, u].astype(np.float64)
    return np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], axis=1)


def _axes_match(r_fit, r_true, tol=1e-3):
    """Every fitted axis is parallel to one of the true axes (a box is symmetric)."""
    dots = np.abs(r_fit.T @ r_true)
    return bool(np.all(dots.max(axis=1) > 1 - tol))


# ---------------------------------------------------------------- cloud


def test_cloud_is_the_backprojection_of_the_eroded_mask_when_cleaning_is_off(top):
    depth = top.depth.astype(np.float32)
    cloud = masked_point_cloud(top.mask, top.rgb, depth, top.intr, CloudParams(erosion_px=3).without_cleaning())
    # an independent erosion: binary erosion by a Euclidean disk, the image border not background
    eroded = ndimage.binary_erosion(top.mask, structure=_disk(3), border_value=1)
    want = _expected_points(eroded, depth, top.intr)
    assert cloud.ok and cloud.erosion_px == 3 and not cloud.erosion_reduced
    assert cloud.points.dtype == np.float32 and cloud.points.shape == want.shape
    np.testing.assert_allclose(cloud.points, want, rtol=0, atol=1e-6)
    assert (cloud.colors == BOX_RGB).all() and cloud.colors.dtype == np.uint8
    c = cloud.counts
    assert (c.mask_px, c.eroded_px) == (int(top.mask.sum()), int(eroded.sum()))
    assert c.valid_depth == c.after_depth_band == c.after_voxel == c.after_cap == c.after_outliers == len(want)


def test_erosion_keeps_the_image_border_and_falls_back_for_thin_objects():
    m = np.zeros((20, 30), bool)
    m[0:8, 0:10] = True  # touches the top and left image borders
    d = erosion_distance(m)
    # eroded by 2: only the right and bottom outlines (interior edges) move
    np.testing.assert_array_equal(np.argwhere(d > 2).max(axis=0), [5, 7])
    np.testing.assert_array_equal(np.argwhere(d > 2).min(axis=0), [0, 0])
    # a 5-px wide bar with erosion 3: radius 3 empties it, 2 keeps its centre line (and says so)
    bar = np.zeros((40, 60), bool)
    bar[10:15, 5:55] = True
    intr = PinholeIntrinsics(50.0, 50.0, 29.5, 19.5, 60, 40)
    cloud = masked_point_cloud(bar, None, np.ones((40, 60), np.float32), intr, CloudParams(erosion_px=3, min_points=10))
    assert cloud.ok and cloud.erosion_px == 2 and cloud.erosion_reduced and cloud.counts.eroded_px == 46
    assert (cloud.colors == 255).all()  # no colour image: white
    # radius 1 keeps 3 x 48 = 144 pixels; asking for more goes down to the un-eroded mask
    ones = np.ones((40, 60), np.float32)
    cloud = masked_point_cloud(bar, None, ones, intr, CloudParams(erosion_px=3, min_points=144))
    assert cloud.erosion_px == 1 and cloud.counts.valid_depth == 144
    cloud = masked_point_cloud(bar, None, ones, intr, CloudParams(erosion_px=3, min_points=145))
    assert cloud.erosion_px == 0 and cloud.counts.valid_depth == 250 and cloud.ok


def test_background_leaking_across_the_mask_border_is_removed(top):
    depth = top.depth.astype(np.float32)
    leaky = ndimage.binary_dilation(top.mask, iterations=6)  # the mask spills 6 px onto the table
    raw = masked_point_cloud(leaky, top.rgb, depth, top.intr, CloudParams().without_cleaning())
    assert (raw.points[:, 2] > 0.99).sum() > 500  # erosion alone leaves table points behind the border
    cloud = masked_point_cloud(leaky, top.rgb, depth, top.intr, CloudParams())
    # what is left is exactly the box's top face: the band (0.5 x lateral extent ~ 0.1 m) cuts the table
    assert cloud.ok and len(cloud) == int(top.mask.sum())
    np.testing.assert_allclose(cloud.points[:, 2], TOP_Z, atol=1e-6)
    assert (cloud.colors == BOX_RGB).all()
    assert 0.09 < cloud.depth_band_m < 1.0 - TOP_Z and cloud.counts.after_depth_band == len(cloud)


def test_flying_pixels_are_removed_by_the_statistical_rule(top):
    depth = top.depth.astype(np.float32).copy()
    inner = np.argwhere(ndimage.binary_erosion(top.mask, iterations=8))
    rng = np.random.default_rng(0)
    fly = inner[rng.choice(len(inner), 30, replace=False)]
    depth[fly[:, 0], fly[:, 1]] = 0.92  # 7 cm off the surface: inside the depth band, isolated in 3-D
    p = CloudParams(erosion_px=0)
    banded = masked_point_cloud(top.mask, top.rgb, depth, top.intr, CloudParams(erosion_px=0, sor_neighbors=0))
    assert (banded.points[:, 2] > 0.9).sum() == 30  # the band alone keeps them
    cloud = masked_point_cloud(top.mask, top.rgb, depth, top.intr, p)
    assert (cloud.points[:, 2] > 0.9).sum() == 0
    assert len(cloud) == int(top.mask.sum()) - 30  # and not one genuine point lost


def test_statistical_rule_keeps_a_clean_grid():
    g = np.stack(np.meshgrid(np.arange(50), np.arange(40), indexing="ij"), -1).reshape(-1, 2) * 0.002
    pts = np.c_[g, np.full(len(g), 1.0)]
    assert statistical_outlier_filter(pts, 20, 2.0).all()  # PCL's rule alone would cut the outline
    pts = np.r_[pts, [[0.05, 0.04, 1.1]]]
    keep = statistical_outlier_filter(pts, 20, 2.0)
    assert not keep[-1] and keep[:-1].all()


def test_invalid_depths_and_16uc1_zeros_are_ignored(top):
    rng = np.random.default_rng(1)
    holes = rng.random(top.depth.shape) < 0.1
    f32 = top.depth.astype(np.float32).copy()
    bad = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e38, 1e-40], np.float32)
    f32[holes] = bad[rng.integers(0, len(bad), int(holes.sum()))]
    u16 = np.round(top.depth * 1000).astype(np.uint16)
    u16[holes] = 0
    p = CloudParams(erosion_px=2).without_cleaning()
    eroded = ndimage.binary_erosion(top.mask, structure=_disk(2), border_value=1)
    for depth in (f32, u16.astype(np.float32) * np.float32(0.001)):  # 16UC1 mm -> m, zeros kept as 0.0
        cloud = masked_point_cloud(top.mask, top.rgb, depth, top.intr, p)
        assert len(cloud) == int((eroded & ~holes).sum())
        assert np.isfinite(cloud.points).all()
        np.testing.assert_allclose(cloud.points[:, 2], TOP_Z, atol=6e-4)  # 16UC1 rounds to 1 mm


def test_depth_at_half_resolution_samples_colour_and_scales_the_camera(top):
    # the same scene rendered by a 320x240 depth camera registered to the 640x480 colour image
    half = render_scene(top.intr.scaled_to(320, 240), top.box_center, top.box_size, top.box_rotation,
                        (0, 0, 1.0), (0, 0, 1.0)).depth.astype(np.float32)
    full = target_3d(top.mask, top.rgb, top.depth.astype(np.float32), top.intr)
    t = target_3d(top.mask, top.rgb, half, top.intr)
    assert t.ok and abs(t.n_points - full.n_points / 4) < 0.05 * full.n_points
    assert (t.colors == BOX_RGB).all()
    px2 = 2 * TOP_Z / top.intr.fx  # a depth pixel's footprint: the median is quantised to it
    np.testing.assert_allclose(t.centroid, full.centroid, atol=px2)
    np.testing.assert_allclose(t.box.size[:2], full.box.size[:2], atol=2 * px2)
    np.testing.assert_allclose(t.box.center, full.box.center, atol=px2)


def test_voxels_and_cap_are_deterministic_and_hand_checked():
    pts = np.array([[0.001, 0.001, 1.001], [0.003, 0.002, 1.004], [0.012, 0.0, 1.0], [-0.001, 0.0, 1.0]])
    cols = np.array([[0, 0, 0], [100, 50, 255], [7, 7, 7], [1, 2, 3]], np.uint8)
    vp, vc = voxel_downsample(pts, cols, 0.01)
    # voxels (-1,0,100), (0,0,100), (1,0,100) in lexicographic order
    np.testing.assert_allclose(vp, [[-0.001, 0.0, 1.0], [0.002, 0.0015, 1.0025], [0.012, 0.0, 1.0]])
    np.testing.assert_array_equal(vc, [[1, 2, 3], [50, 25, 128], [7, 7, 7]])
    np.testing.assert_array_equal(cap_points(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(cap_points(3, 4), [0, 1, 2])
    np.testing.assert_array_equal(cap_points(5, 0), np.arange(5))


def test_voxel_and_cap_params_in_the_pipeline(top):
    depth = top.depth.astype(np.float32)
    v = masked_point_cloud(top.mask, top.rgb, depth, top.intr, CloudParams(voxel_size=0.01))
    assert 0 < len(v) < 300 and v.counts.after_voxel == len(v) and (v.colors == BOX_RGB).all()
    a = masked_point_cloud(top.mask, top.rgb, depth, top.intr, CloudParams(max_points=500))
    b = masked_point_cloud(top.mask, top.rgb, depth, top.intr, CloudParams(max_points=500))
    assert a.counts.after_cap == 500 and len(a) <= 500
    np.testing.assert_array_equal(a.points, b.points)


@pytest.mark.parametrize("kwargs", [
    dict(erosion_px=-1), dict(erosion_px=2.5), dict(min_depth=-0.1), dict(max_depth=np.inf),
    dict(min_depth=5.0, max_depth=1.0), dict(sor_neighbors=-3), dict(sor_std_ratio=np.nan),
    dict(voxel_size=1e-6), dict(voxel_size=-0.1), dict(max_points=-1), dict(min_points=0),
    dict(depth_outlier_k=np.inf), dict(min_box_size=0.0), dict(min_box_size=np.nan), dict(erosion_px=True),
])
def test_invalid_params_are_refused(kwargs):
    with pytest.raises(InvalidGeometryError):
        Target3DParams(**kwargs)


def test_input_shapes_are_checked(top):
    depth = top.depth.astype(np.float32)
    with pytest.raises(InvalidGeometryError, match="rgb"):
        target_3d(top.mask, top.rgb[:, :, :2], depth, top.intr)
    with pytest.raises(InvalidGeometryError, match="rgb"):
        target_3d(top.mask, top.rgb[:100], depth, top.intr)
    with pytest.raises(InvalidGeometryError, match="uint8"):
        target_3d(top.mask, top.rgb.astype(np.float32), depth, top.intr)
    with pytest.raises(InvalidGeometryError, match="aspect"):
        target_3d(top.mask, top.rgb, depth[:, :100], top.intr)
    with pytest.raises(InvalidGeometryError, match="2-D"):
        target_3d(top.mask[None], top.rgb, depth, top.intr)


# ---------------------------------------------------------------- box and centroid


def test_box_of_the_top_face_matches_the_scene(top):
    t = target_3d(top.mask, top.rgb, top.depth.astype(np.float32), top.intr, Target3DParams(erosion_px=0))
    assert t.ok
    px = TOP_Z / top.intr.fx  # one pixel's footprint on the top face (1.7 mm)
    # seen from above only the top face is measured: a 0.20 x 0.12 slab of min_box_size at z = 0.85
    np.testing.assert_allclose(t.box.size, [0.20, 0.12, 0.005], atol=1.5 * px)
    np.testing.assert_allclose(t.box.center, [top.box_center[0], top.box_center[1], TOP_Z], atol=px)
    assert _axes_match(t.box.rotation, top.box_rotation)
    # with the default 3-px erosion the face shrinks by ~3 px per side
    d = target_3d(top.mask, top.rgb, top.depth.astype(np.float32), top.intr)
    np.testing.assert_allclose(d.box.size[:2], [0.20 - 6 * px, 0.12 - 6 * px], atol=1.5 * px)
    np.testing.assert_allclose(d.box.center, t.box.center, atol=px)


def test_box_of_an_oblique_view_recovers_the_whole_box(oblique):
    depth = oblique.depth.astype(np.float32)
    true_size = np.sort(oblique.box_size)[::-1]
    t = target_3d(oblique.mask, oblique.rgb, depth, oblique.intr, Target3DParams(erosion_px=0))
    # top + two sides visible: the box of the visible points is the box itself
    np.testing.assert_allclose(t.box.size, true_size, atol=3e-3)
    np.testing.assert_allclose(t.box.center, oblique.box_center, atol=3e-3)
    assert _axes_match(t.box.rotation, oblique.box_rotation, tol=2e-3)
    d = target_3d(oblique.mask, oblique.rgb, depth, oblique.intr)  # default erosion: ~5 mm per side less
    assert np.all(d.box.size < true_size) and np.all(d.box.size > true_size - 0.015)
    np.testing.assert_allclose(d.box.center, oblique.box_center, atol=8e-3)


def test_cleaned_median_centroid_beats_the_plain_mask_median(top):
    """The documented rule: the centroid is the per-axis median of the cleaned cloud. With a mask that
    spills 15 px onto the table on one side, the plain median (mask_centroid_3d) moves 13.6 mm, this
    one 3.8 mm (measured)."""
    depth = top.depth.astype(np.float32)
    truth = np.median(_expected_points(top.mask, depth, top.intr), axis=0)
    spill = top.mask | np.roll(top.mask, 15, axis=1)
    old = np.array(mask_centroid_3d(spill, depth, top.intr).as_tuple())
    t = target_3d(spill, top.rgb, depth, top.intr)
    np.testing.assert_allclose(t.centroid, robust_centroid(t.points))
    err_new, err_old = np.linalg.norm(t.centroid - truth), np.linalg.norm(old - truth)
    assert err_new < 0.005 < 0.010 < err_old
    assert t.centroid_point().as_tuple() == tuple(float(v) for v in t.centroid)


@pytest.mark.parametrize("points", [
    [[0.1, 0.2, 1.0]],
    [[0.1, 0.2, 1.0], [0.3, 0.2, 1.0]],
    [[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.0, 0.1, 1.0]],
    [[0.01 * i, 0.02 * i, 1.0 + 0.005 * i] for i in range(10)],  # colinear
    [[0.01 * i, 0.01 * j, 1.0] for i in range(5) for j in range(4)],  # coplanar
    [[0.5, 0.5, 2.0]] * 7,  # duplicates
])
def test_degenerate_clouds_give_finite_boxes_with_a_minimum_thickness(points):
    p = np.array(points)
    box = fit_oriented_box(p, min_size=0.005)
    _check_box(box, p, 0.005)


def _check_box(box: OrientedBox3D, points: np.ndarray, min_size: float):
    r = box.rotation
    assert np.isfinite(box.center).all() and np.isfinite(box.size).all() and np.isfinite(r).all()
    assert (box.size >= min_size - 1e-12).all() and np.all(np.diff(box.size) <= 1e-12)  # decreasing
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    for i in (0, 1):  # sign convention: largest-magnitude component positive
        assert r[np.argmax(np.abs(r[:, i])), i] > 0
    q = box.quaternion
    assert q[3] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
    np.testing.assert_allclose(quaternion_to_matrix(q), r, atol=1e-9)
    assert box.contains(points, tol=1e-7).all()


def test_square_plate_box_is_tight_where_pca_is_ambiguous():
    rng = np.random.default_rng(3)
    # a 0.1 x 0.1 x 0.01 plate: two equal variances, so PCA's in-plane axes are arbitrary
    local = (rng.random((4000, 3)) - 0.5) * [0.1, 0.1, 0.01]
    r_true = quaternion_to_matrix([0.2, -0.3, 0.4, 0.8])
    pts = local @ r_true.T + [0.2, -0.1, 1.3]
    box = fit_oriented_box(pts)
    _check_box(box, pts, 0.005)
    np.testing.assert_allclose(box.size, [0.1, 0.1, 0.01], atol=2e-3)
    np.testing.assert_allclose(box.center, [0.2, -0.1, 1.3], atol=2e-3)
    assert _axes_match(box.rotation, r_true, tol=1e-3)
    np.testing.assert_array_equal(fit_oriented_box(pts).rotation, box.rotation)  # deterministic


def test_box_refuses_bad_input():
    for bad in (np.zeros((0, 3)), np.array([[np.nan, 0, 1.0]]), np.zeros((3, 2))):
        with pytest.raises(InvalidGeometryError):
            fit_oriented_box(bad)
    with pytest.raises(InvalidGeometryError):
        fit_oriented_box(np.zeros((3, 3)), min_size=0.0)


# ---------------------------------------------------------------- target_3d


def test_no_target_gives_a_reason_not_an_error(top):
    depth = top.depth.astype(np.float32)
    for mask, d, why in [(np.zeros_like(top.mask), depth, "too few"),
                         (top.mask, np.full_like(depth, np.nan), "too few"),
                         (top.mask, np.full_like(depth, 30.0), "valid depth in")]:
        t = target_3d(mask, top.rgb, d, top.intr)
        assert not t.ok and why in t.reason and t.centroid is None and t.box is None
        assert t.points.shape == (0, 3) and t.colors.shape == (0, 3) and t.centroid_point() is None
    t = target_3d(top.mask, top.rgb, depth, top.intr, Target3DParams(min_points=100_000))
    assert not t.ok and "100000" in t.reason


def test_target_in_another_frame(top):
    t = target_3d(top.mask, top.rgb, top.depth.astype(np.float32), top.intr)
    s = math.sqrt(0.5)
    tf = RigidTransform([0.1, -0.2, 0.5], [s, 0.0, 0.0, s])  # +90 deg about x
    b = t.transformed(tf)
    np.testing.assert_allclose(b.points, tf.apply(t.points.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(b.centroid, tf.apply(t.centroid), atol=1e-12)
    np.testing.assert_allclose(b.centroid, [t.centroid[0] + 0.1, -t.centroid[2] - 0.2, t.centroid[1] + 0.5])
    np.testing.assert_allclose(b.box.size, t.box.size)
    np.testing.assert_allclose(b.box.center, tf.apply(t.box.center), atol=1e-12)
    # the same set of corners, whatever the (re-canonicalised) axis signs
    want = np.sort(np.round(tf.apply(t.box.corners()), 9), axis=0)
    np.testing.assert_allclose(np.sort(np.round(b.box.corners(), 9), axis=0), want, atol=1e-8)
    _check_box(b.box, b.points, 0.005)
    assert b.counts == t.counts and b.n_points == t.n_points


HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.floats(0.0, 25.0),
    st.sampled_from([0.0, 5e-324, 1e-40, 1e38, -1e38, 3.4e38, np.nan, np.inf, -np.inf, 0.05, 1.0, 19.99, 20.0]),
)


@HYPO
@given(depth=st.lists(HOSTILE, min_size=12 * 16, max_size=12 * 16),
       mask=st.lists(st.booleans(), min_size=12 * 16, max_size=12 * 16),
       k=st.lists(HOSTILE, min_size=4, max_size=4), voxel=st.sampled_from([0.0, 0.01]))
def test_hostile_inputs_never_give_a_non_finite_output(depth, mask, k, voxel):
    from types import SimpleNamespace

    fx, fy, cx, cy = k
    info = SimpleNamespace(k=[fx, 0, cx, 0, fy, cy, 0, 0, 1], p=np.zeros(12), d=[], width=16, height=12, roi=None)
    try:
        intr = PinholeIntrinsics.from_camera_info(info)
    except InvalidGeometryError:
        intr = PinholeIntrinsics(20.0, 20.0, 7.5, 5.5, 16, 12)
    with np.errstate(over="ignore"):  # float64 beyond float32's range -> inf, as a driver could send
        d = np.array(depth, np.float32).reshape(12, 16)
    m = np.array(mask).reshape(12, 16)
    rgb = np.full((12, 16, 3), 77, np.uint8)
    t = target_3d(m, rgb, d, intr, Target3DParams(min_points=3, erosion_px=1, voxel_size=voxel))
    assert np.isfinite(t.points).all()
    event(f"target ok={t.ok}")
    if t.ok:
        assert ((t.points[:, 2] >= 0.05 - 1e-6) & (t.points[:, 2] <= 20.0 + 1e-5)).all()
        assert np.isfinite(t.centroid).all() and 0.05 - 1e-6 <= t.centroid[2] <= 20.0 + 1e-5
        _check_box(t.box, t.points.astype(np.float64), 0.005)
        moved = t.transformed(RigidTransform([1.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.9]))
        assert np.isfinite(moved.points).all() and np.isfinite(moved.box.corners()).all()
    else:
        assert t.reason and t.n_points == 0
