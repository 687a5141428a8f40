"""3-D centroid of a mask from a depth image and pinhole intrinsics (pure numpy, no ROS import).

Conventions: points are in the camera *optical* frame of the image (REP 103 / REP 105 "_optical"
frames: x right, y down, z forward), in metres. Pixel (u, v) = (column, row); pixel centres are at
integer coordinates, as in sensor_msgs/CameraInfo's K matrix.

Robustness: depth values that are 0, negative, NaN or inf are invalid (REP 118) and ignored; the
centroid is the component-wise *median* of the valid back-projected points, so a few depth
outliers (edges, flying pixels) do not drag it off the object.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PinholeIntrinsics", "MaskPoint3D", "backproject_mask", "backproject_pixels", "mask_centroid_3d"]


@dataclass(frozen=True)
class PinholeIntrinsics:
    """fx, fy, cx, cy in pixels, for an image of (width, height) (0 = unknown)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0

    @classmethod
    def from_camera_info(cls, info: Any) -> "PinholeIntrinsics":
        """From a sensor_msgs/CameraInfo (K row-major; falls back to P when K is all zero)."""
        # rclpy stores K/P as numpy arrays: never test them for truthiness
        k = [float(x) for x in np.asarray(getattr(info, "k", ()), dtype=np.float64).reshape(-1)]
        if len(k) == 9 and k[0] > 0 and k[4] > 0:
            fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        else:
            p = [float(x) for x in np.asarray(getattr(info, "p", ()), dtype=np.float64).reshape(-1)]
            if len(p) == 12 and p[0] > 0 and p[5] > 0:
                fx, fy, cx, cy = p[0], p[5], p[2], p[6]
            else:
                raise ValueError("CameraInfo has neither a valid K nor a valid P (fx, fy must be > 0)")
        return cls(fx, fy, cx, cy, int(getattr(info, "width", 0) or 0), int(getattr(info, "height", 0) or 0))

    def scaled_to(self, width: int, height: int) -> "PinholeIntrinsics":
        """The same camera at another resolution (for a depth image of a different size)."""
        if not self.width or not self.height or (self.width, self.height) == (width, height):
            return PinholeIntrinsics(self.fx, self.fy, self.cx, self.cy, width, height)
        sx, sy = width / self.width, height / self.height
        # pixel centres at integers: x' = (x + 0.5) * s - 0.5
        return PinholeIntrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )


@dataclass(frozen=True)
class MaskPoint3D:
    """3-D centroid (metres, optical frame) and how many valid depth pixels produced it."""

    x: float
    y: float
    z: float
    n_points: int

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.z)


def backproject_pixels(u: np.ndarray, v: np.ndarray, z: np.ndarray, intr: PinholeIntrinsics) -> np.ndarray:
    """(N,) pixel columns/rows and depths (m) -> (N, 3) points: X = (u - cx) Z / fx, Y = (v - cy) Z / fy."""
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    z = np.asarray(z, np.float64)
    return np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], axis=-1)


def _resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = mask.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def backproject_mask(mask: np.ndarray, depth_m: np.ndarray, intr: PinholeIntrinsics) -> np.ndarray:
    """(N, 3) points of the mask's pixels with a valid depth.

    ``depth_m`` is float metres (NaN/inf/<=0 = invalid), registered to the colour image. When its size
    differs from the mask's, the mask is resampled (nearest) to the depth image and the intrinsics are
    scaled from their own (width, height) to the depth image's.
    """
    mask = np.asarray(mask).astype(bool)
    depth_m = np.asarray(depth_m)
    if mask.ndim != 2 or depth_m.ndim != 2:
        raise ValueError(f"mask and depth must be 2-D, got {mask.shape} and {depth_m.shape}")
    dh, dw = depth_m.shape
    if mask.shape != depth_m.shape:
        mask = _resize_mask_nearest(mask, dh, dw)
    intr = intr.scaled_to(dw, dh)
    vs, us = np.nonzero(mask)
    z = depth_m[vs, us].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    return backproject_pixels(us[ok], vs[ok], z[ok], intr)


def mask_centroid_3d(
    mask: np.ndarray, depth_m: np.ndarray, intr: PinholeIntrinsics, min_points: int = 1
) -> MaskPoint3D | None:
    """Component-wise median of the mask's valid back-projected points, or None if fewer than ``min_points``."""
    pts = backproject_mask(mask, depth_m, intr)
    if pts.shape[0] < max(1, int(min_points)):
        return None
    x, y, z = np.median(pts, axis=0)
    return MaskPoint3D(float(x), float(y), float(z), int(pts.shape[0]))
