"""End-to-end tests of `iterprime_node` over real DDS (rclpy from the PyPI ros-kilted wheels).

One node process (model:=tiny-random, on_command mode, depth enabled) for the whole module, on its own
ROS_DOMAIN_ID with LOCALHOST discovery; the test process publishes images/expressions and checks what
comes back. tiny-random masks are meaningless, so the tests check the plumbing (sizes, headers, the
3-D centroid against the returned mask, robustness), not segmentation quality.
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

from geometry_msgs.msg import PointStamped, PoseStamped  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from ros2_iterprime.ros.image import msg_to_numpy, numpy_to_msg  # noqa: E402

try:
    from ros2_iterprime_msgs.msg import SegmentationResult as ResultMsg
    from ros2_iterprime_msgs.srv import Segment
except ImportError:  # the standard-message topics are still tested
    ResultMsg = Segment = None

NS = "/iterprime"
FX, FY, CX, CY = 525.0, 520.0, 319.5, 239.5


@pytest.fixture(scope="module")
def ros():
    domain = rh.pick_domain_id()
    # max_frame_age 10 s: frame age is tested in test_node_robustness.py; here a slow previous job must
    # not turn a request into frame_too_old on a loaded CI machine
    node = rh.NodeProcess(domain, params={"mode": "on_command", "use_depth": "true", "sync_slop": 0.02, "max_frame_age": 10.0,
                                          "min_depth_points": 5})
    client = rh.RosClient(domain)
    try:
        node.wait_ready()
        c = client
        c.collect(f"{NS}/mask", Image)
        c.collect(f"{NS}/overlay", Image)
        c.collect(f"{NS}/centroid", PointStamped)
        c.collect(f"{NS}/points", PointCloud2)
        c.collect(f"{NS}/pose", PoseStamped)
        c.collect(f"{NS}/markers", MarkerArray)
        c.collect(f"{NS}/result_json", String)
        if ResultMsg is not None:
            c.collect(f"{NS}/result", ResultMsg)
        c.img_pub = c.node.create_publisher(Image, "/image", qos_profile_sensor_data)
        c.depth_pub = c.node.create_publisher(Image, "/depth", qos_profile_sensor_data)
        c.info_pub = c.node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
        c.expr_pub = c.node.create_publisher(String, "/referring_expression",
                                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        for pub in (c.img_pub, c.depth_pub, c.info_pub):
            c.wait_subscribers(pub)
        c.wait_subscribers(c.expr_pub, 1)  # the node's volatile reader (the transient-local one can't match)
        c.wait_publishers(f"{NS}/mask")
        yield node, client
    finally:
        client.close()
        code = node.stop()
        log = node.log()
        assert "Traceback" not in log, log[-4000:]
        assert code == 0, f"node exit code {code}:\n{log[-3000:]}"


_stamp_counter = [0]


def _fresh_stamp(c) -> int:
    """A unique stamp near now (so results can be matched to requests by header)."""
    _stamp_counter[0] += 1
    return c.now_ns() + _stamp_counter[0] * 1000


def _send_frame(c, width, height, stamp_ns, encoding="rgb8", repeat=3, depth=None, info=None):
    """Publish a frame (best effort: re-sent a few times with the same stamp) and its depth/info."""
    img = rh.make_image_msg(width, height, stamp_ns, encoding=encoding, seed=stamp_ns % 1000)
    for _ in range(repeat):
        if info is not None:
            c.info_pub.publish(info)
        if depth is not None:
            c.depth_pub.publish(depth)
        c.img_pub.publish(img)
        time.sleep(0.03)
    return img


def _request(c, width, height, expression="the red cup behind the laptop", encoding="rgb8", stamp=None, **kw):
    stamp = _fresh_stamp(c) if stamp is None else stamp
    img = _send_frame(c, width, height, stamp, encoding=encoding, **kw)
    time.sleep(0.05)
    c.expr_pub.publish(String(data=expression))
    same = lambda m: rh.headers_equal(m.header, img.header)  # noqa: E731
    mask = c.first(f"{NS}/mask", same, timeout=30)
    return img, mask, same


@pytest.mark.parametrize("width,height", [(640, 480), (1280, 720)])
def test_image_and_expression_give_mask_overlay_result(ros, width, height):
    node, c = ros
    img, mask, same = _request(c, width, height)
    # mask: same size, header copied from the image, mono8 0/255
    assert (mask.width, mask.height, mask.encoding) == (width, height, "mono8")
    m = msg_to_numpy(mask)
    assert set(np.unique(m)).issubset({0, 255})
    overlay = c.first(f"{NS}/overlay", same)
    assert (overlay.width, overlay.height, overlay.encoding) == (width, height, "bgr8")
    assert msg_to_numpy(overlay).shape == (height, width, 3)
    summary = json.loads(c.first(f"{NS}/result_json",
                                 lambda s: json.loads(s.data)["stamp"] == {"sec": img.header.stamp.sec,
                                                                           "nanosec": img.header.stamp.nanosec}).data)
    assert summary["expression"] == "the red cup behind the laptop"
    assert summary["image_size"] == [width, height] and summary["mask_area"] == int((m > 0).sum())
    assert summary["frame_id"] == img.header.frame_id and summary["depth_used"] is False
    if ResultMsg is not None:
        r = c.first(f"{NS}/result", same)
        assert r.expression == "the red cup behind the laptop"
        assert (r.mask.width, r.mask.height) == (width, height) and rh.headers_equal(r.mask.header, img.header)
        assert r.rounds >= 1 and r.processing_time > 0 and not r.depth_used
        if r.found:
            ys, xs = np.nonzero(m)
            assert r.centroid_px.x == pytest.approx(xs.mean(), abs=1e-3)
            assert r.centroid_px.y == pytest.approx(ys.mean(), abs=1e-3)
            assert (r.bbox.x_offset, r.bbox.y_offset) == (xs.min(), ys.min())
    # no depth -> no 3-D target: markers are cleared, no centroid for this frame
    markers = c.first(f"{NS}/markers", lambda a: rh.headers_equal(a.markers[0].header, img.header))
    assert [mk.action for mk in markers.markers] == [Marker.DELETEALL]
    assert not any(same(p) for p in c.received[f"{NS}/centroid"])


def _camera_info(header, width=640, height=480):
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    info.p = [FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.d = [0.0] * 5
    return info


def _synthetic_depth(width, height, encoding):
    """A tilted plane 0.8-2.0 m with holes: zeros (16UC1) / NaN and inf (32FC1)."""
    yy, xx = np.mgrid[0:height, 0:width]
    metres = 0.8 + 1.2 * xx / (width - 1) + 0.1 * yy / (height - 1)
    holes = (xx % 7 == 0) & (yy % 5 == 0)
    if encoding == "16UC1":
        d = np.round(metres * 1000).astype(np.uint16)
        d[holes] = 0
        metres_seen = d.astype(np.float64) / 1000.0
    else:
        d = metres.astype(np.float32)
        d[holes] = np.nan
        d[(xx % 11 == 0) & (yy % 3 == 0)] = np.inf
        metres_seen = d.astype(np.float64)
    metres_seen[~np.isfinite(metres_seen) | (metres_seen <= 0)] = np.nan
    return d, metres_seen


def read_pointcloud2(msg):
    """The test's own PointCloud2 reader: x y z float32 + rgb (packed uint32 in a FLOAT32 field)."""
    import struct

    names = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert names == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)], names
    assert msg.point_step == 16 and msg.row_step == 16 * msg.width and msg.height == 1 and not msg.is_bigendian
    data = bytes(msg.data)
    assert len(data) == msg.row_step
    pts, rgb = [], []
    for i in range(msg.width):
        x, y, z, c = struct.unpack_from("<fffI", data, 16 * i)
        pts.append((x, y, z))
        rgb.append(((c >> 16) & 255, (c >> 8) & 255, c & 255))
    return np.array(pts, np.float64).reshape(-1, 3), np.array(rgb, np.uint8).reshape(-1, 3)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_gives_cloud_box_and_centroid_from_the_returned_mask(ros, encoding):
    """depth + CameraInfo -> ~/points (image header, as many points as the result says), every point the
    back-projection of a pixel of the returned mask, centroid = per-axis median of the cloud, a box that
    holds the cloud, and the CUBE marker at the box."""
    node, c = ros
    width, height = 640, 480
    stamp = _fresh_stamp(c)
    hdr = Header(frame_id="camera_color_optical_frame")
    hdr.stamp.sec, hdr.stamp.nanosec = divmod(stamp, 1_000_000_000)
    raw, metres = _synthetic_depth(width, height, encoding)
    # 3-D output exists only for a found target (never for a fallback guess). Tiny random weights make
    # `found` depend on the frame's content (seeded by its stamp), so try a few frames.
    for _attempt in range(6):
        if _attempt:
            stamp = _fresh_stamp(c)
            hdr.stamp.sec, hdr.stamp.nanosec = divmod(stamp, 1_000_000_000)
        depth = numpy_to_msg(raw, encoding, header=hdr)
        img, mask, same = _request(c, width, height, expression="the plate", depth=depth,
                                   info=_camera_info(hdr, width, height), stamp=stamp)
        summary = json.loads(c.first(f"{NS}/result_json", lambda s: json.loads(s.data)["stamp"] == {
            "sec": img.header.stamp.sec, "nanosec": img.header.stamp.nanosec}).data)
        cloud_msg = c.first(f"{NS}/points", same, timeout=10)
        if summary["found"]:
            break
        assert summary["depth_used"] is False and not any(same(p) for p in c.received.get(f"{NS}/centroid", []))
        assert cloud_msg.width == 0, "no target: an empty cloud, never a stale one"
    else:
        pytest.fail("no found target in 6 frames")
    assert summary["depth_used"], summary["depth_message"]
    m = msg_to_numpy(mask) > 0
    pts, rgb = read_pointcloud2(cloud_msg)
    assert cloud_msg.header.frame_id == "camera_color_optical_frame" and len(pts) == summary["depth_points"] >= 5
    # every point is the back-projection of a mask pixel with valid depth (pinhole, REP 103 optical frame)
    vs, us = np.nonzero(m)
    z = metres[vs, us]
    ok = np.isfinite(z)
    cand = np.stack([(us[ok] - CX) * z[ok] / FX, (vs[ok] - CY) * z[ok] / FY, z[ok]], 1)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(cand).query(pts)
    assert dist.max() < 1e-4, "a cloud point is not on the returned mask"
    pt = c.first(f"{NS}/centroid", same, timeout=10)
    assert pt.header.frame_id == "camera_color_optical_frame"
    np.testing.assert_allclose([pt.point.x, pt.point.y, pt.point.z], np.median(pts, axis=0), atol=1e-5)
    assert 0.8 <= pt.point.z <= 2.1
    box = summary["box_3d"]
    q = np.array(box["quaternion_xyzw"])
    x, y, zq, w = q / np.linalg.norm(q)
    R = np.array([[1 - 2 * (y * y + zq * zq), 2 * (x * y - zq * w), 2 * (x * zq + y * w)],
                  [2 * (x * y + zq * w), 1 - 2 * (x * x + zq * zq), 2 * (y * zq - x * w)],
                  [2 * (x * zq - y * w), 2 * (y * zq + x * w), 1 - 2 * (x * x + y * y)]])
    local = (pts - np.array(box["center"])) @ R
    assert (np.abs(local) <= np.array(box["size"]) / 2 + 1e-4).all(), "the box must hold the cloud"
    markers = c.first(f"{NS}/markers", lambda a: rh.headers_equal(a.markers[0].header, img.header))
    sphere = next(mk for mk in markers.markers if mk.type == Marker.SPHERE)
    assert [sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z] == pytest.approx(
        [pt.point.x, pt.point.y, pt.point.z])
    cube = next(mk for mk in markers.markers if mk.type == Marker.CUBE)
    assert [cube.pose.position.x, cube.pose.position.y, cube.pose.position.z] == pytest.approx(box["center"])
    assert [cube.scale.x, cube.scale.y, cube.scale.z] == pytest.approx(box["size"])
    pose = c.first(f"{NS}/pose", same, timeout=10)  # no target_frame: the box pose in the optical frame
    assert [pose.pose.position.x, pose.pose.position.y, pose.pose.position.z] == pytest.approx(box["center"])
    assert any(mk.type == Marker.TEXT_VIEW_FACING and "the plate" in mk.text for mk in markers.markers)
    if ResultMsg is not None:
        r = c.first(f"{NS}/result", same)
        assert r.depth_used and r.depth_points == len(pts) and r.depth_message == ""
        assert [r.centroid_3d.x, r.centroid_3d.y, r.centroid_3d.z] == pytest.approx(
            [pt.point.x, pt.point.y, pt.point.z])
        assert [r.box_size.x, r.box_size.y, r.box_size.z] == pytest.approx(box["size"])
        assert r.target_frame == "" and not r.target_valid

    # target_frame without any /tf publisher: the result says why there is no target-frame output,
    # and ~/pose (which follows target_frame) is not published in the wrong frame
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    cli = c.node.create_client(SetParameters, f"{NS}/set_parameters")
    assert cli.wait_for_service(timeout_sec=20)

    def set_target(value):
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter("target_frame", value=value).to_parameter_msg()]))
        c.wait_for(lambda: fut.done(), 20, "set_parameters")
        assert fut.result().results[0].successful

    set_target("base_link")
    try:
        fresh = _fresh_stamp(c)
        stamp2 = fresh - fresh % 1000 + stamp % 1000  # same image content (seeded by stamp % 1000), fresh header
        hdr.stamp.sec, hdr.stamp.nanosec = divmod(stamp2, 1_000_000_000)
        img2 = rh.make_image_msg(width, height, stamp2, seed=stamp2 % 1000)
        for _ in range(3):
            c.info_pub.publish(_camera_info(hdr, width, height))
            c.depth_pub.publish(numpy_to_msg(raw, encoding, header=hdr))
            c.img_pub.publish(img2)
            time.sleep(0.03)
        time.sleep(0.2)  # the frame is in before the expression picks the newest frame
        c.expr_pub.publish(String(data="the plate"))
        same2 = lambda m: rh.headers_equal(m.header, img2.header)  # noqa: E731
        want = {"sec": img2.header.stamp.sec, "nanosec": img2.header.stamp.nanosec}
        try:
            s2 = json.loads(c.first(f"{NS}/result_json", lambda s: json.loads(s.data)["stamp"] == want, timeout=30).data)
        except AssertionError:
            got = [(json.loads(m.data)["stamp"], json.loads(m.data)["status"]) for m in c.received[f"{NS}/result_json"]]
            raise AssertionError(f"no result for {want}; got {got}; log: {node.log()[-1500:]}")
        assert s2["found"] and s2["depth_used"] and s2["target_frame"] == "base_link"
        # nobody publishes /tf here: the node listens (tf2_ros, or its tf2_msgs fallback) and says why
        assert not s2["target_valid"] and "base_link" in s2["target_message"] and s2["box_target"] is None
        assert "does not exist" in s2["target_message"] or "tf2_ros" in s2["target_message"]
        time.sleep(0.3)
        assert not any(same2(p) for p in c.received[f"{NS}/pose"])
        assert '3-D outputs not given in "base_link"' in node.log()
    finally:
        set_target("")
        c.node.destroy_client(cli)


@pytest.mark.skipif(Segment is None, reason="ros2_iterprime_msgs not built")
def test_segment_service_with_and_without_image(ros):
    node, c = ros
    cli = c.node.create_client(Segment, f"{NS}/segment")
    assert cli.wait_for_service(timeout_sec=20)

    def call(req, timeout=60):
        fut = cli.call_async(req)
        c.wait_for(lambda: fut.done(), timeout, "the ~/segment response")
        return fut.result()

    # an image in the request (bgr8, 320x240)
    req = Segment.Request(expression="the dog on the left")
    req.image = rh.make_image_msg(320, 240, _fresh_stamp(c), frame_id="srv_cam", encoding="bgr8")
    res = call(req)
    assert res.success, res.message
    assert (res.result.mask.width, res.result.mask.height) == (320, 240)
    assert rh.headers_equal(res.result.header, req.image.header)
    assert res.result.expression == "the dog on the left"
    # no image: the latest image received on the topic
    img = _send_frame(c, 640, 480, _fresh_stamp(c))
    c.wait_for(lambda: True, 0.1)
    time.sleep(0.3)
    res = call(Segment.Request(expression="the laptop"))
    assert res.success, res.message
    assert rh.headers_equal(res.result.header, img.header)
    assert (res.result.mask.width, res.result.mask.height) == (640, 480)
    # an empty expression is refused, not fatal
    res = call(Segment.Request(expression="   "))
    assert not res.success and "empty" in res.message
    c.node.destroy_client(cli)


def test_late_joining_transient_local_publisher_is_honoured(ros):
    node, c = ros
    img = _send_frame(c, 640, 480, _fresh_stamp(c))
    time.sleep(0.2)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    # a new publisher that publishes at once, before discovery has matched it with the node:
    # only a transient-local reader on the node's side gets this sample
    pub = c.node.create_publisher(String, "/referring_expression", latched)
    pub.publish(String(data="the latched mug"))
    try:
        js = c.first(f"{NS}/result_json", lambda s: json.loads(s.data)["expression"] == "the latched mug",
                     timeout=30)
        d = json.loads(js.data)
        assert d["stamp"] == {"sec": img.header.stamp.sec, "nanosec": img.header.stamp.nanosec}
        time.sleep(1.0)  # the sample reached the node through both readers: processed once only
        n = sum(json.loads(s.data)["expression"] == "the latched mug" for s in c.received[f"{NS}/result_json"])
        assert n == 1
    finally:
        c.node.destroy_publisher(pub)


def _malformed_images(stamp_ns):
    """50 broken sensor_msgs/Image messages of 10 kinds."""
    out = []
    for i in range(5):
        hdr = Header(frame_id="bad")
        hdr.stamp.sec, hdr.stamp.nanosec = divmod(stamp_ns + i, 1_000_000_000)
        out += [
            Image(header=hdr, height=48, width=64, encoding="rgb8", step=64 * 3 - 1, data=bytes(48 * 64 * 3)),
            Image(header=hdr, height=48, width=64, encoding="rgb8", step=64 * 3, data=bytes(100)),
            Image(header=hdr, height=48, width=64, encoding="yuv422_yuy2", step=128, data=bytes(48 * 128)),
            Image(header=hdr, height=0, width=0, encoding="rgb8", step=0, data=b""),
            Image(header=hdr, height=60000, width=60000, encoding="rgb8", step=180000, data=bytes(64)),
            Image(header=hdr, height=48, width=64, encoding="", step=192, data=bytes(48 * 192)),
            Image(header=hdr, height=48, width=64, encoding="32FC1", step=64 * 4, data=bytes(48 * 64 * 4 - 3)),
            Image(header=hdr, height=48, width=64, encoding="16UC1", step=10, data=bytes(48 * 128)),
            Image(header=hdr, height=1, width=4_000_000, encoding="mono8", step=4_000_000, data=bytes(10)),
            Image(header=hdr, height=48, width=64, encoding="bayer_rggb8", step=64, data=bytes(48 * 64)),
        ]
    return out


def test_malformed_images_and_odd_expressions_do_not_kill_the_node(ros):
    node, c = ros
    bad = _malformed_images(_fresh_stamp(c))
    assert len(bad) == 50
    for msg in bad:
        c.img_pub.publish(msg)
        c.depth_pub.publish(msg)
        time.sleep(0.005)
    # odd expressions: empty, whitespace, 10,000 characters, emoji, control characters, other scripts
    for text in ["", "   \n\t", "x" * 10_000, "the 🐶 next to the 🍕", "le chat\x00\x07 noir",
                 "красная чашка", "()[]{}<>|\\;", "a " * 3000]:
        c.expr_pub.publish(String(data=text))
        time.sleep(0.05)
    time.sleep(2.0)
    assert node.alive(), node.log()[-3000:]
    # the node still answers the next valid request correctly
    img, mask, same = _request(c, 640, 480, expression="the cup on the right")
    assert (mask.width, mask.height) == (640, 480)
    js = c.first(f"{NS}/result_json", lambda s: json.loads(s.data)["expression"] == "the cup on the right")
    assert json.loads(js.data)["frame_id"] == img.header.frame_id
    log = node.log()
    assert "skipping image" in log and "Traceback" not in log
    assert node.alive()


def test_parameters_have_descriptors_ranges_and_validation(ros):
    node, c = ros
    from rcl_interfaces.srv import DescribeParameters, SetParameters
    from rclpy.parameter import Parameter

    def call(srv_type, name, req):
        cli = c.node.create_client(srv_type, f"{NS}/{name}")
        try:
            assert cli.wait_for_service(timeout_sec=20)
            fut = cli.call_async(req)
            c.wait_for(lambda: fut.done(), 20, name)
            return fut.result()
        finally:
            c.node.destroy_client(cli)

    d = call(DescribeParameters, "describe_parameters",
             DescribeParameters.Request(names=["iterations", "alpha", "model", "mode"])).descriptors
    assert d[0].integer_range[0].from_value == 1 and d[0].integer_range[0].to_value == 10 and d[0].description
    assert d[1].floating_point_range[0].to_value == 1.0
    assert d[2].read_only and "tiny-random" in d[2].description
    assert "continuous" in d[3].additional_constraints

    def set_(name, value):
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return call(SetParameters, "set_parameters", req).results[0]

    assert not set_("iterations", 11).successful  # out of range
    assert not set_("mode", "sometimes").successful  # not a choice
    assert not set_("model", "default").successful  # read-only
    assert set_("iterations", 2).successful
    img, mask, same = _request(c, 320, 240, expression="the chair")
    if ResultMsg is not None:
        assert c.first(f"{NS}/result", same).rounds <= 2
    assert set_("iterations", 3).successful
