"""sensor_msgs/Image <-> numpy without cv_bridge.

The PyPI ``cv-bridge`` is a ROS 1 port (broken with NumPy 2, decodes 16UC1 wrongly) and the small
alternatives mishandle padded rows, so this module does the conversion itself. It honours ``step``
(row padding) and ``is_bigendian`` and validates every field before touching the buffer, so a
malformed message (wrong step, truncated data, 0x0, huge dimensions with little data, unknown
encoding) raises :class:`ImageConversionError` instead of crashing or allocating gigabytes.

Imports no ROS package (the node and the offline bag replay share it): messages are duck-typed on the
fields of sensor_msgs/Image (height, width, encoding, is_bigendian, step, data), and
:func:`numpy_to_msg` builds one of the class it is given (``ros2_iterprime.ros.image`` gives rclpy's).

Encoding names follow sensor_msgs/image_encodings.hpp.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ENCODINGS",
    "ImageConversionError",
    "depth_to_metres",
    "image_to_numpy",
    "msg_to_numpy",
    "numpy_to_fields",
    "numpy_to_msg",
    "to_rgb8",
]

#: Largest image accepted (pixels); 16k x 16k. Guards against absurd header values.
MAX_PIXELS = 16384 * 16384


@dataclass(frozen=True)
class _Enc:
    dtype: np.dtype
    channels: int


#: Supported encodings: name -> (element dtype, channels).
ENCODINGS: dict[str, _Enc] = {
    "rgb8": _Enc(np.dtype(np.uint8), 3),
    "bgr8": _Enc(np.dtype(np.uint8), 3),
    "rgba8": _Enc(np.dtype(np.uint8), 4),
    "bgra8": _Enc(np.dtype(np.uint8), 4),
    "mono8": _Enc(np.dtype(np.uint8), 1),
    "8UC1": _Enc(np.dtype(np.uint8), 1),
    "mono16": _Enc(np.dtype(np.uint16), 1),
    "16UC1": _Enc(np.dtype(np.uint16), 1),
    "32FC1": _Enc(np.dtype(np.float32), 1),
}

#: Depth encodings (REP 118): 16UC1 in millimetres, 32FC1 in metres.
DEPTH_ENCODINGS = ("16UC1", "32FC1")


class ImageConversionError(ValueError):
    """A sensor_msgs/Image that cannot be converted (the reason is in the message)."""


def _as_buffer(data: Any) -> memoryview:
    """A zero-copy byte view of msg.data (bytes, bytearray, array.array('B'), list, numpy)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).cast("B")
    if isinstance(data, array.array):
        return memoryview(data).cast("B")
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data).view(np.uint8).reshape(-1))
    if isinstance(data, (list, tuple)):
        return memoryview(bytes(data))
    raise ImageConversionError(f"unsupported data container {type(data).__name__}")


def image_to_numpy(
    height: int, width: int, encoding: str, is_bigendian: int | bool, step: int, data: Any
) -> np.ndarray:
    """Decode raw image fields to a C-contiguous array in native byte order.

    Returns (H, W) for one channel, (H, W, C) otherwise, with the encoding's dtype; the channel order
    is the encoding's (bgr8 stays BGR: use :func:`to_rgb8` for the model).
    """
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})"
        )
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise ImageConversionError(f"image too large ({width}x{height} > {MAX_PIXELS} pixels)")
    pixel_bytes = enc.dtype.itemsize * enc.channels
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} < width*bytes_per_pixel = {width}*{pixel_bytes} = {row_bytes} ({encoding})"
        )
    buf = _as_buffer(data)
    need = step * (height - 1) + row_bytes  # the last row's padding may be omitted
    if len(buf) < need:
        raise ImageConversionError(
            f"data too short: {len(buf)} bytes for {width}x{height} {encoding} with step {step} "
            f"(need {step * height})"
        )
    dtype = enc.dtype
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if is_bigendian else "<")
    shape = (height, width, enc.channels)
    strides = (step, pixel_bytes, dtype.itemsize)
    view = np.ndarray(shape=shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    out = np.ascontiguousarray(view.astype(enc.dtype, copy=True))  # copy: native order, own memory
    if enc.channels == 1:
        out = out[:, :, 0]
    return out


def msg_to_numpy(msg: Any) -> np.ndarray:
    """:func:`image_to_numpy` over a sensor_msgs/Image (or any object with its fields)."""
    try:
        fields = (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
    except AttributeError as exc:  # not an image at all
        raise ImageConversionError(f"not a sensor_msgs/Image: {exc}") from exc
    return image_to_numpy(*fields)


def _normalise_to_u8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.where(finite, (a - lo) * scale, 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb8(array_: np.ndarray, encoding: str) -> np.ndarray:
    """Decoded image (see :func:`image_to_numpy`) -> (H, W, 3) uint8 RGB for the model.

    Colour encodings are reordered / alpha dropped; mono8 is replicated; 16-bit and float
    single-channel images are min-max stretched to 8 bits (non-finite values -> 0).
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}")
    a = array_
    if encoding == "rgb8":
        rgb = a
    elif encoding == "bgr8":
        rgb = a[:, :, ::-1]
    elif encoding == "rgba8":
        rgb = a[:, :, :3]
    elif encoding == "bgra8":
        rgb = a[:, :, 2::-1]
    else:
        g = a if a.dtype == np.uint8 else _normalise_to_u8(a)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def numpy_to_fields(array_: np.ndarray, encoding: str) -> dict:
    """numpy -> the fields of a sensor_msgs/Image (little-endian, unpadded rows).

    ``data`` is an ``array.array('B')``, the type rclpy stores uint8[] in (assigning it is O(1)
    validation, unlike a list).
    """
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageConversionError(f"unsupported encoding {encoding!r}")
    a = np.asarray(array_)
    if enc.channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    want_ndim = 2 if enc.channels == 1 else 3
    if a.ndim != want_ndim or (want_ndim == 3 and a.shape[2] != enc.channels):
        raise ImageConversionError(f"array of shape {a.shape} does not match encoding {encoding}")
    a = np.ascontiguousarray(a.astype(enc.dtype.newbyteorder("<"), copy=False))
    h, w = a.shape[:2]
    data = array.array("B")
    data.frombytes(a.tobytes())
    return {
        "height": int(h),
        "width": int(w),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(w * enc.dtype.itemsize * enc.channels),
        "data": data,
    }


def numpy_to_msg(array_: np.ndarray, encoding: str, header: Any = None, msg_cls: Any = None):
    """numpy -> a sensor_msgs/Image of ``msg_cls`` (rclpy's: ``ros.image.numpy_to_msg``; rosbags' in the replay)."""
    if msg_cls is None:
        raise TypeError("msg_cls is required here (ros2_iterprime.ros.image.numpy_to_msg defaults to rclpy's Image)")
    msg = msg_cls()
    for k, v in numpy_to_fields(array_, encoding).items():
        setattr(msg, k, v)
    if header is not None:
        msg.header = header
    return msg


def depth_to_metres(depth: np.ndarray, encoding: str, depth_scale: float = 0.001,
                    min_depth: float = 0.0, max_depth: float = float("inf")) -> np.ndarray:
    """Decoded depth image -> float32 metres with NaN where invalid.

    REP 118: 16UC1 is millimetres (``depth_scale`` = metres per unit, default 0.001) and 32FC1 is
    metres (``depth_scale`` ignored). Invalid: 0, NaN, inf, negative, and anything outside
    [``min_depth``, ``max_depth``] (implausible readings such as 1e38 m never reach the geometry).
    """
    if encoding in ("16UC1", "mono16"):
        d = depth.astype(np.float32) * np.float32(depth_scale)
    elif encoding == "32FC1":
        d = depth.astype(np.float32, copy=True)
    else:
        raise ImageConversionError(f"unsupported depth encoding {encoding!r} (16UC1 mm or 32FC1 m)")
    if d.ndim != 2:
        raise ImageConversionError(f"depth must be single-channel, got shape {d.shape}")
    with np.errstate(invalid="ignore"):
        d[~np.isfinite(d) | (d <= 0) | (d < min_depth) | (d > max_depth)] = np.nan
    return d

