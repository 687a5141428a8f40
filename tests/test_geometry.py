"""Unit tests of the mask -> 3-D centroid back-projection (REP 103/105 optical frame)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ros2_iterprime.geometry import (
    PinholeIntrinsics,
    backproject_mask,
    backproject_pixels,
    mask_centroid_3d,
)

INTR = PinholeIntrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480)


def test_principal_point_projects_on_the_optical_axis():
    p = backproject_pixels(np.array([320.0]), np.array([240.0]), np.array([2.0]), INTR)
    np.testing.assert_allclose(p, [[0.0, 0.0, 2.0]])


def test_axes_follow_the_optical_frame_convention():
    # right of the centre -> +x, below -> +y, z forward (REP 103 "_optical" frames)
    p = backproject_pixels(np.array([420.0, 320.0]), np.array([240.0, 340.0]), np.array([1.0, 1.0]), INTR)
    np.testing.assert_allclose(p, [[0.2, 0.0, 1.0], [0.0, 0.25, 1.0]])


def test_plane_centroid_matches_hand_computation():
    depth = np.full((480, 640), 1.5, np.float32)
    mask = np.zeros((480, 640), bool)
    mask[100:120, 400:431] = True  # centre pixel (415, 109.5)
    c = mask_centroid_3d(mask, depth, INTR)
    assert c.n_points == 20 * 31
    assert c.x == pytest.approx((415 - 320) * 1.5 / 500)
    assert c.y == pytest.approx((109.5 - 240) * 1.5 / 400)
    assert c.z == pytest.approx(1.5)


def test_invalid_depths_are_ignored_and_outliers_do_not_move_the_median():
    depth = np.full((10, 10), 2.0, np.float32)
    depth[0, 0] = 0.0
    depth[0, 1] = np.nan
    depth[0, 2] = np.inf
    depth[0, 3] = -1.0
    depth[0, 4] = 50.0  # flying pixel
    mask = np.zeros((10, 10), bool)
    mask[0:3, 0:5] = True
    intr = PinholeIntrinsics(10.0, 10.0, 2.0, 1.0)
    pts = backproject_mask(mask, depth, intr)
    assert pts.shape == (11, 3) and np.isfinite(pts).all()
    c = mask_centroid_3d(mask, depth, intr)
    assert c.z == pytest.approx(2.0) and c.n_points == 11


def test_no_valid_depth_gives_none():
    depth = np.full((4, 4), np.nan, np.float32)
    mask = np.ones((4, 4), bool)
    assert mask_centroid_3d(mask, depth, INTR) is None
    assert mask_centroid_3d(np.zeros((4, 4), bool), np.ones((4, 4), np.float32), INTR) is None
    assert mask_centroid_3d(mask, np.ones((4, 4), np.float32), INTR, min_points=17) is None


def test_depth_at_half_resolution_scales_mask_and_intrinsics():
    depth_full = np.full((480, 640), 1.0, np.float32)
    mask = np.zeros((480, 640), bool)
    mask[200:280, 300:380] = True
    full = mask_centroid_3d(mask, depth_full, INTR)
    half = mask_centroid_3d(mask, np.full((240, 320), 1.0, np.float32), INTR)
    assert half.n_points == full.n_points // 4
    np.testing.assert_allclose(half.as_tuple(), full.as_tuple(), atol=2e-3)


def test_intrinsics_from_camera_info_k_then_p():
    info = SimpleNamespace(k=[500.0, 0, 320, 0, 400.0, 240, 0, 0, 1], p=[0.0] * 12, width=640, height=480)
    assert PinholeIntrinsics.from_camera_info(info) == INTR
    info = SimpleNamespace(k=[0.0] * 9, p=[500.0, 0, 320, 0, 0, 400.0, 240, 0, 0, 0, 1, 0], width=640, height=480)
    assert PinholeIntrinsics.from_camera_info(info) == INTR
    # rclpy gives numpy arrays (truthiness is ambiguous)
    info = SimpleNamespace(k=np.array([500.0, 0, 320, 0, 400.0, 240, 0, 0, 1]), p=np.zeros(12), width=640, height=480)
    assert PinholeIntrinsics.from_camera_info(info) == INTR
    with pytest.raises(ValueError):
        PinholeIntrinsics.from_camera_info(SimpleNamespace(k=[0.0] * 9, p=[0.0] * 12, width=0, height=0))


def test_shape_errors():
    with pytest.raises(ValueError):
        backproject_mask(np.ones((2, 2, 2), bool), np.ones((2, 2)), INTR)
