"""The one 3-D call the ROS node makes: mask + colour + depth + camera -> the target's 3-D description.

:func:`target_3d` chains :func:`ros2_iterprime.geometry.pointcloud.masked_point_cloud` (erosion, valid depth,
depth band, voxels, cap, statistical outliers), :func:`ros2_iterprime.geometry.box.robust_centroid` and
:func:`ros2_iterprime.geometry.box.fit_oriented_box`, all in the depth image's optical frame.
:meth:`Target3D.transformed` re-expresses the result in another frame with a
:class:`ros2_iterprime.geometry.transforms.RigidTransform` (the TF lookup at the image stamp is the node's job).
Pure numpy/scipy; ``docs/3d.md`` is the user-facing description.

Example::

    from ros2_iterprime.geometry.camera import PinholeIntrinsics
    from ros2_iterprime.geometry.target import Target3DParams, target_3d

    intr = PinholeIntrinsics.from_camera_info(camera_info_msg)      # raises on NaN/absurd K/P
    t = target_3d(result.mask, rgb, depth_m, intr, Target3DParams(voxel_size=0.005))
    if t.ok:
        t.points, t.colors, t.centroid, t.box.center, t.box.size, t.box.quaternion
    else:
        t.reason                                                     # e.g. too few valid depth pixels
    t_base = t.transformed(RigidTransform.from_msg(tf_stamped))      # in the target frame
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .box import DEFAULT_MIN_BOX_SIZE, OrientedBox3D, fit_oriented_box, robust_centroid
from .camera import InvalidGeometryError, MaskPoint3D, PinholeIntrinsics
from .pointcloud import CloudCounts, CloudParams, masked_point_cloud
from .transforms import RigidTransform

__all__ = ["Target3D", "Target3DParams", "target_3d"]


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class Target3DParams(CloudParams):
    """Every setting of :func:`target_3d` (defaults in brackets; rules in :mod:`ros2_iterprime.geometry.pointcloud`).

    erosion_px [3] px, min_depth [0.05] m, max_depth [20] m, depth_outlier_k [3], depth_outlier_extent
    [0.5], depth_outlier_min_band [0.02] m, sor_neighbors [20] (0 = off), sor_std_ratio [2],
    voxel_size [0 = off] m, max_points [20000] (0 = no cap), min_points [10], and
    min_box_size [0.005] m: the smallest extent of the box.
    """

    min_box_size: float = DEFAULT_MIN_BOX_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        v = self.min_box_size
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not (np.isfinite(v) and 0 < v <= 10):
            raise InvalidGeometryError(f"Target3DParams.min_box_size={v!r} must be a finite number in (0, 10] m")


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class Target3D:
    """The target in 3-D, in one frame (the depth image's optical frame unless :meth:`transformed`).

    points (N, 3) float32 m and colors (N, 3) uint8: the cleaned cloud (N = 0 when not ok).
    centroid (3,) float64: per-axis median of the points (None when not ok). box: the oriented box of
    the points (None when not ok). counts: points per stage. erosion_px: radius used (reduced from the
    requested one when it left too few points, see ``erosion_reduced``). reason: why there is no target
    (empty when ok). Every number is finite.
    """

    points: np.ndarray
    colors: np.ndarray
    centroid: np.ndarray | None
    box: OrientedBox3D | None
    counts: CloudCounts
    erosion_px: int
    erosion_reduced: bool
    reason: str = ""
    depth_band_m: float | None = None
    params: Target3DParams = field(default_factory=Target3DParams, repr=False)

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    def centroid_point(self) -> MaskPoint3D | None:
        """The centroid as the node's existing :class:`~ros2_iterprime.geometry.camera.MaskPoint3D` (n_points = N)."""
        if self.centroid is None:
            return None
        x, y, z = (float(v) for v in self.centroid)
        return MaskPoint3D(x, y, z, self.n_points)

    def transformed(self, tf: RigidTransform) -> "Target3D":
        """The same target in ``tf``'s target frame (points, centroid and box; counts unchanged).

        The centroid is the transformed optical-frame centroid (the per-axis median is not
        rotation-equivariant, so it is not recomputed); the box keeps its extents and is re-canonicalised.
        """
        pts = tf.apply(self.points.astype(np.float64)).astype(np.float32) if self.n_points else self.points
        return replace(
            self,
            points=np.ascontiguousarray(pts, np.float32),
            centroid=None if self.centroid is None else tf.apply(self.centroid),
            box=None if self.box is None else self.box.transformed(tf),
        )


def target_3d(
    mask: np.ndarray,
    rgb: np.ndarray | None,
    depth_m: np.ndarray,
    intrinsics: PinholeIntrinsics,
    params: Target3DParams | None = None,
) -> Target3D:
    """The target's cleaned cloud, centroid and oriented box, in the depth image's optical frame.

    mask: (H, W) bool on the colour image; rgb: (H, W, 3) uint8 RGB or None (white points); depth_m:
    (Hd, Wd) float metres registered to the colour image, NaN/0/inf = invalid (as
    ``depth_to_metres`` gives for 16UC1 mm and 32FC1 m), any resolution of the same aspect ratio;
    intrinsics: the validated camera (:meth:`PinholeIntrinsics.from_camera_info`).

    Always returns a :class:`Target3D`; ``ok`` is false, with a ``reason``, when too few valid points
    remain (empty mask, no valid depth inside it, everything removed as outliers). Raises
    :class:`~ros2_iterprime.geometry.camera.InvalidGeometryError` (a ``ValueError``) for unusable inputs:
    wrong shapes/dtypes, a depth image not registered to the mask (different aspect ratio), invalid params.
    """
    p = params if params is not None else Target3DParams()
    if not isinstance(p, Target3DParams):
        raise InvalidGeometryError(f"params must be Target3DParams, got {type(p).__name__}")
    cloud = masked_point_cloud(mask, rgb, depth_m, intrinsics, p)
    common = dict(counts=cloud.counts, erosion_px=cloud.erosion_px, erosion_reduced=cloud.erosion_reduced,
                  depth_band_m=cloud.depth_band_m, params=p)
    if not cloud.ok:
        return Target3D(points=np.zeros((0, 3), np.float32), colors=np.zeros((0, 3), np.uint8), centroid=None,
                        box=None, reason=cloud.reason, **common)
    centroid = robust_centroid(cloud.points)
    box = fit_oriented_box(cloud.points, p.min_box_size)
    return Target3D(points=cloud.points, colors=cloud.colors, centroid=centroid, box=box, **common)
