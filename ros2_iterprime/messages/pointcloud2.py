"""numpy (N, 3) points + (N, 3) uint8 colours -> sensor_msgs/PointCloud2, without sensor_msgs_py.

Layout (the PCL / RViz "XYZRGB" convention), one 16-byte little-endian record per point::

    offset  0  x    FLOAT32 (PointField datatype 7), metres
    offset  4  y    FLOAT32
    offset  8  z    FLOAT32
    offset 12  rgb  FLOAT32 whose bits are the uint32 0x00RRGGBB (PCL's packed colour)

``height`` = 1 (unorganised: the cloud is the cleaned subset of the mask's pixels, not an image grid),
``width`` = N, ``point_step`` = 16, ``row_step`` = 16 * N, ``is_bigendian`` = false, ``is_dense`` =
true: the encoder refuses non-finite points, so every point is valid (invalid depths were removed, not
kept as NaN placeholders). An empty cloud has width 0 and no data. Because the top byte of the packed
colour is 0, its float32 reinterpretation is never NaN or inf (it is a subnormal or tiny number), so
generic tools that check floats for finiteness do not drop it. RViz's PointCloud2 display shows it
with Color Transformer "RGB8".

Needs only numpy: :func:`numpy_to_pointcloud2` takes the message classes (rclpy's in the node,
rosbags' in the bag replay). The constants mirror sensor_msgs/msg/PointField.
"""
from __future__ import annotations

import array
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "FIELDS_XYZRGB",
    "POINT_STEP",
    "FieldSpec",
    "PointCloudEncodingError",
    "numpy_to_pointcloud2",
    "pack_rgb",
    "pointcloud2_fields",
]

# sensor_msgs/msg/PointField datatypes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = 1, 2, 3, 4, 5, 6, 7, 8


class FieldSpec(NamedTuple):
    """One sensor_msgs/PointField: name, byte offset in the point record, datatype constant, count."""

    name: str
    offset: int
    datatype: int
    count: int


FIELDS_XYZRGB: tuple[FieldSpec, ...] = (
    FieldSpec("x", 0, FLOAT32, 1),
    FieldSpec("y", 4, FLOAT32, 1),
    FieldSpec("z", 8, FLOAT32, 1),
    FieldSpec("rgb", 12, FLOAT32, 1),
)
POINT_STEP = 16

_RECORD = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                    "offsets": [0, 4, 8, 12], "itemsize": POINT_STEP})


class PointCloudEncodingError(ValueError):
    """Points/colours that cannot be encoded (shape, dtype, non-finite values)."""


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) uint32 0x00RRGGBB."""
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[1] != 3 or c.dtype != np.uint8:
        raise PointCloudEncodingError(f"colors must be (N, 3) uint8, got {c.shape} {c.dtype}")
    c = c.astype(np.uint32)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def pointcloud2_fields(points: np.ndarray, colors: np.ndarray | None = None) -> dict:
    """The fields of a sensor_msgs/PointCloud2 (all but ``header``) for (N, 3) points and (N, 3) colours.

    ``fields`` is a list of :class:`FieldSpec`; ``data`` an ``array.array('B')`` (what rclpy stores
    uint8[] in). ``colors`` None gives white points. Raises :class:`PointCloudEncodingError` for
    a wrong shape/dtype or any non-finite coordinate (``is_dense`` is promised true).
    """
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 3 or p.dtype.kind not in "fiu":
        raise PointCloudEncodingError(f"points must be (N, 3) numbers, got {p.shape} {p.dtype}")
    n = int(p.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        p32 = p.astype(np.float32)
    if not np.isfinite(p32).all():  # also catches float64 values beyond float32's range
        raise PointCloudEncodingError("points must be finite (as float32)")
    if colors is None:
        colors = np.full((n, 3), 255, np.uint8)
    rgb = pack_rgb(colors)
    if rgb.shape[0] != n:
        raise PointCloudEncodingError(f"{n} points but {rgb.shape[0]} colours")
    rec = np.zeros(n, _RECORD)
    rec["x"], rec["y"], rec["z"], rec["rgb"] = p32[:, 0], p32[:, 1], p32[:, 2], rgb
    data = array.array("B")
    data.frombytes(rec.tobytes())
    return {
        "height": 1,
        "width": n,
        "fields": list(FIELDS_XYZRGB),
        "is_bigendian": False,
        "point_step": POINT_STEP,
        "row_step": POINT_STEP * n,
        "data": data,
        "is_dense": True,
    }


def numpy_to_pointcloud2(points: np.ndarray, colors: np.ndarray | None, header: Any = None,
                         msg_cls: Any = None, field_cls: Any = None):
    """(N, 3) points + (N, 3) uint8 colours -> sensor_msgs/PointCloud2 with ``header`` (the image's).

    ``msg_cls`` / ``field_cls``: the PointCloud2 / PointField classes (rclpy's in the node, rosbags' in the
    bag replay); this module imports no ROS package.
    """
    if msg_cls is None or field_cls is None:
        raise TypeError("msg_cls and field_cls are required (e.g. sensor_msgs.msg.PointCloud2, PointField)")
    fields = pointcloud2_fields(points, colors)
    msg = msg_cls()
    for k, v in fields.items():
        if k == "fields":
            v = [field_cls(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in v]
        setattr(msg, k, v)
    if header is not None:
        msg.header = header
    return msg
