"""Input side of the node: decoded frames, depth/CameraInfo matching, and expression ordering.

No rclpy import: messages are duck-typed (``header.stamp.sec``/``nanosec``), so the rules here are unit
tested without DDS (tests/ros/test_ros_worker.py).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry.camera import PinholeIntrinsics

__all__ = ["DepthFrame", "DepthSync", "ExpressionInbox", "Frame", "stamp_ns"]


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
    header: Any
    depth_m: np.ndarray  # (H, W) float32 metres, NaN = invalid
    stamp_ns: int


class DepthSync:
    """The last few depth images and CameraInfos; matches them to a colour frame by stamp."""

    def __init__(self, keep: int = 15):
        self._depths: collections.deque[DepthFrame] = collections.deque(maxlen=keep)
        self._infos: collections.deque[tuple[int, PinholeIntrinsics]] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def add_depth(self, depth: DepthFrame) -> None:
        with self._lock:
            self._depths.append(depth)

    def add_info(self, stamp: int, intrinsics: PinholeIntrinsics) -> None:
        with self._lock:
            self._infos.append((stamp, intrinsics))

    def clear(self) -> None:
        with self._lock:
            self._depths.clear()
            self._infos.clear()

    def match(self, frame_stamp_ns: int, slop_s: float) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        """The depth image closest in time within ``slop_s`` and the CameraInfo closest to it (or Nones)."""
        with self._lock:
            depths, infos = list(self._depths), list(self._infos)
        best = min(depths, key=lambda d: abs(d.stamp_ns - frame_stamp_ns), default=None)
        if best is None or abs(best.stamp_ns - frame_stamp_ns) > int(slop_s * 1e9):
            return None, None
        info = min(infos, key=lambda i: abs(i[0] - best.stamp_ns), default=None)
        return best, (info[1] if info is not None else None)


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
