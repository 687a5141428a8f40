"""Camera model, depth validity and back-projection of a mask (pure numpy, no ROS import).

This is the bottom layer of the 3-D output (see ``docs/3d.md``): :mod:`ros2_iterprime.geometry.pointcloud`
builds the cleaned masked point cloud on it, :mod:`ros2_iterprime.geometry.box` the oriented box and
:mod:`ros2_iterprime.geometry.target` the one call the ROS node makes.

Conventions
-----------
* Points are in the camera *optical* frame of the image (REP 103 / REP 105 ``*_optical`` frames:
  x right, y down, z forward), in metres. Pixel (u, v) = (column, row); pixel centres are at integer
  coordinates, as in sensor_msgs/CameraInfo's K and P.
* Back-projection of pixel (u, v) with depth Z (the z coordinate, not the range along the ray, as
  REP 118 depth images carry): ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``.

Camera model and distortion
---------------------------
The images are assumed *rectified* (the ROS ``image_rect`` convention): :meth:`PinholeIntrinsics.
from_camera_info` takes fx, fy, cx, cy from the projection matrix P, the intrinsics of the rectified
image, exactly as ``image_geometry.PinholeCameraModel`` and ``depth_image_proc`` do; it falls back to K
only when P is all zero (some drivers leave it unset). Lens distortion is **not** modelled: with a
non-zero D the result carries ``has_distortion=True`` so the node can warn once; if such a camera's
*raw* (unrectified) depth is fed in anyway, the points carry the lens distortion error (a few per cent
of the lateral offset near the image corners of a wide lens). The stereo baseline terms of P (Tx, Ty)
are ignored, as in depth_image_proc: points are in the frame of the image's own ``header.frame_id``.
CameraInfo ``roi`` is honoured (a sub-window shifts the principal point); binning is covered by
:meth:`PinholeIntrinsics.scaled_to` (the depth image's size against the calibrated size).

Validation (never a non-finite or absurd output)
-----------------------------------------------
Every :class:`PinholeIntrinsics` is validated when it is built: fx, fy finite, normal (not subnormal)
and in [``MIN_FOCAL_PX``, ``MAX_FOCAL_PX``] = [1, 1e5] px; cx, cy finite and within one image size of
the image (``-W <= cx <= 2 W``; ``|cx| <= 2 * MAX_IMAGE_SIDE`` when the size is unknown); a skew
above 1e-3 fx (not modelled) is refused. :meth:`~PinholeIntrinsics.from_camera_info` also refuses any
non-finite or subnormal entry of K or P and a malformed third row. Errors are
:class:`InvalidGeometryError` (a ``ValueError``) with the reason.

A depth value is valid when it is finite, positive and inside ``[min_depth, max_depth]`` (defaults
:data:`DEFAULT_MIN_DEPTH` = 0.05 m, :data:`DEFAULT_MAX_DEPTH` = 20 m; configurable): 0 (the 16UC1
"no return"), NaN, +-inf and negatives are always invalid; with the defaults so are subnormals and
absurd values such as 1e38. With valid intrinsics and depths every back-projected coordinate is bounded, so every point
and centroid returned here is finite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MIN_DEPTH",
    "InvalidGeometryError",
    "MaskPoint3D",
    "PinholeIntrinsics",
    "backproject_mask",
    "backproject_pixels",
    "check_depth_range",
    "mask_centroid_3d",
    "mask_to_depth_grid",
    "valid_depth",
]

#: Plausible focal lengths in pixels (a 1-px focal length or a 100k-px one is a broken calibration).
MIN_FOCAL_PX = 1.0
MAX_FOCAL_PX = 1e5
#: Largest image side accepted, in pixels.
MAX_IMAGE_SIDE = 65536
#: Largest skew (K[0,1]) accepted, relative to fx; skew is not modelled (error <= 1 mm per metre).
MAX_REL_SKEW = 1e-3
#: Default valid depth range in metres (configurable everywhere a depth is read).
DEFAULT_MIN_DEPTH = 0.05
DEFAULT_MAX_DEPTH = 20.0
#: Largest max_depth accepted (m): far beyond any depth camera, small enough to keep every point finite.
MAX_DEPTH_LIMIT = 1e4
#: Largest relative aspect-ratio difference between the mask and the depth image (registration check).
MAX_ASPECT_MISMATCH = 0.02

_TINY = np.finfo(np.float64).tiny  # smallest normal double


class InvalidGeometryError(InvalidInputError):
    """Intrinsics, depth range or image sizes that cannot give a trustworthy 3-D output."""


def _finite_normal(x: float) -> bool:
    """Finite and either exactly 0 or a normal (not subnormal) double."""
    return math.isfinite(x) and (x == 0.0 or abs(x) >= _TINY)


@dataclass(frozen=True)
class PinholeIntrinsics:
    """fx, fy, cx, cy in pixels, for an image of (width, height) (0 = unknown). Validated on creation.

    ``has_distortion`` records that the CameraInfo had a non-zero D, ``k_differs_from_p`` that its K and
    P name different fx, fy, cx, cy (as for a raw image whose rectification changes the camera): the
    image must be rectified, the distortion is not applied (see the module docstring); the node warns.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0
    has_distortion: bool = False
    k_differs_from_p: bool = False

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise InvalidGeometryError(f"intrinsics: {name}={v!r} is not a number") from None
            object.__setattr__(self, name, v)
        for name in ("width", "height"):
            v = getattr(self, name)
            try:
                iv = int(v)
                ok = iv == v and 0 <= iv <= MAX_IMAGE_SIDE
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise InvalidGeometryError(f"intrinsics: {name}={v!r} is not an image size in [0, {MAX_IMAGE_SIDE}]")
            object.__setattr__(self, name, iv)
        for name in ("fx", "fy"):
            f = getattr(self, name)
            if not (_finite_normal(f) and MIN_FOCAL_PX <= f <= MAX_FOCAL_PX):
                raise InvalidGeometryError(
                    f"intrinsics: {name}={f!r} is not a plausible focal length "
                    f"(finite, in [{MIN_FOCAL_PX:g}, {MAX_FOCAL_PX:g}] px)")
        for name, size in (("cx", self.width), ("cy", self.height)):
            c = getattr(self, name)
            lo, hi = (-size, 2 * size) if size else (-2 * MAX_IMAGE_SIDE, 2 * MAX_IMAGE_SIDE)
            if not (_finite_normal(c) and lo <= c <= hi):
                what = f"image size {size}" if size else "unknown image size"
                raise InvalidGeometryError(
                    f"intrinsics: {name}={c!r} is not a plausible principal point ({what}: finite, in [{lo}, {hi}])")
        object.__setattr__(self, "has_distortion", bool(self.has_distortion))
        object.__setattr__(self, "k_differs_from_p", bool(self.k_differs_from_p))

    @classmethod
    def from_camera_info(cls, info: Any) -> "PinholeIntrinsics":
        """From a sensor_msgs/CameraInfo (duck-typed: k, p, d, width, height, roi).

        fx, fy, cx, cy come from P (the rectified image's intrinsics, as image_geometry and
        depth_image_proc use), or from K when P is all zero. Raises :class:`InvalidGeometryError`
        naming the problem: a K/P of the wrong length, any non-finite or subnormal entry in K or P,
        both all zero (uncalibrated), a third row other than (0 0 1 [0]), an implausible fx/fy/cx/cy
        (see the class) or skew.
        """
        mats = {}
        for name, n in (("K", 9), ("P", 12)):
            raw = getattr(info, name.lower(), ())
            try:
                m = np.asarray(raw if raw is not None else (), dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise InvalidGeometryError(f"CameraInfo {name} is not numeric") from None
            if m.size == 0:
                m = np.zeros(n)
            if m.size != n:
                raise InvalidGeometryError(f"CameraInfo {name} has {m.size} entries, expected {n}")
            bad = [i for i, x in enumerate(m.tolist()) if not _finite_normal(x)]
            if bad:
                raise InvalidGeometryError(
                    f"CameraInfo {name}[{bad[0]}] = {m[bad[0]]!r} is not a finite, normal number")
            mats[name] = m
        k, p = mats["K"], mats["P"]
        if p.any():
            src, fx, fy, cx, cy, skew, third = "P", p[0], p[5], p[2], p[6], p[1], p[8:12]
            structure_ok = p[4] == 0 and np.allclose(third, [0, 0, 1, 0], atol=1e-9, rtol=0)
        elif k.any():
            src, fx, fy, cx, cy, skew, third = "K", k[0], k[4], k[2], k[5], k[1], k[6:9]
            structure_ok = k[3] == 0 and np.allclose(third, [0, 0, 1], atol=1e-9, rtol=0)
        else:
            raise InvalidGeometryError("CameraInfo has K and P all zero (uncalibrated camera)")
        if not structure_ok:
            raise InvalidGeometryError(
                f"CameraInfo {src} is not a pinhole matrix (second row must start with 0, third row must be "
                f"{'0 0 1 0' if src == 'P' else '0 0 1'}; got {third.tolist()})")
        if not (abs(skew) <= MAX_REL_SKEW * abs(fx)):
            raise InvalidGeometryError(f"CameraInfo {src} has skew {skew!r}; skew is not modelled (|s| <= 1e-3 fx)")
        width, height = _size_of(info, "width"), _size_of(info, "height")
        roi = getattr(info, "roi", None)
        if roi is not None and (int(getattr(roi, "width", 0) or 0) > 0 and int(getattr(roi, "height", 0) or 0) > 0):
            # a sub-window of the calibrated image: shift the principal point (image_geometry's rule)
            cx -= float(getattr(roi, "x_offset", 0) or 0)
            cy -= float(getattr(roi, "y_offset", 0) or 0)
            width, height = int(roi.width), int(roi.height)
        try:
            d = getattr(info, "d", None)
            d = np.asarray(() if d is None else d, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidGeometryError("CameraInfo D is not numeric") from None
        has_distortion = bool(np.any(d != 0))  # NaN counts as non-zero: treated as "distorted"
        k_vs_p = bool(p.any() and k.any() and not np.allclose(k[[0, 4, 2, 5]], p[[0, 5, 2, 6]], rtol=1e-6, atol=1e-6))
        return cls(float(fx), float(fy), float(cx), float(cy), width, height, has_distortion, k_vs_p)

    def scaled_to(self, width: int, height: int) -> "PinholeIntrinsics":
        """The same camera at another resolution (a depth image of a different size, binning).

        Raises :class:`InvalidGeometryError` when the scaled camera is implausible (e.g. a 1-px high image).
        """
        if not self.width or not self.height or (self.width, self.height) == (width, height):
            return PinholeIntrinsics(self.fx, self.fy, self.cx, self.cy, width, height, self.has_distortion,
                                     self.k_differs_from_p)
        sx, sy = width / self.width, height / self.height
        # pixel centres at integers: x' = (x + 0.5) * s - 0.5
        return PinholeIntrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height,
            self.has_distortion, self.k_differs_from_p,
        )

    def as_matrix(self) -> np.ndarray:
        """The 3x3 K of these intrinsics (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) optical-frame points with z > 0 -> (N, 2) pixel (u, v) (e.g. to draw the box)."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        z = p[:, 2]
        if not (np.isfinite(p).all() and (z > 0).all()):
            raise InvalidGeometryError("project: points must be finite with z > 0")
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], axis=-1)


def _size_of(info: Any, name: str) -> int:
    try:
        v = int(getattr(info, name, 0) or 0)
    except (TypeError, ValueError):
        raise InvalidGeometryError(f"CameraInfo {name} is not an integer") from None
    if not 0 <= v <= MAX_IMAGE_SIDE:
        raise InvalidGeometryError(f"CameraInfo {name}={v} is not in [0, {MAX_IMAGE_SIDE}]")
    return v


@dataclass(frozen=True)
class MaskPoint3D:
    """3-D centroid (metres, optical frame) and how many valid depth pixels produced it."""

    x: float
    y: float
    z: float
    n_points: int

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.z)


def check_depth_range(min_depth: float, max_depth: float) -> tuple[float, float]:
    """Validate a depth range: finite, ``0 <= min_depth < max_depth <= MAX_DEPTH_LIMIT`` (1e4 m).

    ``min_depth`` = 0 means "any positive depth" (0 itself is always invalid, see :func:`valid_depth`).
    """
    try:
        lo, hi = float(min_depth), float(max_depth)
    except (TypeError, ValueError):
        raise InvalidGeometryError(f"depth range ({min_depth!r}, {max_depth!r}) is not numeric") from None
    if not (_finite_normal(lo) and _finite_normal(hi) and 0 <= lo < hi <= MAX_DEPTH_LIMIT):
        raise InvalidGeometryError(
            f"depth range [{lo!r}, {hi!r}] m is invalid (need 0 <= min_depth < max_depth <= {MAX_DEPTH_LIMIT:g})")
    return lo, hi


def valid_depth(depth_m: np.ndarray, min_depth: float = DEFAULT_MIN_DEPTH,
                max_depth: float = DEFAULT_MAX_DEPTH) -> np.ndarray:
    """Boolean array: finite, > 0 and inside ``[min_depth, max_depth]`` (NaN, inf, 0, negatives, 1e38 -> False)."""
    lo, hi = check_depth_range(min_depth, max_depth)
    d = np.asarray(depth_m)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0) & (d >= lo) & (d <= hi)


def backproject_pixels(u: np.ndarray, v: np.ndarray, z: np.ndarray, intr: PinholeIntrinsics) -> np.ndarray:
    """(N,) pixel columns/rows and depths (m) -> (N, 3) float64: X = (u - cx) Z / fx, Y = (v - cy) Z / fy.

    A low-level map: the inputs must already be valid (finite); a non-finite input raises
    :class:`InvalidGeometryError` rather than producing a non-finite point.
    """
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    z = np.asarray(z, np.float64)
    if not (np.isfinite(u).all() and np.isfinite(v).all() and np.isfinite(z).all()):
        raise InvalidGeometryError("backproject_pixels: u, v and z must be finite (filter invalid depth first)")
    return np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], axis=-1)


def _resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = mask.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def _check_aspect(what: str, a: tuple[int, int], b: tuple[int, int]) -> None:
    """(h, w) pairs must have the same aspect ratio within MAX_ASPECT_MISMATCH (a registration check)."""
    (ha, wa), (hb, wb) = a, b
    if min(ha, wa, hb, wb) <= 0:
        raise InvalidGeometryError(f"{what}: empty image size {a} / {b}")
    ra, rb = wa / ha, wb / hb
    if abs(ra / rb - 1.0) > MAX_ASPECT_MISMATCH:
        raise InvalidGeometryError(
            f"{what}: sizes {wa}x{ha} and {wb}x{hb} have different aspect ratios (not registered to each other)")


def mask_to_depth_grid(
    mask: np.ndarray, depth_m: np.ndarray, intr: PinholeIntrinsics
) -> tuple[np.ndarray, np.ndarray, PinholeIntrinsics]:
    """Bring a (H, W) mask onto the (Hd, Wd) depth image's grid: (mask_d bool, depth float, intrinsics_d).

    The depth image must be registered to the mask's image (same field of view, same aspect ratio within
    2 %, any resolution). The mask is resampled nearest-neighbour; the intrinsics are scaled from their
    own (width, height) -- taken to be the depth image's when unknown -- to the depth image's size.
    """
    mask = np.asarray(mask)
    depth_m = np.asarray(depth_m)
    if mask.ndim != 2 or depth_m.ndim != 2:
        raise InvalidGeometryError(f"mask and depth must be 2-D, got {mask.shape} and {depth_m.shape}")
    if depth_m.dtype.kind not in "fiu":
        raise InvalidGeometryError(f"depth must be numeric metres, got dtype {depth_m.dtype}")
    mask = mask.astype(bool)
    dh, dw = depth_m.shape
    _check_aspect("mask vs depth", mask.shape, (dh, dw))
    if intr.width and intr.height:
        _check_aspect("CameraInfo vs depth", (intr.height, intr.width), (dh, dw))
    if mask.shape != depth_m.shape:
        mask = _resize_mask_nearest(mask, dh, dw)
    return mask, depth_m, intr.scaled_to(dw, dh)


def backproject_mask(
    mask: np.ndarray,
    depth_m: np.ndarray,
    intr: PinholeIntrinsics,
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> np.ndarray:
    """(N, 3) float64 points of the mask's pixels with a valid depth, row-major pixel order.

    ``depth_m`` is float metres registered to the colour image; a depth outside
    ``[min_depth, max_depth]`` or non-finite is ignored. When its size differs from the mask's, see
    :func:`mask_to_depth_grid`. The points are always finite.
    """
    mask, depth_m, intr = mask_to_depth_grid(mask, depth_m, intr)
    ok = mask & valid_depth(depth_m, min_depth, max_depth)
    vs, us = np.nonzero(ok)
    return backproject_pixels(us, vs, depth_m[vs, us].astype(np.float64), intr)


def mask_centroid_3d(
    mask: np.ndarray,
    depth_m: np.ndarray,
    intr: PinholeIntrinsics,
    min_points: int = 1,
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> MaskPoint3D | None:
    """Component-wise median of the mask's valid back-projected points, or None if fewer than ``min_points``.

    The quick rule (no erosion, no outlier removal). :func:`ros2_iterprime.geometry.target.target_3d`'s
    centroid -- the same median over the *cleaned* cloud -- is the better one when the mask's border
    spills onto the background (measured in ``docs/3d.md``); use that for manipulation.
    """
    pts = backproject_mask(mask, depth_m, intr, min_depth, max_depth)
    if pts.shape[0] < max(1, int(min_points)):
        return None
    x, y, z = np.median(pts, axis=0)
    return MaskPoint3D(float(x), float(y), float(z), int(pts.shape[0]))
