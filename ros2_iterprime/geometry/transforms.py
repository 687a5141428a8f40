"""Rigid-transform arithmetic for the target frame (pure numpy; the TF lookup itself is ROS-side).

A :class:`RigidTransform` is what a geometry_msgs/TransformStamped carries: a translation (metres) and
a rotation quaternion (x, y, z, w). As returned by ``tf2_ros.Buffer.lookup_transform(target_frame,
source_frame, stamp)``, it maps a point expressed in the *source* frame (here the camera's optical
frame, the image's ``header.frame_id``) to the *target* frame::

    p_target = R(q) @ p_source + t

Quaternions are Hamilton quaternions in ROS order (x, y, z, w), right-handed rotations. Every
quaternion accepted is validated (4 finite numbers, norm >= 1e-6: a zero or non-finite quaternion
raises :class:`~ros2_iterprime.geometry.camera.InvalidGeometryError`) and normalised; translations must be
finite with every component below 1e6 m, so every output is finite. Quaternions produced here are
canonical: w >= 0 (q and -q are the same rotation; at w == 0 the first non-zero of x, y, z is positive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .camera import InvalidGeometryError

__all__ = [
    "RigidTransform",
    "canonical_quaternion",
    "matrix_to_quaternion",
    "normalize_quaternion",
    "quaternion_multiply",
    "quaternion_to_matrix",
]

#: Smallest quaternion norm accepted before normalisation.
MIN_QUATERNION_NORM = 1e-6
#: Largest translation component accepted (m).
MAX_TRANSLATION = 1e6


def normalize_quaternion(q: Any) -> np.ndarray:
    """(x, y, z, w) -> unit (4,) float64. Raises InvalidGeometryError for non-finite or ~zero input."""
    try:
        a = np.asarray(q, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidGeometryError(f"quaternion {q!r} is not numeric") from None
    if a.shape != (4,):
        raise InvalidGeometryError(f"quaternion must have 4 components (x, y, z, w), got {a.size}")
    if not np.isfinite(a).all():
        raise InvalidGeometryError(f"quaternion {a.tolist()} is not finite")
    n = float(np.sqrt(np.sum(a * a)))
    if not n >= MIN_QUATERNION_NORM:
        raise InvalidGeometryError(f"quaternion {a.tolist()} has norm {n:g} (zero quaternion: no rotation defined)")
    return a / n


def canonical_quaternion(q: Any) -> np.ndarray:
    """The unit quaternion of the same rotation with w >= 0 (ties: first non-zero of x, y, z positive)."""
    a = normalize_quaternion(q)
    if a[3] < 0 or (a[3] == 0 and a[np.flatnonzero(a[:3])[0]] < 0):
        a = -a
    return a + 0.0  # no -0.0


def quaternion_multiply(q1: Any, q2: Any) -> np.ndarray:
    """Hamilton product q1 * q2 (rotation q2 first, then q1), (x, y, z, w), normalised."""
    x1, y1, z1, w1 = normalize_quaternion(q1)
    x2, y2, z2, w2 = normalize_quaternion(q2)
    return normalize_quaternion([
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    ])


def quaternion_to_matrix(q: Any) -> np.ndarray:
    """(x, y, z, w) -> (3, 3) rotation matrix (float64, det +1)."""
    x, y, z, w = normalize_quaternion(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(r: Any, tol: float = 1e-6) -> np.ndarray:
    """(3, 3) rotation matrix -> canonical unit quaternion (x, y, z, w).

    Raises InvalidGeometryError unless ``r`` is finite, orthonormal (|R^T R - I| <= tol) and det +1.
    Uses the numerically stable branch on the largest of w, x, y, z (Shepperd's method).
    """
    m = np.asarray(r, dtype=np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise InvalidGeometryError(f"rotation matrix must be a finite 3x3, got shape {m.shape}")
    if np.abs(m.T @ m - np.eye(3)).max() > tol or np.linalg.det(m) < 0:
        raise InvalidGeometryError("matrix is not a rotation (not orthonormal with det +1)")
    t = np.trace(m)
    cands = np.array([t, m[0, 0], m[1, 1], m[2, 2]])
    i = int(np.argmax(cands))
    if i == 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif i == 1:
        s = 2.0 * np.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 1e-300))
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(max(1.0 - m[0, 0] + m[1, 1] - m[2, 2], 1e-300))
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(max(1.0 - m[0, 0] - m[1, 1] + m[2, 2], 1e-300))
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    return canonical_quaternion(q)


def _xyz(obj: Any, what: str) -> np.ndarray:
    return np.array([float(getattr(obj, "x")), float(getattr(obj, "y")), float(getattr(obj, "z"))]) \
        if hasattr(obj, "x") else np.asarray(obj, np.float64).reshape(-1)


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class RigidTransform:
    """p_target = R(rotation) @ p_source + translation. translation (3,) m; rotation (x, y, z, w).

    Validated and normalised on creation (the stored quaternion is canonical, w >= 0).
    """

    translation: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        try:
            t = np.asarray(self.translation, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidGeometryError(f"translation {self.translation!r} is not numeric") from None
        if t.shape != (3,) or not np.isfinite(t).all() or np.abs(t).max() > MAX_TRANSLATION:
            raise InvalidGeometryError(
                f"translation must be 3 finite numbers below {MAX_TRANSLATION:g} m, got {t.tolist()}")
        t = t + 0.0
        t.setflags(write=False)
        q = canonical_quaternion(self.rotation)
        q.setflags(write=False)
        object.__setattr__(self, "translation", t)
        object.__setattr__(self, "rotation", q)

    @classmethod
    def identity(cls) -> "RigidTransform":
        return cls(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    @classmethod
    def from_matrix(cls, m: Any) -> "RigidTransform":
        """From a 4x4 homogeneous matrix [[R, t], [0 0 0 1]]."""
        m = np.asarray(m, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all() or not np.allclose(m[3], [0, 0, 0, 1]):
            raise InvalidGeometryError("expected a finite 4x4 homogeneous matrix with last row 0 0 0 1")
        return cls(m[:3, 3], matrix_to_quaternion(m[:3, :3]))

    @classmethod
    def from_msg(cls, msg: Any) -> "RigidTransform":
        """From a geometry_msgs TransformStamped / Transform (translation, rotation) or Pose
        (position, orientation), duck-typed."""
        if hasattr(msg, "transform"):
            msg = msg.transform
        try:
            if hasattr(msg, "translation"):
                t, q = msg.translation, msg.rotation
            else:
                t, q = msg.position, msg.orientation
            return cls(_xyz(t, "translation"), [float(q.x), float(q.y), float(q.z), float(q.w)])
        except AttributeError as exc:
            raise InvalidGeometryError(f"not a Transform/TransformStamped/Pose: {exc}") from None

    def allclose(self, other: "RigidTransform", atol: float = 1e-9) -> bool:
        """Same transform within ``atol`` (matrix entries; q and -q are equal)."""
        return bool(np.allclose(self.matrix(), other.matrix(), rtol=0.0, atol=atol))

    @property
    def rotation_matrix(self) -> np.ndarray:
        return quaternion_to_matrix(self.rotation)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.rotation_matrix
        m[:3, 3] = self.translation
        return m

    def apply(self, points: Any) -> np.ndarray:
        """(N, 3) or (3,) points in the source frame -> the same shape in the target frame (float64)."""
        p = np.asarray(points, dtype=np.float64)
        if p.shape[-1:] != (3,) or p.ndim not in (1, 2):
            raise InvalidGeometryError(f"points must be (3,) or (N, 3), got {p.shape}")
        if not np.isfinite(p).all():
            raise InvalidGeometryError("points must be finite")
        return p @ self.rotation_matrix.T + self.translation

    def apply_pose(self, position: Any, orientation: Any) -> tuple[np.ndarray, np.ndarray]:
        """A pose (position (3,), orientation quaternion x, y, z, w) in the source frame -> in the target
        frame: (R p + t, q_tf * q), the quaternion canonical."""
        pos = self.apply(np.asarray(position, np.float64).reshape(3))
        return pos, canonical_quaternion(quaternion_multiply(self.rotation, orientation))

    def compose(self, other: "RigidTransform") -> "RigidTransform":
        """self after other: (self @ other).apply(p) == self.apply(other.apply(p))."""
        return RigidTransform(self.apply(other.translation), quaternion_multiply(self.rotation, other.rotation))

    __matmul__ = compose

    def inverse(self) -> "RigidTransform":
        q_inv = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return RigidTransform(-(quaternion_to_matrix(q_inv) @ self.translation), q_inv)
