"""`iterprime_node` on compressed camera streams over real DDS: image_transport's `compressed` (JPEG, PNG) and
`compressedDepth` (16UC1 and 32FC1 PNG), on RealSense-style topic names, and hostile compressed payloads.

One node process (model:=tiny-random, image_transport:=compressed, depth_transport:=compressedDepth) with
the remappings a RealSense launch would use; the client publishes bytes made by real encoders
(libjpeg-turbo / zlib through PIL; the compressedDepth header and 32FC1 quantisation of
compressed_depth_image_transport) on `<base>/compressed` and `<base>/compressedDepth`, as image_transport
names them. Fuzzed payloads come from throw-away publishers (a 0-byte serialized sample wedges the Fast
DDS writer that sent it).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
rh.skip_without_rclpy()

from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from ros2_iterprime.messages.compressed import (  # noqa: E402
    compressed_format,
    decode_compressed,
    encode_compressed,
    encode_compressed_depth,
)
from ros2_iterprime.ros.image import msg_to_numpy  # noqa: E402

NS = "/iterprime"
COLOR = "/camera/color/image_raw"
DEPTH = "/camera/aligned_depth_to_color/image_raw"
INFO = "/camera/color/camera_info"
FX, FY, CX, CY = 525.0, 520.0, 319.5, 239.5
W, H = 640, 480


@pytest.fixture(scope="module")
def ros():
    domain = rh.pick_domain_id()
    node = rh.NodeProcess(domain, params={"image_transport": "compressed", "depth_transport": "compressedDepth",
                                          "use_depth": "true", "sync_slop": 0.02, "max_frame_age": 10.0,
                                          "min_depth_points": 5},
                          remaps={"image": COLOR, "depth": DEPTH, "camera_info": INFO})
    client = rh.RosClient(domain)
    try:
        node.wait_ready()
        c = client
        for topic, kind in [(f"{NS}/mask", Image), (f"{NS}/mask/compressed", CompressedImage),
                            (f"{NS}/points", PointCloud2), (f"{NS}/result_json", String)]:
            c.collect(topic, kind)
        c.img_pub = c.node.create_publisher(CompressedImage, COLOR + "/compressed", qos_profile_sensor_data)
        c.depth_pub = c.node.create_publisher(CompressedImage, DEPTH + "/compressedDepth", qos_profile_sensor_data)
        c.info_pub = c.node.create_publisher(CameraInfo, INFO, qos_profile_sensor_data)
        c.expr_pub = c.node.create_publisher(String, "/referring_expression",
                                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        for pub in (c.img_pub, c.depth_pub, c.info_pub, c.expr_pub):
            c.wait_subscribers(pub)
        c.wait_publishers(f"{NS}/mask")
        yield node, client
    finally:
        client.close()
        code = node.stop()
        log = node.log()
        assert "Traceback" not in log, log[-4000:]
        assert code == 0, f"node exit code {code}:\n{log[-3000:]}"


def test_the_node_subscribes_where_image_transport_publishes(ros):
    node, c = ros
    log = node.log()
    assert f"image topic {COLOR}/compressed (compressed)" in log
    assert f"depth {DEPTH}/compressedDepth (compressedDepth)" in log
    # the raw topics are not subscribed
    assert c.node.count_subscribers(COLOR) == 0 and c.node.count_subscribers(DEPTH) == 0


_counter = [0]


def _header(c) -> Header:
    _counter[0] += 1
    hdr = Header(frame_id="camera_color_optical_frame")
    hdr.stamp.sec, hdr.stamp.nanosec = divmod(c.now_ns() + _counter[0] * 1000, 1_000_000_000)
    return hdr


def _scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), np.full_like(xx, 96)], 2).astype(np.uint8)
    img[H // 3: H // 3 + H // 4, W // 3: W // 3 + W // 5] = rng.integers(180, 255, 3, endpoint=True)
    return img


def _depth_metres() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return 0.8 + 1.2 * xx / (W - 1) + 0.1 * yy / (H - 1)


def _camera_info(header) -> CameraInfo:
    info = CameraInfo(header=header, width=W, height=H, distortion_model="plumb_bob")
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    info.p = [FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.d = [0.0] * 5
    return info


def _compressed(header, fmt: str, data: bytes) -> CompressedImage:
    return CompressedImage(header=header, format=fmt, data=data)


def _send(c, hdr, colour: CompressedImage, depth: CompressedImage | None = None, expression: str = "the plate"):
    for _ in range(3):  # best effort: a few copies of the same frame
        c.info_pub.publish(_camera_info(hdr))
        if depth is not None:
            c.depth_pub.publish(depth)
        c.img_pub.publish(colour)
        time.sleep(0.03)
    time.sleep(0.2)
    c.expr_pub.publish(String(data=expression))
    want = {"sec": hdr.stamp.sec, "nanosec": hdr.stamp.nanosec}
    return json.loads(c.first(f"{NS}/result_json", lambda s: json.loads(s.data)["stamp"] == want, timeout=60).data)


@pytest.mark.parametrize("depth_encoding", ["16UC1", "32FC1"])
def test_jpeg_and_compressed_depth_give_mask_and_cloud_with_the_image_header(ros, depth_encoding):
    node, c = ros
    metres = _depth_metres()
    depth_array = np.round(metres * 1000).astype(np.uint16) if depth_encoding == "16UC1" else metres.astype(np.float32)
    # tiny random weights: `found` depends on the frame's content, so try a few scenes
    for attempt in range(8):
        hdr = _header(c)
        colour = _compressed(hdr, compressed_format("rgb8", "jpeg"), encode_compressed(_scene(attempt), "jpeg"))
        fmt, payload = encode_compressed_depth(depth_array, depth_encoding)
        summary = _send(c, hdr, colour, _compressed(hdr, fmt, payload))
        same = lambda m: rh.headers_equal(m.header, hdr)  # noqa: E731
        mask = c.first(f"{NS}/mask", same, timeout=20)
        assert (mask.width, mask.height, mask.encoding) == (W, H, "mono8")
        assert summary["frame_id"] == "camera_color_optical_frame"
        cloud = c.first(f"{NS}/points", same, timeout=20)
        assert cloud.header.frame_id == hdr.frame_id
        if summary["found"]:
            break
        assert cloud.width == 0
    else:
        pytest.fail("no found target in 8 frames")
    assert summary["depth_used"], summary["depth_message"]
    assert cloud.width == summary["depth_points"] >= 5
    z = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, 2]
    # the decoded depth is the sent one: mm for 16UC1; within the inverse-depth quantisation step for 32FC1
    assert np.all((z > 0.79) & (z < 2.11)), (z.min(), z.max())
    m = msg_to_numpy(mask) > 0
    zs = metres[m]
    assert z.min() >= zs.min() - 0.01 and z.max() <= zs.max() + 0.01
    # ~/mask/compressed: the same mask as a PNG, same header, image_transport's format string
    comp = c.first(f"{NS}/mask/compressed", same, timeout=20)
    assert comp.format == "mono8; png compressed "
    assert np.array_equal(decode_compressed(comp.data, comp.format).array, msg_to_numpy(mask))


def test_png_colour_stream(ros):
    node, c = ros
    hdr = _header(c)
    colour = _compressed(hdr, compressed_format("bgr8", "png"), encode_compressed(_scene(99), "png"))
    summary = _send(c, hdr, colour, expression="the square")
    assert summary["status"] in ("ok", "not_found") and summary["expression"] == "the square"
    mask = c.first(f"{NS}/mask", lambda m: rh.headers_equal(m.header, hdr), timeout=20)
    assert (mask.width, mask.height) == (W, H)


def test_fuzzed_compressed_payloads_get_a_reason_and_the_node_stays_up(ros):
    node, c = ros
    jpeg = encode_compressed(_scene(5), "jpeg")
    _, depth_png = encode_compressed_depth(np.full((H, W), 1500, np.uint16), "16UC1")
    bomb = bytearray(jpeg)  # a real JPEG whose frame header declares 60000 x 60000
    i = 2
    while bomb[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + ((bomb[i + 2] << 8) | bomb[i + 3])
    bomb[i + 5: i + 9] = (60000).to_bytes(2, "big") * 2
    colour_cases = [
        ("truncated JPEG", "rgb8; jpeg compressed bgr8", jpeg[: len(jpeg) // 2]),
        ("wrong format string", "rgb8; tiff compressed bgr8", jpeg),
        ("compressedDepth on the colour topic", "16UC1; compressedDepth png", depth_png),
        ("60000x60000 declared", "rgb8; jpeg compressed bgr8", bytes(bomb)),
        ("zero bytes of data", "rgb8; jpeg compressed bgr8", b""),
        ("random bytes", "jpeg", np.random.default_rng(0).bytes(5000)),
    ]
    depth_cases = [
        ("truncated PNG", "16UC1; compressedDepth png", depth_png[:200]),
        ("wrong format string", "16UC1; compressedDepth rvl", depth_png),
        ("zero bytes of data", "16UC1; compressedDepth png", b""),
        ("a JPEG", "32FC1; compressedDepth png", jpeg),
    ]
    before = node.log()
    hdr = _header(c)
    for topic, cases in [(COLOR + "/compressed", colour_cases), (DEPTH + "/compressedDepth", depth_cases)]:
        for what, fmt, data in cases:
            pub = c.node.create_publisher(CompressedImage, topic, qos_profile_sensor_data)  # throw-away
            c.wait_subscribers(pub)
            for _ in range(3):
                pub.publish(_compressed(hdr, fmt, data))
                time.sleep(0.02)
            time.sleep(0.1)
            c.node.destroy_publisher(pub)
    # a 0-byte serialized sample (not even a header) from its own writer
    raw = c.node.create_publisher(CompressedImage, COLOR + "/compressed", qos_profile_sensor_data)
    c.wait_subscribers(raw)
    raw.publish(b"")
    time.sleep(0.5)
    c.node.destroy_publisher(raw)
    time.sleep(1.0)
    assert node.alive(), node.log()[-3000:]
    log = node.log()[len(before):]
    # each cause is named (warnings are throttled per cause, so the first of each kind is in the log)
    assert "skipping compressed image on /camera/color/image_raw/compressed" in log, log[-3000:]
    assert "skipping compressedDepth image on /camera/aligned_depth_to_color/image_raw/compressedDepth" in log
    # the node still answers a valid compressed frame, with its header
    hdr = _header(c)
    summary = _send(c, hdr, _compressed(hdr, "rgb8; jpeg compressed bgr8", jpeg), expression="the cup")
    assert summary["expression"] == "the cup" and summary["status"] in ("ok", "not_found")
    assert "Traceback" not in node.log()


def test_every_fuzz_reason_reaches_the_log():
    """Each hostile payload gets its own reason: one node per kind, so per-cause throttling hides none."""
    domain = rh.pick_domain_id()
    node = rh.NodeProcess(domain, params={"image_transport": "compressed", "use_depth": "false"})
    client = rh.RosClient(domain)
    jpeg = encode_compressed(_scene(1), "jpeg")
    bomb = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + (60000).to_bytes(4, "big") * 2 + bytes(
        [8, 2, 0, 0, 0]) + b"\0" * 40
    reasons = {
        "Premature end of JPEG file": ("jpeg", jpeg[: len(jpeg) // 2]),
        "names no supported codec": ("rgb8; tiff compressed bgr8", jpeg),
        "60000x60000": ("png", bomb),
        "empty payload (0 bytes)": ("rgb8; jpeg compressed bgr8", b""),
    }
    try:
        node.wait_ready()
        for i, (reason, (fmt, data)) in enumerate(reasons.items()):
            pub = client.node.create_publisher(CompressedImage, "/image/compressed", qos_profile_sensor_data)
            client.wait_subscribers(pub)
            hdr = Header(frame_id="cam")
            for _ in range(3):
                pub.publish(_compressed(hdr, fmt, data))
                time.sleep(0.02)
            client.wait_for(lambda r=reason: r in node.log(), 20, f"the reason {reason!r} in the node's log")
            client.node.destroy_publisher(pub)
            time.sleep(5.1 if i + 1 < len(reasons) else 0)  # the per-cause throttle (5 s) lets the next one through
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0
