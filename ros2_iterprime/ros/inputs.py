"""Input side of the node: decoded frames, depth/CameraInfo matching, and expression ordering.

No rclpy import: messages are duck-typed (``header.stamp.sec``/``nanosec``), so the rules here are unit
tested without DDS (tests/ros/test_ros_worker.py).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..geometry.camera import PinholeIntrinsics

__all__ = ["DepthClaim", "DepthFrame", "DepthSource", "DepthSync", "ExpressionInbox", "FixedDepth", "Frame", "stamp_ns"]


def stamp_ns(header: Any) -> int:
    """A std_msgs/Header's stamp in integer nanoseconds (0 for an unset stamp)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class Frame:
    """One decoded colour frame.

    Attributes:
        header: the image's std_msgs/Header (copied onto every output).
        rgb: (H, W, 3) uint8.
        stamp_ns: header stamp in ns (0 = unset).
        seq: arrival counter of this node (1, 2, ...); -1 for a frame given in a service request.
        received_ns: the node's clock at arrival (ROS time), used for the age of unstamped frames.
    """

    header: Any
    rgb: np.ndarray
    stamp_ns: int
    seq: int
    received_ns: int = 0

    def age_s(self, now_ns: int) -> float:
        """Seconds since the frame's stamp (its arrival when unstamped); never negative (clock skew)."""
        ref = self.stamp_ns if self.stamp_ns > 0 else self.received_ns
        return max(0.0, (now_ns - ref) / 1e9)


@dataclass
class DepthFrame:
    """One decoded depth image: (H, W) float32 metres (NaN = invalid), its header and stamp.

    received_ns: the node's clock at arrival (pairs unstamped depth with unstamped colour frames).
    """

    header: Any
    depth_m: np.ndarray
    stamp_ns: int
    received_ns: int = 0


#: most depth candidates one claim keeps (the closest ones in time win)
MAX_CLAIM_CANDIDATES = 8


class DepthSource(Protocol):
    """Where the 3-D step gets its depth: ``get()`` -> (depth, intrinsics), each possibly None."""

    def get(self) -> tuple[DepthFrame | None, PinholeIntrinsics | None]: ...

    def release(self) -> None: ...


class FixedDepth:
    """A depth source that is already known (a ``~/segment`` request carrying its own depth)."""

    def __init__(self, depth: DepthFrame | None, intrinsics: PinholeIntrinsics | None):
        self.depth, self.intrinsics = depth, intrinsics

    def get(self) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        return self.depth, self.intrinsics

    def release(self) -> None:
        pass


class DepthClaim:
    """The depth images and CameraInfos that may belong to one colour frame, collected while the model runs.

    Opened when a job starts (:meth:`DepthSync.claim`): it takes the buffered candidates within
    ``slop`` of the frame's time and, until released, every depth image and CameraInfo that arrives
    within that window, so the right depth is still there after a model run of seconds (the shared
    buffer keeps only the last few). :meth:`get` is called AFTER segmentation: it waits (at most
    ``wait_s``) for the depth with exactly the frame's stamp, unless a later one has already arrived,
    then returns the closest candidate within ``slop`` (the newest on ties) and the CameraInfo closest to it.

    Time is the header stamp; for an unstamped colour frame (stamp 0) it is the arrival time of both.
    """

    def __init__(self, sync: "DepthSync", stamp_ns: int, received_ns: int, slop_s: float, wait_s: float):
        self._sync = sync
        self.by_arrival = stamp_ns <= 0
        self.t = received_ns if self.by_arrival else stamp_ns
        self.slop_ns = int(max(0.0, float(slop_s)) * 1e9)
        self.wait_s = max(0.0, float(wait_s))
        self.depths: list[DepthFrame] = []
        self.infos: list[tuple[int, PinholeIntrinsics]] = []
        #: times of the newest and of the closest depth received by the end of :meth:`get` (None: none yet)
        self.newest_seen: int | None = None
        self.closest_seen: int | None = None

    def time_of(self, d: DepthFrame) -> int:
        return d.received_ns if self.by_arrival else d.stamp_ns

    def offer_depth(self, d: DepthFrame) -> None:
        """(lock held) keep ``d`` when it is within the window."""
        if abs(self.time_of(d) - self.t) > self.slop_ns:
            return
        self.depths.append(d)
        if len(self.depths) > MAX_CLAIM_CANDIDATES:  # drop the farthest (the oldest on ties)
            worst = max(self.depths, key=lambda x: (abs(self.time_of(x) - self.t), -self.time_of(x)))
            self.depths.remove(worst)

    def offer_info(self, t: int, intr: PinholeIntrinsics) -> None:
        if abs(t - self.t) <= self.slop_ns:
            self.infos.append((t, intr))
            if len(self.infos) > MAX_CLAIM_CANDIDATES:
                self.infos.pop(0)

    def _settled(self) -> bool:
        """The exact depth is here, or a later one is (stamps only grow: nothing closer can come)."""
        return any(self.time_of(d) >= self.t for d in self.depths)

    def get(self) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        """(depth, intrinsics) for the frame after a bounded wait, or (None, None) when nothing is in the window."""
        return self._sync._resolve(self)

    def release(self) -> None:
        self._sync._release(self)

    def missing_reason(self) -> str:
        """Why :meth:`get` found no depth: its own had not arrived yet (a late depth stream, a starved
        node), or the stream has no image within the slop of this frame (e.g. 15 Hz depth, 30 Hz colour)."""
        slop = f"no depth image within sync_slop ({self.slop_ns / 1e9:g} s) of the colour image"
        what = "arrival" if self.by_arrival else "stamp"
        if self.newest_seen is None:
            return f"{slop}: no depth image received yet"
        dt = (self.newest_seen - self.t) / 1e9
        if dt < 0:
            return (f"{slop}: none with a {what} at or after the image's had arrived {self.wait_s:g} s after the "
                    f"model finished (the newest was {-dt:.3f} s older: the depth stream is late)")
        closest = (self.closest_seen - self.t) / 1e9
        return (f"{slop}: none that close was received (the closest is {closest:+.3f} s from the image; "
                f"a 15 Hz depth stream, or a depth image lost on the way)")


class DepthSync:
    """The last few depth images and CameraInfos, and the open :class:`DepthClaim` of running jobs."""

    def __init__(self, keep: int = 15):
        self._depths: collections.deque[DepthFrame] = collections.deque(maxlen=keep)
        self._infos: collections.deque[tuple[int, int, PinholeIntrinsics]] = collections.deque(maxlen=keep)
        self._claims: list[DepthClaim] = []
        self._cond = threading.Condition()

    def add_depth(self, depth: DepthFrame) -> None:
        with self._cond:
            self._depths.append(depth)
            for c in self._claims:
                c.offer_depth(depth)
            self._cond.notify_all()

    def add_info(self, stamp: int, intrinsics: PinholeIntrinsics, received_ns: int = 0) -> None:
        with self._cond:
            self._infos.append((stamp, received_ns, intrinsics))
            for c in self._claims:
                c.offer_info(received_ns if c.by_arrival else stamp, intrinsics)

    def clear(self) -> None:
        with self._cond:
            self._depths.clear()
            self._infos.clear()
            self._cond.notify_all()

    def claim(self, stamp_ns: int, received_ns: int, slop_s: float, wait_s: float | None = None) -> DepthClaim:
        """Open a claim for the colour frame (stamp, arrival); ``wait_s`` defaults to ``slop_s``."""
        c = DepthClaim(self, stamp_ns, received_ns, slop_s, slop_s if wait_s is None else wait_s)
        with self._cond:
            for d in self._depths:
                c.offer_depth(d)
            for stamp, received, intr in self._infos:
                c.offer_info(received if c.by_arrival else stamp, intr)
            self._claims.append(c)
        return c

    def _release(self, c: DepthClaim) -> None:
        with self._cond:
            if c in self._claims:
                self._claims.remove(c)

    def _resolve(self, c: DepthClaim) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        deadline = time.monotonic() + c.wait_s
        with self._cond:
            while not c._settled():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            best = min(c.depths, key=lambda d: (abs(c.time_of(d) - c.t), -c.time_of(d)), default=None)
            seen = [c.time_of(d) for d in (*self._depths, *c.depths)]
            c.newest_seen = max(seen, default=None)
            c.closest_seen = min(seen, key=lambda t: (abs(t - c.t), -t), default=None)
            if best is None:
                return None, None
            t_best = c.time_of(best)
            infos = c.infos or [((r if c.by_arrival else t), i) for t, r, i in self._infos]
        info = min(infos, key=lambda i: (abs(i[0] - t_best), -i[0]), default=None)
        return best, (info[1] if info is not None else None)

    def match(self, frame_stamp_ns: int, slop_s: float, received_ns: int = 0,
              wait_s: float = 0.0) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        """Claim, resolve and release at once: the depth closest in time within ``slop_s`` (newest on ties)."""
        c = self.claim(frame_stamp_ns, received_ns, slop_s, wait_s)
        try:
            return c.get()
        finally:
            c.release()


class ExpressionInbox:
    """Decides whether a received expression sample is new, and newer than the active one.

    The newest expression must always win, whatever the transport delivers first: with a latched
    (transient-local) publisher and two readers, a volatile reader's backlog can arrive after the
    transient-local reader's newest sample. A sample is accepted only when

    - it was not seen before (same publisher GID and sequence number: one sample through two readers);
    - its sequence number is above the highest accepted from the same publisher (publishers number their
      samples 1, 2, 3, ...: a smaller number is an older sample delivered late);
    - when it comes through the transient-local reader (``latched=True``: it may be a publisher's old
      "latched" sample, delivered when the reader matched), its source timestamp is not older than the
      newest accepted sample of any publisher. Live samples (the volatile reader) are never compared
      across publishers, so a publisher whose clock runs behind (another machine) is never ignored;
      the latched comparison assumes synchronised clocks, as TF does.

    - without sequence numbers (rmw_fastrtps leaves them unset), a sample with the same publisher and
      source timestamp as one already accepted is the same sample.
    - without a publisher GID (rclpy 7, Jazzy: its MessageInfo has none, :mod:`.distro`), sequence numbers
      cannot be tied to a publisher. Each reader delivers a publisher's samples in order, so the late
      samples are the volatile reader's backlog behind what the transient-local reader delivered: a live
      sample whose source timestamp is older than the newest accepted latched sample is late. (This
      compares clocks between a latched publisher and the others, which Kilted's per-publisher rule avoids.)

    Samples without any of the information are accepted in arrival order.
    """

    def __init__(self, remember: int = 256):
        self._max_seq: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._seen: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self._remember = remember
        self._newest_source_ns = -1
        self._newest_latched_ns = -1  # newest accepted sample of the transient-local reader (no-GID rule)
        self._lock = threading.Lock()

    @staticmethod
    def _key(info: Any) -> tuple[str | None, int | None, int | None]:
        def get(name):
            try:
                return info.get(name) if hasattr(info, "get") else info[name]
            except Exception:
                return None

        gid, seq, src = get("publisher_gid"), get("publication_sequence_number"), get("source_timestamp")
        gid_key = None
        if gid is not None:
            data = gid.get("data", gid) if isinstance(gid, dict) else getattr(gid, "data", gid)
            try:
                gid_key = bytes(bytearray(int(b) & 0xFF for b in data)).hex()
            except Exception:
                gid_key = repr(data)
        seq = int(seq) if isinstance(seq, int) and seq > 0 else None
        src = int(src) if isinstance(src, int) and src > 0 else None
        return gid_key, seq, src

    def accept(self, info: Any, latched: bool = False) -> bool:
        """True when the sample described by ``info`` (rclpy MessageInfo) should become the active one.

        ``latched``: delivered by the transient-local reader (see the class docstring).
        """
        gid, seq, src = self._key(info) if info is not None else (None, None, None)
        with self._lock:
            if gid is not None and seq is not None:
                if seq <= self._max_seq.get(gid, 0):
                    return False  # seen already (second reader) or an older sample delivered late
            if latched and src is not None and src < self._newest_source_ns:
                return False  # a latched sample published before the active expression
            if gid is None and not latched and src is not None and src < self._newest_latched_ns:
                return False  # rclpy 7 (no GID): the volatile reader's backlog behind a latched sample
            if src is not None and (gid, src) in self._seen:
                return False  # the same sample through the second reader
            if src is not None:
                self._seen[(gid, src)] = None
                while len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
            if gid is not None and seq is not None:
                self._max_seq[gid] = seq
                self._max_seq.move_to_end(gid)
                while len(self._max_seq) > self._remember:
                    self._max_seq.popitem(last=False)
            if src is not None:
                self._newest_source_ns = max(self._newest_source_ns, src)
                if latched:
                    self._newest_latched_ns = max(self._newest_latched_ns, src)
            return True
