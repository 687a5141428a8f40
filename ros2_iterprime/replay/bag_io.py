"""rosbag2 reading and writing with `rosbags` (no ROS install): message types, decoders, the output kit.

- :func:`open_typestore`: the standard ROS 2 message types plus ros2_iterprime_msgs' (from their .msg
  files, found next to this checkout or under ``$AMENT_PREFIX_PATH/share``).
- :data:`DECODERS`: message type -> function(msg) -> (numpy image, its encoding). sensor_msgs/msg/Image
  (raw) and sensor_msgs/msg/CompressedImage (image_transport's ``compressed`` JPEG / PNG and
  ``compressedDepth``, told apart by the ``format`` string, decoded by :mod:`..messages.compressed` as
  the node decodes them); any other type is refused with :class:`UnsupportedMessageError` naming the
  topic and type, a malformed payload with the decoder's reason.
- :func:`rosbags_kit`: the :class:`~ros2_iterprime.messages.outputs.MessageKit` of rosbags' classes, so the
  outputs are built by the same code as the node's (``messages.outputs``).
- :class:`AtomicBagWriter`: writes ``OUT`` under a temporary name and renames it at the end, so a
  crashed or interrupted replay never leaves a partial bag that looks complete.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IterPrimeError
from ..messages.compressed import CompressedImageError, decode_compressed, decode_compressed_depth
from ..messages.image import ImageConversionError, msg_to_numpy, to_rgb8
from ..messages.outputs import MessageKit

__all__ = ["DECODERS", "AtomicBagWriter", "BagError", "UnsupportedMessageError", "decode_image", "open_typestore",
           "rosbags_kit", "stamp_ns"]

#: the interface package whose types the outputs use, and its message files
CUSTOM_PACKAGE = "ros2_iterprime_msgs"
CUSTOM_MESSAGES = ("SegmentationResult",)


class BagError(IterPrimeError, ValueError):
    """A bag that cannot be replayed (missing, unreadable, a topic not in it, an output that exists)."""


class UnsupportedMessageError(BagError):
    """A message type or image encoding the replay cannot decode."""


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _custom_msg_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[2] / CUSTOM_PACKAGE / "msg"  # a checkout / editable install
    dirs = [here]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        dirs.append(Path(prefix) / "share" / CUSTOM_PACKAGE / "msg")
    return dirs


def open_typestore(need_custom: bool = True):
    """(typestore, note): ROS 2 Kilted's standard types + ros2_iterprime_msgs/msg/* from their .msg files.

    ``note`` says why the custom types are missing ('' when registered).
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    if not need_custom:
        return ts, ""
    for d in _custom_msg_dirs():
        files = [d / f"{name}.msg" for name in CUSTOM_MESSAGES]
        if all(f.is_file() for f in files):
            types = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f"{CUSTOM_PACKAGE}/msg/{f.stem}"))
            ts.register(types)
            return ts, ""
    return ts, (f"{CUSTOM_PACKAGE}/msg/SegmentationResult.msg not found (looked in "
                f"{', '.join(str(d) for d in _custom_msg_dirs())}): ~/result is not written")


# ---------------------------------------------------------------------------------- decoding
def decode_raw_image(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/msg/Image -> (numpy (H, W[, C]) in the message's encoding, that encoding); step and
    endianness honoured."""
    return msg_to_numpy(msg), str(msg.encoding)


def decode_compressed_image(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/msg/CompressedImage -> (numpy, encoding), as the node's compressed subscriptions decode it.

    A ``format`` naming compressedDepth (``"16UC1; compressedDepth png"``) gives '16UC1' millimetres or '32FC1'
    metres; any other (``"rgb8; jpeg compressed bgr8"``, ``"mono8; png compressed "``) gives 'rgb8' / 'mono8' /
    'mono16'. The declared size is checked before decoding (decompression bombs are refused).
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        decoded = decode_compressed_depth(msg.data, fmt)
    else:
        decoded = decode_compressed(msg.data, fmt)
    return decoded.array, decoded.encoding


#: input message type -> decoder(msg) -> (numpy array, its sensor_msgs encoding)
DECODERS: dict[str, Callable[[Any], tuple[np.ndarray, str]]] = {
    "sensor_msgs/msg/Image": decode_raw_image,
    "sensor_msgs/msg/CompressedImage": decode_compressed_image,
}


def decode_image(msg: Any, msgtype: str, topic: str) -> tuple[np.ndarray, str]:
    """(image of ``msg`` as numpy, its encoding); :class:`UnsupportedMessageError` names the topic and what is
    unsupported or malformed."""
    decoder = DECODERS.get(msgtype)
    if decoder is None:
        raise UnsupportedMessageError(f"{topic}: message type {msgtype} is not supported (supported: "
                                      f"{', '.join(sorted(DECODERS))})")
    try:
        return decoder(msg)
    except (ImageConversionError, CompressedImageError) as exc:
        raise UnsupportedMessageError(f"{topic}: {exc}") from None


def to_rgb(msg: Any, msgtype: str, topic: str) -> np.ndarray:
    array, encoding = decode_image(msg, msgtype, topic)
    try:
        return to_rgb8(array, encoding)
    except ImageConversionError as exc:
        raise UnsupportedMessageError(f"{topic}: {exc}") from None


# ---------------------------------------------------------------------------------- building
class _RosbagsType:
    """A rosbags message class called like rclpy's: ``Point(x=1.0)`` or ``Marker()``; defaults filled."""

    def __init__(self, typestore, name: str):
        self._ts, self._name, self._cls = typestore, name, typestore.types[name]

    def __getattr__(self, item):  # constants: Marker.ADD, ...
        return getattr(self._cls, item)

    def __call__(self, **fields):
        msg = default_message(self._ts, self._name)
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg


_PRIMITIVE_DEFAULTS = {"bool": False, "string": "", "wstring": ""}
_NUMPY = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
          "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
          "uint64": np.uint64, "float32": np.float32, "float64": np.float64}


def default_message(typestore, name: str):
    """An instance of rosbags' ``name`` with every field at its ROS default (0, '', empty, nested defaults)."""
    from rosbags.typesys.store import Nodetype

    cls = typestore.types[name]
    _, fields = typestore.fielddefs[name]
    values = {}
    for fname, (nodetype, spec) in fields:
        if nodetype == Nodetype.BASE:
            base = spec[0]
            values[fname] = _PRIMITIVE_DEFAULTS.get(base, 0.0 if base.startswith("float") else 0)
        elif nodetype == Nodetype.NAME:
            values[fname] = default_message(typestore, spec)
        else:  # ARRAY / SEQUENCE
            (sub_type, sub_spec), count = spec[0], spec[1] if nodetype == Nodetype.ARRAY else 0
            if sub_type == Nodetype.BASE and sub_spec[0] in _NUMPY:
                values[fname] = np.zeros(count, _NUMPY[sub_spec[0]])
            elif sub_type == Nodetype.BASE:
                values[fname] = [""] * count
            else:
                values[fname] = [default_message(typestore, sub_spec) for _ in range(count)]
    return cls(**values)


def coerce(typestore, name: str, msg) -> Any:
    """Make ``msg`` serialisable by rosbags: primitive arrays as numpy of the field's dtype, recursively."""
    from rosbags.typesys.store import Nodetype

    _, fields = typestore.fielddefs[name]
    for fname, (nodetype, spec) in fields:
        v = getattr(msg, fname)
        if nodetype == Nodetype.NAME:
            coerce(typestore, spec, v)
        elif nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            sub_type, sub_spec = spec[0]
            if sub_type == Nodetype.BASE and sub_spec[0] in _NUMPY:
                dtype = _NUMPY[sub_spec[0]]
                if isinstance(v, (bytes, bytearray, memoryview)) or hasattr(v, "tobytes") and not isinstance(v, np.ndarray):
                    arr = np.frombuffer(bytes(v), np.uint8).view(dtype) if dtype == np.uint8 else np.asarray(v, dtype)
                else:
                    arr = np.asarray(v, dtype)
                setattr(msg, fname, arr)
            elif sub_type == Nodetype.NAME:
                for item in v:
                    coerce(typestore, sub_spec, item)
    return msg


def rosbags_kit(typestore, with_result: bool) -> MessageKit:
    t = lambda n: _RosbagsType(typestore, n)  # noqa: E731
    return MessageKit(
        Image=t("sensor_msgs/msg/Image"), RegionOfInterest=t("sensor_msgs/msg/RegionOfInterest"),
        Point=t("geometry_msgs/msg/Point"), PointStamped=t("geometry_msgs/msg/PointStamped"),
        Pose=t("geometry_msgs/msg/Pose"), PoseStamped=t("geometry_msgs/msg/PoseStamped"),
        Quaternion=t("geometry_msgs/msg/Quaternion"), Vector3=t("geometry_msgs/msg/Vector3"),
        ColorRGBA=t("std_msgs/msg/ColorRGBA"), String=t("std_msgs/msg/String"),
        Marker=t("visualization_msgs/msg/Marker"), MarkerArray=t("visualization_msgs/msg/MarkerArray"),
        PointCloud2=t("sensor_msgs/msg/PointCloud2"), PointField=t("sensor_msgs/msg/PointField"),
        SegmentationResult=t(f"{CUSTOM_PACKAGE}/msg/SegmentationResult") if with_result else None)


# ---------------------------------------------------------------------------------- writing
class AtomicBagWriter:
    """A rosbag2 written as ``OUT.partial`` and renamed to ``OUT`` only by :meth:`commit`.

    ``storage``: 'mcap' or 'sqlite3'. Refuses an existing ``OUT``; :meth:`abort` (or leaving the ``with``
    block on an exception) removes the partial bag.
    """

    def __init__(self, path: str | Path, typestore, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already: choose another -o or remove it")
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f"unknown storage {storage!r} (mcap or sqlite3)")
        self.ts = typestore
        self._writer = Writer(self.partial, version=9, storage_plugin=plugin)
        self._conns: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def __enter__(self) -> "AtomicBagWriter":
        self._writer.open()
        self._open = True
        return self

    def add_topic(self, topic: str, msgtype: str) -> None:
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        self._types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, msg, log_time_ns: int) -> None:
        msgtype = self._types[topic]
        data = self.ts.serialize_cdr(coerce(self.ts, msgtype, msg), msgtype)
        self._writer.write(self._conns[topic], int(log_time_ns), data)
        self.counts[topic] += 1

    def commit(self) -> Path:
        """Close the bag and give it its final name (the only moment ``OUT`` appears)."""
        self._writer.close()
        self._open = False
        if self.path.exists():
            raise BagError(f"{self.path} appeared while replaying: the result is left in {self.partial}")
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        if self._open:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - removing it anyway
                pass
            self._open = False
        shutil.rmtree(self.partial, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._open:
            self.abort()

