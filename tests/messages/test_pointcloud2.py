"""sensor_msgs/PointCloud2 encoding of the target's cloud (ros2_iterprime/messages/pointcloud2.py), checked
byte for byte with a reader written here from the message definition, and on the real message classes."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from ros2_iterprime.messages import pointcloud2 as pc2

# PointField datatype -> struct format (sensor_msgs/msg/PointField.msg)
STRUCT = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}

POINTS = np.array([[0.1, -0.2, 0.85], [1.5, 2.25, 19.0], [-3.0, 0.0, 0.05]], np.float32)
COLORS = np.array([[255, 0, 0], [1, 2, 3], [255, 255, 255]], np.uint8)


def read_points(msg) -> list[dict]:
    """A generic PointCloud2 reader: every field of every point, by its offset and datatype."""
    endian = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    assert len(data) == msg.row_step * msg.height
    out = []
    for row in range(msg.height):
        for col in range(msg.width):
            base = row * msg.row_step + col * msg.point_step
            out.append({f.name: struct.unpack_from(endian + STRUCT[f.datatype], data, base + f.offset)[0]
                        for f in msg.fields})
    return out


def test_pointfield_constants_match_sensor_msgs():
    from sensor_msgs.msg import PointField

    for name in ("INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64"):
        assert getattr(pc2, name) == getattr(PointField, name)
    assert (pc2.INT8, pc2.FLOAT32, pc2.FLOAT64) == (1, 7, 8)


def test_layout_and_bytes_decode_with_an_independent_reader():
    f = pc2.pointcloud2_fields(POINTS, COLORS)
    assert (f["height"], f["width"], f["point_step"], f["row_step"]) == (1, 3, 16, 48)
    assert f["is_bigendian"] is False and f["is_dense"] is True and len(f["data"]) == 48
    assert [(x.name, x.offset, x.datatype, x.count) for x in f["fields"]] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)]
    data = bytes(f["data"])
    for i, (p, c) in enumerate(zip(POINTS, COLORS)):
        x, y, z, rgb_u32 = struct.unpack_from("<fffI", data, 16 * i)
        assert (x, y, z) == tuple(float(v) for v in p)  # float32 exact
        assert rgb_u32 == (int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2])
        # the rgb field read as the FLOAT32 it is declared as has exactly those bits (PCL convention)
        (rgb_f,) = struct.unpack_from("<f", data, 16 * i + 12)
        assert struct.pack("<f", rgb_f) == struct.pack("<I", rgb_u32) and np.isfinite(rgb_f)
    assert pc2.pack_rgb(np.array([[0x12, 0x34, 0x56]], np.uint8))[0] == 0x123456


def test_real_message_with_the_image_header():
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    header = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_color_optical_frame")
    msg = pc2.numpy_to_pointcloud2(POINTS, COLORS, header, PointCloud2, PointField)
    assert isinstance(msg, PointCloud2) and all(isinstance(x, PointField) for x in msg.fields)
    assert msg.header.frame_id == "camera_color_optical_frame" and msg.header.stamp.sec == 12
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 3, 16, 48, True)
    pts = read_points(msg)
    for p, c, got in zip(POINTS, COLORS, pts):
        assert (got["x"], got["y"], got["z"]) == tuple(float(v) for v in p)
        assert struct.unpack("<I", struct.pack("<f", got["rgb"]))[0] == (int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2])
    # what is published decodes the same after the ROS serialisation round trip
    from rclpy.serialization import deserialize_message, serialize_message

    back = deserialize_message(serialize_message(msg), PointCloud2)
    assert bytes(back.data) == bytes(msg.data) and read_points(back) == pts


def test_empty_cloud_and_no_colours():
    f = pc2.pointcloud2_fields(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    assert (f["width"], f["row_step"], len(f["data"]), f["is_dense"]) == (0, 0, 0, True)
    f = pc2.pointcloud2_fields(POINTS.astype(np.float64), None)
    assert all(struct.unpack_from("<I", bytes(f["data"]), 16 * i + 12)[0] == 0xFFFFFF for i in range(3))


@pytest.mark.parametrize("points, colors", [
    (np.array([[np.nan, 0, 1]], np.float32), np.zeros((1, 3), np.uint8)),
    (np.array([[0, np.inf, 1]]), np.zeros((1, 3), np.uint8)),
    (np.array([[0, 0, 1e39]]), np.zeros((1, 3), np.uint8)),  # beyond float32: would become inf
    (np.zeros((2, 2), np.float32), np.zeros((2, 3), np.uint8)),
    (np.zeros((2, 3), np.float32), np.zeros((3, 3), np.uint8)),
    (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (np.array([["a", "b", "c"]]), np.zeros((1, 3), np.uint8)),
])
def test_bad_input_is_refused(points, colors):
    with pytest.raises(pc2.PointCloudEncodingError):
        pc2.pointcloud2_fields(points, colors)


def test_module_imports_no_ros_at_import_time():
    import subprocess
    import sys

    code = ("import sys; import ros2_iterprime.messages.pointcloud2, ros2_iterprime.messages.image, ros2_iterprime.messages.outputs, ros2_iterprime.geometry.target; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'torch')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
