"""camera optical frame -> ``target_frame`` with TF, at the IMAGE stamp.

A grasp planner must get the object where it was when the image was taken: looking up the latest
transform instead (what yolo_ros users hit) puts the object wherever the arm or base has moved since.
So the lookup is ``lookup_transform(target_frame, image.header.frame_id, image.header.stamp, timeout)``
with a bounded wait; an unstamped image (stamp 0) falls back to the latest transform, and says so.

Timing. The lookup runs after the model, so the stamp it asks for is up to ``max_frame_age`` + the model
run old (a grounding takes 10-18 s on a CPU). tf2's default cache of 10 s would have dropped it for every
link that moves (odom -> base_link, an arm-mounted camera), so the buffer keeps ``tf_cache_time``
seconds (node parameter, 120 s by default), and the listener exists from activation whenever 3-D
outputs are on (``use_depth``), so a ``target_frame`` set at run time finds the history it needs.

Backends, the first that imports:

1. ``tf2_ros`` (every ROS 2 install; not on PyPI): ``tf2_ros.Buffer(cache_time)`` + ``TransformListener``.
2. ``tf2_msgs`` only (the pip route, where ``scripts/build_interfaces.sh`` builds tf2_msgs/TFMessage from
   its published definition because no wheel exists): a plain-Python listener on /tf and /tf_static
   (tf2_ros's QoS: reliable, keep last 100; /tf_static transient local) into
   :class:`ros2_iterprime.geometry.tf_buffer.TransformBuffer`, which follows tf2's rules (interpolation at
   the stamp, no extrapolation, latest common time for stamp 0, static links at every time).
3. neither: :class:`TargetFrameLookup` reports ``available = False`` and every lookup fails with that
   reason; the node says so once.

The transform arithmetic itself is :class:`ros2_iterprime.geometry.transforms.RigidTransform`.
"""
from __future__ import annotations

from typing import Any

from ..geometry.tf_buffer import TransformBuffer, TransformLookupError
from ..geometry.transforms import RigidTransform

__all__ = ["TargetFrameLookup"]

#: /tf queue of the plain-Python listener (tf2_ros's DynamicListenerQoS depth)
DYNAMIC_QUEUE = 100


def _tf2_ros():
    try:
        import tf2_ros
    except ImportError:
        return None
    return tf2_ros


def _tf_message_type():
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


class TargetFrameLookup:
    """A TF buffer and its /tf listener on ``node`` (see the module docstring for the backends).

    Args:
        node: the rclpy node whose executor spins the /tf and /tf_static subscriptions (None: no listener).
        buffer: an object with tf2_ros.Buffer's ``lookup_transform(target, source, time, timeout)`` or a
            :class:`TransformBuffer` (tests pass stand-ins); None creates one for the backend.
        cache_time_s: seconds of history kept.
        callback_group: for the fallback listener's subscriptions (reentrant: lookups wait on them).
    """

    MISSING = ("neither tf2_ros nor tf2_msgs is installed (tf2_ros comes with every ROS 2 install; the pip "
               "route builds tf2_msgs with scripts/build_interfaces.sh), so target_frame cannot be used")

    @staticmethod
    def importable() -> bool:
        return _tf2_ros() is not None or _tf_message_type() is not None

    def __init__(self, node: Any = None, buffer: Any = None, cache_time_s: float = 10.0, callback_group: Any = None):
        self.buffer = buffer
        self.node = node
        self._listener = None
        self._subs: list = []
        self._exceptions: tuple[type[BaseException], ...] = (TransformLookupError,)
        self.unavailable_reason = ""
        self.backend = "given" if buffer is not None else ""
        tf2_ros = _tf2_ros()
        if tf2_ros is not None:
            self._exceptions += (tf2_ros.TransformException,)
        if self.buffer is not None or node is None:
            if self.buffer is None:
                self.unavailable_reason = self.MISSING if not self.importable() else "no node to listen on"
            return
        if tf2_ros is not None:
            from rclpy.duration import Duration

            self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=float(cache_time_s)))
            self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
            self.backend = "tf2_ros"
            return
        msg_type = _tf_message_type()
        if msg_type is None:
            self.unavailable_reason = self.MISSING
            return
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.buffer = TransformBuffer(cache_time_s)
        # tf2_ros's depth: a deeper queue made a busy node work through a backlog of old /tf (measured:
        # seconds behind at 100 Hz), while an overwritten old sample costs nothing when the newer ones arrive
        dynamic = QoSProfile(depth=DYNAMIC_QUEUE, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        static = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        buf = self.buffer
        self._subs = [
            node.create_subscription(msg_type, "/tf", lambda m: buf.add_message(m, static=False), dynamic,
                                     callback_group=callback_group),
            node.create_subscription(msg_type, "/tf_static", lambda m: buf.add_message(m, static=True), static,
                                     callback_group=callback_group),
        ]
        self.backend = "python"

    @property
    def available(self) -> bool:
        return self.buffer is not None

    def lookup(self, target_frame: str, header: Any, timeout_s: float) -> tuple[RigidTransform | None, str]:
        """(transform taking points from ``header.frame_id`` to ``target_frame``, note) or (None, reason)."""
        if not self.available:
            return None, self.unavailable_reason or "no TF buffer"
        source = str(getattr(header, "frame_id", "") or "")
        if not source:
            return None, "the image has no frame_id"
        stamp = header.stamp
        if int(stamp.sec) < 0 or not 0 <= int(stamp.nanosec) < 1_000_000_000:
            return None, f"the image stamp {int(stamp.sec)}.{int(stamp.nanosec)} is not a valid time"
        stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        note = "" if stamp_ns > 0 else " (unstamped image: latest transform used)"
        try:
            if isinstance(self.buffer, TransformBuffer):
                return self.buffer.lookup(target_frame, source, stamp_ns, float(timeout_s)), note
            from rclpy.duration import Duration
            from rclpy.time import Time

            when = Time(seconds=int(stamp.sec), nanoseconds=int(stamp.nanosec))
            msg = self.buffer.lookup_transform(target_frame, source, when, Duration(seconds=float(timeout_s)))
        except self._exceptions + (LookupError, TimeoutError) as exc:
            return None, (f"no transform {source} -> {target_frame} at the image stamp "
                          f"{int(stamp.sec)}.{int(stamp.nanosec):09d} within {timeout_s:g} s: "
                          f"{type(exc).__name__}: {str(exc)[:200]}")
        try:
            return RigidTransform.from_msg(msg), note
        except ValueError as exc:
            return None, f"invalid transform {source} -> {target_frame}: {exc}"

    def close(self) -> None:
        """Stop listening (deactivate/cleanup); lookups then fail with a reason."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.unregister()
            except Exception:  # pragma: no cover - older tf2_ros
                pass
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                self.node.destroy_subscription(sub)
            except Exception:  # pragma: no cover - node already destroyed
                pass
        self.buffer = None
        self.unavailable_reason = "TF listener stopped (node not active)"
