"""A TF tree in plain Python: transforms between frames at a given time, as tf2's ``BufferCore`` gives them.

Used where ``tf2_ros`` is not installed (the pip route: it is not on PyPI) and by the offline bag replay
(``ros2_iterprime bag``), which reads /tf and /tf_static from a recording. The ROS node feeds it from
its /tf and /tf_static subscriptions (``ros.tf``); nothing here imports ROS: messages are duck-typed
(``transforms`` of geometry_msgs/TransformStamped: ``header.frame_id`` = parent, ``child_frame_id``,
``header.stamp.sec/nanosec``, ``transform.translation/rotation``).

Rules (tf2's, so the node gives the same answers with either backend):

- Each frame has one parent (the one its newest transform names); a lookup walks both frames up to
  their common ancestor and composes the links, each **evaluated at the requested stamp**: translation
  interpolated linearly and rotation by slerp between the two stored transforms around the stamp.
- A stamp outside a dynamic link's stored interval is an error (no extrapolation), except that an exact
  end point is used as is. Static links (/tf_static) hold at every time.
- One deviation from tf2, on purpose: a stamp between two samples further apart than 4 of the link's
  sample periods (at least 50 ms; the period is the smallest of its last 64 in-order spacings, which
  lost samples cannot widen) is an error, not an interpolation. Such a gap means /tf messages were
  lost (a starved listener whose queue overflowed): interpolating across it was measured 8-12 mm off for
  a base at 0.3 m/s, and a grasp planner must get "no transform" rather than a guess.
- Stamp 0 means "the latest time every link in the chain has" (tf2's ``TimePointZero``).
- Each dynamic link keeps ``cache_time_s`` of history, counted back from its own newest stamp (tf2's
  ``cache_time``, default 10 s there; here set by the caller: the node keeps enough for its slowest
  model run, see docs/ros.md). At most :data:`MAX_LINK_SAMPLES` samples per link and
  :data:`MAX_FRAMES` frames are kept (a flood cannot exhaust memory).
- A lookup may wait (``timeout_s``) for data that has not arrived yet; it never raises anything but
  :class:`TransformLookupError` with a reason a person can act on.
"""
from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Any

import numpy as np

from ..errors import InvalidInputError, IterPrimeError
from .transforms import RigidTransform, canonical_quaternion

__all__ = ["MAX_FRAMES", "MAX_LINK_SAMPLES", "TransformBuffer", "TransformLookupError", "slerp"]

MAX_LINK_SAMPLES = 100_000
MAX_FRAMES = 10_000
_MAX_DEPTH = 1000  # longest chain walked (a loop in the tree is reported, never followed forever)
#: a gap wider than GAP_FACTOR sample periods (and MIN_GAP_NS) is not interpolated: samples were lost
GAP_FACTOR = 4.0
MIN_GAP_NS = 50_000_000
#: in-order sample spacings the publisher's period is estimated from (their minimum)
SPACING_WINDOW = 64


class TransformLookupError(IterPrimeError, LookupError):
    """No transform between the two frames at that time (unknown frame, not connected, out of the cache)."""


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w), shortest path; t in [0, 1]."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly the same rotation: linear, then normalise
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(min(1.0, dot))
    s = np.sin(theta)
    return (np.sin((1.0 - t) * theta) * q0 + np.sin(t * theta) * q1) / s


def _clean(frame: str) -> str:
    return str(frame or "").strip().lstrip("/")


def _fmt(stamp_ns: int) -> str:
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


class _Link:
    """The history of one parent -> child link (sorted by stamp)."""

    __slots__ = ("parent", "static", "stamps", "transforms", "spacing_ns", "_spacings")

    def __init__(self, parent: str, static: bool):
        self.parent = parent
        self.static = static
        self.stamps: list[int] = []
        self.transforms: list[RigidTransform] = []
        # the publisher's sample spacing: the smallest of the last SPACING_WINDOW in-order spacings. Lost
        # samples only ever widen a spacing, so a mean (as before) learnt the very gaps it must detect: after
        # a 1 s loss it allowed 0.4 s gaps, measured 50 mm off for a base at 0.3 m/s
        self.spacing_ns = 0.0
        self._spacings: collections.deque[int] = collections.deque(maxlen=SPACING_WINDOW)

    def max_gap_ns(self) -> float:
        """Widest gap between two samples that is interpolated: a few sample periods (lost /tf beyond that)."""
        return max(GAP_FACTOR * self.spacing_ns, MIN_GAP_NS)

    def insert(self, stamp: int, tf: RigidTransform, cache_ns: int) -> None:
        if self.static:
            self.stamps, self.transforms = [stamp], [tf]
            return
        i = bisect.bisect_left(self.stamps, stamp)
        if i == len(self.stamps) and i > 0:  # in order: learn the publisher's rate
            dt = stamp - self.stamps[-1]
            if dt > 0:
                self._spacings.append(dt)
                self.spacing_ns = float(min(self._spacings))
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.transforms[i] = tf  # same stamp again: the newer message wins
        else:
            self.stamps.insert(i, stamp)
            self.transforms.insert(i, tf)
        newest = self.stamps[-1]
        cut = bisect.bisect_left(self.stamps, newest - cache_ns)
        cut = max(cut, len(self.stamps) - MAX_LINK_SAMPLES)
        if cut > 0:
            del self.stamps[:cut]
            del self.transforms[:cut]

    def at(self, stamp: int, child: str) -> RigidTransform:
        if self.static:
            return self.transforms[0]
        s = self.stamps
        if stamp == 0:
            return self.transforms[-1]
        if stamp < s[0] or stamp > s[-1]:
            side = "past" if stamp < s[0] else "future"
            raise TransformLookupError(
                f"{self.parent} -> {child} at {_fmt(stamp)} would need extrapolation into the {side}: "
                f"the buffer holds {_fmt(s[0])} .. {_fmt(s[-1])}")
        i = bisect.bisect_left(s, stamp)
        if s[i] == stamp:
            return self.transforms[i]
        t0, t1 = s[i - 1], s[i]
        if t1 - t0 > self.max_gap_ns():
            raise TransformLookupError(
                f"{self.parent} -> {child} at {_fmt(stamp)}: the samples around it are {(t1 - t0) / 1e9:.3f} s apart "
                f"(this link is published every {self.spacing_ns / 1e9:.3f} s: /tf messages were lost), so "
                f"interpolating would be a guess")
        a, b = self.transforms[i - 1], self.transforms[i]
        w = (stamp - t0) / (t1 - t0)
        return RigidTransform((1.0 - w) * a.translation + w * b.translation,
                              canonical_quaternion(slerp(a.rotation, b.rotation, w)))


class TransformBuffer:
    """A thread-safe TF buffer (see the module docstring).

    Args:
        cache_time_s: seconds of history kept per dynamic link (> 0).
    """

    def __init__(self, cache_time_s: float = 10.0):
        if not cache_time_s > 0:
            raise ValueError("cache_time_s must be > 0")
        self.cache_time_s = float(cache_time_s)
        self._cache_ns = int(self.cache_time_s * 1e9)
        self._links: dict[str, _Link] = {}
        self._cond = threading.Condition()
        self.rejected = 0  # transforms refused (malformed, non-finite, loops, over the frame limit)

    # ------------------------------------------------------------------ input
    def set_transform(self, parent: str, child: str, stamp_ns: int, tf: RigidTransform, static: bool = False) -> bool:
        """Store one transform (p_parent = tf(p_child)); False when refused (empty names, a self-link)."""
        parent, child = _clean(parent), _clean(child)
        if not parent or not child or parent == child or stamp_ns < 0:
            self.rejected += 1
            return False
        with self._cond:
            link = self._links.get(child)
            if link is None or link.parent != parent or link.static != static:
                if link is None and len(self._links) >= MAX_FRAMES:
                    self.rejected += 1
                    return False
                link = _Link(parent, static)  # a re-parented frame starts a new history
                self._links[child] = link
            link.insert(int(stamp_ns), tf, self._cache_ns)
            self._cond.notify_all()
        return True

    def add_message(self, msg: Any, static: bool = False) -> int:
        """Every transform of a tf2_msgs/TFMessage (duck-typed); returns how many were stored."""
        n = 0
        for ts in getattr(msg, "transforms", ()) or ():
            try:
                stamp = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
                tf = RigidTransform.from_msg(ts)
            except (InvalidInputError, AttributeError, TypeError, ValueError, OverflowError):
                self.rejected += 1
                continue
            n += self.set_transform(ts.header.frame_id, ts.child_frame_id, stamp, tf, static)
        return n

    def clear(self) -> None:
        with self._cond:
            self._links.clear()

    # ------------------------------------------------------------------ queries
    def frames(self) -> set[str]:
        with self._cond:
            return set(self._links) | {lk.parent for lk in self._links.values()}

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root] (lock held)."""
        chain, seen = [frame], {frame}
        while frame in self._links:
            frame = self._links[frame].parent
            if frame in seen or len(chain) > _MAX_DEPTH:
                raise TransformLookupError(f"the TF tree has a loop through {frame!r}")
            chain.append(frame)
            seen.add(frame)
        return chain

    def _latest_common(self, frames: list[str]) -> int:
        """tf2's TimePointZero: the newest stamp every dynamic link of the chain has (0 if all static)."""
        newest = [self._links[f].stamps[-1] for f in frames if f in self._links and not self._links[f].static]
        return min(newest) if newest else 0

    def _lookup_locked(self, target: str, source: str, stamp_ns: int) -> RigidTransform:
        if target == source:
            return RigidTransform.identity()
        known = self._links.keys() | {lk.parent for lk in self._links.values()}
        for name, f in (("target", target), ("source", source)):
            if f not in known:
                raise TransformLookupError(f"{name} frame {f!r} does not exist (no transform received for it)")
        up_s, up_t = self._chain(source), self._chain(target)
        common = next((f for f in up_s if f in set(up_t)), None)
        if common is None:
            raise TransformLookupError(f"{source!r} and {target!r} are not connected (trees rooted at "
                                       f"{up_s[-1]!r} and {up_t[-1]!r})")
        path_s = up_s[: up_s.index(common)]  # links from source up to the common ancestor
        path_t = up_t[: up_t.index(common)]
        stamp = stamp_ns if stamp_ns > 0 else self._latest_common(path_s + path_t)
        common_from_source = RigidTransform.identity()
        for f in path_s:  # p_parent = link(p_f), composed bottom-up
            common_from_source = self._links[f].at(stamp, f) @ common_from_source
        common_from_target = RigidTransform.identity()
        for f in path_t:
            common_from_target = self._links[f].at(stamp, f) @ common_from_target
        return common_from_target.inverse() @ common_from_source

    def lookup(self, target: str, source: str, stamp_ns: int = 0, timeout_s: float = 0.0) -> RigidTransform:
        """The transform taking points in ``source`` to ``target`` at ``stamp_ns`` (0 = latest common).

        Waits up to ``timeout_s`` for the data to arrive. Raises :class:`TransformLookupError`.
        """
        target, source = _clean(target), _clean(source)
        if not target or not source:
            raise TransformLookupError("empty frame name")
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        with self._cond:
            while True:
                try:
                    return self._lookup_locked(target, source, int(stamp_ns))
                except TransformLookupError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    self._cond.wait(min(left, 0.05))

    def can_transform(self, target: str, source: str, stamp_ns: int = 0) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TransformLookupError:
            return False
        return True
