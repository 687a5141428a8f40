"""camera optical frame -> ``target_frame`` with TF, at the IMAGE stamp.

A grasp planner must get the object where it was when the image was taken: looking up the latest
transform instead (what yolo_ros users hit) puts the object wherever the arm or base has moved since.
So the lookup is ``lookup_transform(target_frame, image.header.frame_id, image.header.stamp, timeout)``
with a bounded wait; an unstamped image (stamp 0) falls back to the latest transform, and says so.

tf2_ros is part of every ROS 2 install but not on PyPI: it is imported when present. Without it (the pip
route) :class:`TargetFrameLookup` reports ``available = False`` and every lookup fails with that reason;
the node says so once at start-up. The transform arithmetic itself is
:class:`ros2_iterprime.geometry.transforms.RigidTransform` (plain numpy, tested without ROS).
"""
from __future__ import annotations

from typing import Any

from ..geometry.transforms import RigidTransform

__all__ = ["TargetFrameLookup"]


class TargetFrameLookup:
    """Wraps a ``tf2_ros.Buffer`` (created with a ``TransformListener`` on ``node`` unless given).

    Args:
        node: the rclpy node whose executor spins the /tf and /tf_static subscriptions.
        buffer: an object with tf2_ros.Buffer's ``lookup_transform(target, source, time, timeout)``
            (tests pass a stand-in); None creates the real one when tf2_ros is importable.
    """

    MISSING = ("tf2_ros is not installed (pip route: it comes with every ROS 2 install, not from PyPI), so "
               "target_frame cannot be used")

    @staticmethod
    def importable() -> bool:
        try:
            import tf2_ros  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, node: Any = None, buffer: Any = None):
        self.buffer = buffer
        self._listener = None
        self._exceptions: tuple[type[BaseException], ...] = ()
        self.unavailable_reason = ""
        try:
            import tf2_ros

            self._exceptions = (tf2_ros.TransformException,)
            if self.buffer is None and node is not None:
                self.buffer = tf2_ros.Buffer()
                self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
        except ImportError:
            if self.buffer is None:
                self.unavailable_reason = self.MISSING

    @property
    def available(self) -> bool:
        return self.buffer is not None

    def lookup(self, target_frame: str, header: Any, timeout_s: float) -> tuple[RigidTransform | None, str]:
        """(transform taking points from ``header.frame_id`` to ``target_frame``, "") or (None, reason)."""
        if not self.available:
            return None, self.unavailable_reason or "no TF buffer"
        source = str(getattr(header, "frame_id", "") or "")
        if not source:
            return None, "the image has no frame_id"
        from rclpy.duration import Duration
        from rclpy.time import Time

        stamp = header.stamp
        if int(stamp.sec) < 0 or not 0 <= int(stamp.nanosec) < 1_000_000_000:
            return None, f"the image stamp {int(stamp.sec)}.{int(stamp.nanosec)} is not a valid time"
        when = Time(seconds=int(stamp.sec), nanoseconds=int(stamp.nanosec))
        note = "" if when.nanoseconds > 0 else " (unstamped image: latest transform used)"
        try:
            msg = self.buffer.lookup_transform(target_frame, source, when, Duration(seconds=float(timeout_s)))
        except self._exceptions + (LookupError, TimeoutError) as exc:
            return None, (f"no transform {source} -> {target_frame} at the image stamp "
                          f"{int(stamp.sec)}.{int(stamp.nanosec):09d} within {timeout_s:g} s: "
                          f"{type(exc).__name__}: {str(exc)[:200]}")
        try:
            return RigidTransform.from_msg(msg), note
        except ValueError as exc:
            return None, f"invalid transform {source} -> {target_frame}: {exc}"

    def close(self, node: Any = None) -> None:
        """Stop listening (deactivate/cleanup)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.unregister()
            except Exception:  # pragma: no cover - older tf2_ros
                pass
