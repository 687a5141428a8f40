"""Synthetic depth scenes with exact ground truth for the 3-D tests: a box resting on a table plane.

render_scene() ray-casts every pixel centre of a pinhole camera (optical frame: x right, y down, z
forward) against an oriented box and a plane, giving the z-depth image (metres, NaN where nothing is
hit), the box's exact silhouette mask and an RGB image (box red, table grey).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_iterprime.geometry.camera import PinholeIntrinsics


@dataclass(frozen=True)
class Scene:
    depth: np.ndarray  # (H, W) float64 z-depth, NaN = no hit
    mask: np.ndarray  # (H, W) bool, box silhouette
    rgb: np.ndarray  # (H, W, 3) uint8
    intr: PinholeIntrinsics
    box_center: np.ndarray  # (3,) optical frame
    box_size: np.ndarray  # (3,)
    box_rotation: np.ndarray  # (3, 3), columns = box axes in the optical frame


BOX_RGB = (200, 30, 40)
TABLE_RGB = (90, 90, 90)


def rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-from-optical rotation of a camera at eye looking at target (optical x right, y down, z forward)."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def render_scene(intr: PinholeIntrinsics, box_center, box_size, box_rotation, plane_normal, plane_point) -> Scene:
    """Everything in the optical frame. The plane is {p : n . (p - plane_point) = 0}."""
    w, h = intr.width, intr.height
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], axis=-1)  # z = 1
    c, s, r = np.asarray(box_center, float), np.asarray(box_size, float), np.asarray(box_rotation, float)
    # box: slab test in box coordinates, origin o = R^T (0 - c)
    o = r.T @ (-c)
    d = rays @ r  # (H, W, 3) direction in box coordinates
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-s / 2 - o) / d
        t2 = (s / 2 - o) / d
    t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    hit_box = (t_near <= t_far) & (t_far > 0)
    n = np.asarray(plane_normal, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plane = (n @ np.asarray(plane_point, float)) / (rays @ n)
    t_plane[~(t_plane > 0)] = np.nan
    depth = np.where(hit_box, t_near, t_plane)  # ray z = 1, so t is the z-depth
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[...] = TABLE_RGB
    rgb[hit_box] = BOX_RGB
    return Scene(depth, hit_box, rgb, intr, c, s, r)


def top_down_scene(yaw_deg: float = 30.0) -> Scene:
    """Camera 1 m above a table, looking straight down; a 0.20 x 0.12 x 0.15 m box, yawed, seen from the top."""
    intr = PinholeIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    size = np.array([0.20, 0.12, 0.15])
    center = np.array([0.03, -0.02, 1.0 - 0.075])
    return render_scene(intr, center, size, rot_z(yaw_deg), (0, 0, 1.0), (0, 0, 1.0))


def oblique_scene() -> Scene:
    """A camera looking down at 40 deg from the front-left: the box's top and two sides are visible."""
    intr = PinholeIntrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
    size_w = np.array([0.20, 0.12, 0.15])
    center_w = np.array([0.0, 0.0, 0.075])
    r_box_w = rot_z(20.0)
    eye = np.array([-0.45, -0.55, 0.6])
    r_wc = look_at(eye, center_w)  # world-from-optical
    center_c = r_wc.T @ (center_w - eye)
    r_box_c = r_wc.T @ r_box_w
    plane_n = r_wc.T @ np.array([0, 0, 1.0])
    plane_p = r_wc.T @ (np.zeros(3) - eye)
    return render_scene(intr, center_c, size_w, r_box_c, plane_n, plane_p)
