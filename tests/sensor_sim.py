"""A realistic sensor rig for the tests: a moving camera on a robot, with the timing real drivers have.

What it simulates (all of it configurable in :class:`SimConfig`):

- a robot base moving in ``odom`` (back and forth along x while yawing, period ``period_s``), TF
  ``odom -> base_link`` at ``tf_hz`` (100 Hz by default; 50-100 Hz) on /tf, ``base_link -> camera optical frame`` static on
  /tf_static;
- a colour camera at ``colour_hz`` (30 Hz) looking at a 0.20 x 0.12 x 0.15 m red box on a grey table,
  stamped at capture time and published ``colour_delay`` later, with its CameraInfo;
- a depth camera at ``depth_hz`` (15 or 30 Hz) registered to the colour camera (same frame_id), each
  image arriving ``depth_delay`` = 5-40 ms (uniform jitter) AFTER its colour frame, as host-aligned
  depth (aligned_depth_to_color) and stereo do; or, with ``unaligned_depth``, a depth camera of its
  own (``camera_depth_optical_frame``, ``depth_baseline`` to the side), as a RealSense
  ``depth/image_rect_raw`` beside ``color/image_raw``;
- ground truth for every stamp: the camera pose in odom, the box silhouette and the ray-cast depth
  (``tests/scene3d.py``).

The motion is periodic, so the frames of one period are ray-cast once and reused (rendering is the
expensive part on a loaded 2-core machine). Time 0 of the simulation is ``t0_ns`` of the stamps.

Consumers: :class:`DdsRig` publishes the events over DDS in real time (the node's tests);
``write_bag`` in tests/replay writes the same events into a rosbag2 (the bag command's tests). The model
stand-in that takes a configurable 0.05-15 s is ``tests/sim_node.py``.
"""
from __future__ import annotations

import heapq
import math
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from scene3d import render_scene, rot_z

from ros2_iterprime.geometry.camera import PinholeIntrinsics
from ros2_iterprime.geometry.transforms import RigidTransform, matrix_to_quaternion

S = 1_000_000_000
BOX_SIZE = np.array([0.20, 0.12, 0.15])
BOX_CENTER_ODOM = np.array([1.1, 0.0, 0.075])
BOX_ROT_ODOM = rot_z(20.0)
# base_link -> optical frame: camera 0.55 m up, looking forward (+x) and 30 deg down
_PITCH = np.deg2rad(30.0)
_R_BASE_OPT = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # optical (z fwd, x right, y down) in base
_R_PITCH = np.array([[math.cos(_PITCH), 0, math.sin(_PITCH)], [0, 1, 0], [-math.sin(_PITCH), 0, math.cos(_PITCH)]])
BASE_TO_CAMERA = RigidTransform([0.0, 0.0, 0.55], matrix_to_quaternion(_R_PITCH @ _R_BASE_OPT))


@dataclass
class SimConfig:
    width: int = 320
    height: int = 240
    colour_hz: float = 30.0
    depth_hz: float = 30.0
    tf_hz: float = 100.0
    colour_delay: float = 0.002
    depth_delay: tuple[float, float] = (0.005, 0.040)
    period_s: float = 2.0
    x_amplitude: float = 0.10  # m: peak speed 2 pi A / P = 0.31 m/s
    yaw_amplitude_deg: float = 6.0  # peak 19 deg/s
    unaligned_depth: bool = False
    depth_baseline: float = 0.05
    colour_frame: str = "camera_color_optical_frame"
    depth_frame_unaligned: str = "camera_depth_optical_frame"
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    seed: int = 0
    t0_ns: int = 0

    @property
    def intrinsics(self) -> PinholeIntrinsics:
        f = 0.8 * self.width
        return PinholeIntrinsics(f, f, (self.width - 1) / 2, (self.height - 1) / 2, self.width, self.height)

    @property
    def depth_frame(self) -> str:
        return self.depth_frame_unaligned if self.unaligned_depth else self.colour_frame


@dataclass(order=True)
class Event:
    """One message to send: at ``send_s`` (simulation seconds), on ``topic``; ``stamp_ns`` is its header stamp."""

    send_s: float
    order: int
    topic: str = field(compare=False)  # image, depth, camera_info, tf, tf_static
    stamp_ns: int = field(compare=False)
    index: int = field(compare=False, default=0)  # colour frame index (image/depth/camera_info)


class SensorSim:
    """The rig's ground truth and its message schedule (no ROS import)."""

    def __init__(self, cfg: SimConfig | None = None):
        self.cfg = cfg or SimConfig()
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.frames_per_period = int(round(self.cfg.period_s * self.cfg.colour_hz))

    # ------------------------------------------------------------------ ground truth
    def t_of(self, stamp_ns: int) -> float:
        return (stamp_ns - self.cfg.t0_ns) / S

    def stamp_of(self, t: float) -> int:
        return self.cfg.t0_ns + int(round(t * S))

    def base_pose(self, t: float) -> RigidTransform:
        """odom -> base_link at simulation time t (s)."""
        c = self.cfg
        w = 2 * math.pi / c.period_s
        x = c.x_amplitude * math.sin(w * t)
        yaw = math.radians(c.yaw_amplitude_deg) * math.sin(w * t + 0.7)
        return RigidTransform([x, 0.0, 0.0], [0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])

    def camera_pose(self, t: float, depth: bool = False) -> RigidTransform:
        """odom -> optical frame (the colour camera's, or the unaligned depth camera's) at time t."""
        pose = self.base_pose(t) @ BASE_TO_CAMERA
        if depth and self.cfg.unaligned_depth:
            pose = pose @ RigidTransform([-self.cfg.depth_baseline, 0.0, 0.0], [0, 0, 0, 1.0])
        return pose

    def depth_to_colour(self) -> RigidTransform:
        return RigidTransform([-self.cfg.depth_baseline, 0.0, 0.0], [0, 0, 0, 1.0])

    def colour_time(self, index: int) -> float:
        return index / self.cfg.colour_hz

    def render(self, index: int, depth_camera: bool = False):
        """(rgb uint8, depth float32 m with NaN = no hit, box mask) of colour frame ``index`` (cached per period)."""
        key = ("d" if depth_camera and self.cfg.unaligned_depth else "c", index % self.frames_per_period)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        pose = self.camera_pose(self.colour_time(index), depth=depth_camera).inverse()  # odom -> optical
        r = pose.rotation_matrix
        scene = render_scene(self.cfg.intrinsics, pose.apply(BOX_CENTER_ODOM), BOX_SIZE, r @ BOX_ROT_ODOM,
                             r @ np.array([0, 0, 1.0]), pose.apply(np.zeros(3)))
        out = (scene.rgb, scene.depth.astype(np.float32), scene.mask)
        with self._lock:
            self._cache[key] = out
        return out

    def on_box(self, points_optical: np.ndarray, stamp_ns: int, tol: float = 0.003) -> np.ndarray:
        """Per point: does it lie on the box's surface, given the camera pose at ``stamp_ns``?"""
        odom = self.camera_pose(self.t_of(stamp_ns)).apply(np.asarray(points_optical, np.float64).reshape(-1, 3))
        local = (odom - BOX_CENTER_ODOM) @ BOX_ROT_ODOM
        half = BOX_SIZE / 2
        inside = (np.abs(local) <= half + tol).all(axis=1)
        on_face = (np.abs(np.abs(local) - half) <= tol).any(axis=1)
        return inside & on_face

    # ------------------------------------------------------------------ schedule
    def events(self, duration_s: float) -> list[Event]:
        """Every message of ``duration_s`` seconds of the rig, ordered by send time."""
        c = self.cfg
        rng = random.Random(c.seed)
        ev: list[Event] = [Event(0.0, 0, "tf_static", self.stamp_of(0.0))]
        n = 1
        for k in range(int(duration_s * c.tf_hz) + 1):
            t = k / c.tf_hz
            ev.append(Event(t, n, "tf", self.stamp_of(t)))
            n += 1
        every = max(1, int(round(c.colour_hz / c.depth_hz)))
        for i in range(int(duration_s * c.colour_hz)):
            t = self.colour_time(i)
            stamp = self.stamp_of(t)
            ev.append(Event(t + c.colour_delay, n, "camera_info", stamp, i))
            ev.append(Event(t + c.colour_delay, n + 1, "image", stamp, i))
            n += 2
            if i % every == 0:
                ev.append(Event(t + rng.uniform(*c.depth_delay), n, "depth", stamp, i))
                n += 1
        return sorted(ev)

    def depth_stamps(self, duration_s: float) -> set[int]:
        return {e.stamp_ns for e in self.events(duration_s) if e.topic == "depth"}


# ---------------------------------------------------------------------- ROS messages (rclpy types)
def tf_message(sim: SensorSim, ev: Event):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    def ts(parent, child, tf: RigidTransform, stamp_ns):
        m = TransformStamped()
        m.header.frame_id, m.child_frame_id = parent, child
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_ns, S)
        t, q = tf.translation, tf.rotation
        m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = (float(v) for v in t)
        (m.transform.rotation.x, m.transform.rotation.y, m.transform.rotation.z,
         m.transform.rotation.w) = (float(v) for v in q)
        return m

    if ev.topic == "tf_static":
        items = [ts("base_link", sim.cfg.colour_frame, BASE_TO_CAMERA, ev.stamp_ns)]
        if sim.cfg.unaligned_depth:
            items.append(ts(sim.cfg.colour_frame, sim.cfg.depth_frame_unaligned, sim.depth_to_colour(), ev.stamp_ns))
        return TFMessage(transforms=items)
    return TFMessage(transforms=[ts("odom", "base_link", sim.base_pose(sim.t_of(ev.stamp_ns)), ev.stamp_ns)])


def sensor_message(sim: SensorSim, ev: Event):
    """The sensor_msgs message of an image / depth / camera_info event."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from ros2_iterprime.ros.image import numpy_to_msg

    c = sim.cfg
    hdr = Header()
    hdr.stamp.sec, hdr.stamp.nanosec = divmod(ev.stamp_ns, S)
    if ev.topic == "image":
        hdr.frame_id = c.colour_frame
        return numpy_to_msg(np.ascontiguousarray(sim.render(ev.index)[0]), "rgb8", header=hdr)
    if ev.topic == "depth":
        hdr.frame_id = c.depth_frame
        d = sim.render(ev.index, depth_camera=True)[1].copy()
        d[~np.isfinite(d)] = 0.0  # 32FC1: 0 = no return
        return numpy_to_msg(d, "32FC1", header=hdr)
    hdr.frame_id = c.colour_frame
    k = c.intrinsics
    info = CameraInfo(header=hdr, width=c.width, height=c.height, distortion_model="plumb_bob")
    info.d = [float(v) for v in c.distortion]
    info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return info


class DdsRig:
    """Publishes a :class:`SensorSim` over DDS in real time from a test-side rclpy node.

    Topics: /image, /depth, /camera_info (sensor-data QoS), /tf (reliable, keep last 100) and
    /tf_static (reliable, transient local). ``start(duration_s)`` runs in a thread; the stamps are the
    client's clock at the start plus simulation time.
    """

    def __init__(self, client, sim: SensorSim):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        self.client, self.sim = client, sim
        node = client.node
        self.pubs = {
            "image": node.create_publisher(Image, "/image", qos_profile_sensor_data),
            "depth": node.create_publisher(Image, "/depth", qos_profile_sensor_data),
            "camera_info": node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data),
            "tf": node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)),
            "tf_static": node.create_publisher(TFMessage, "/tf_static", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)),
        }
        self.sent: dict[str, list[int]] = {k: [] for k in self.pubs}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.late_s = 0.0  # how far behind schedule the worst send was (a loaded machine)
        self.max_late_s = 0.1  # colour frames later than this are skipped (their stamps stay capture times)
        self.skipped = 0

    def wait_matched(self, topics=("image", "depth", "camera_info"), timeout: float = 20.0) -> None:
        for t in topics:
            self.client.wait_subscribers(self.pubs[t], timeout=timeout)

    def start(self, duration_s: float) -> None:
        self.sim.cfg.t0_ns = self.client.now_ns()
        for i in range(min(self.sim.frames_per_period, int(duration_s * self.sim.cfg.colour_hz))):
            self.sim.render(i)  # ray-cast one period before the clock starts
            if self.sim.cfg.unaligned_depth:
                self.sim.render(i, depth_camera=True)
        self.sim.cfg.t0_ns = self.client.now_ns()
        events = self.sim.events(duration_s)
        self._thread = threading.Thread(target=self._run, args=(events,), daemon=True)
        self._thread.start()

    def _run(self, events: list[Event]) -> None:
        start = time.monotonic()
        heapq.heapify(events)
        while events and not self._stop.is_set():
            ev = heapq.heappop(events)
            delay = start + ev.send_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.late_s = max(self.late_s, -delay)
                if ev.topic == "image" and -delay > self.max_late_s:
                    self.skipped += 1  # a loaded machine: drop the frame, as a driver would, to keep up
                    continue
            msg = tf_message(self.sim, ev) if ev.topic in ("tf", "tf_static") else sensor_message(self.sim, ev)
            self.pubs[ev.topic].publish(msg)
            self.sent[ev.topic].append(ev.stamp_ns)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(5)


# ---------------------------------------------------------------------- rosbag2 (rosbags, no ROS needed)
def write_bag(sim: SensorSim, path, duration_s: float, storage: str = "mcap", t0_ns: int = 1_700_000_000 * S,
              image_topic: str = "/image", depth_topic: str = "/depth", info_topic: str = "/camera_info",
              image_encoding: str = "rgb8", depth_encoding: str = "32FC1", skip_topics=(),
              compressed: bool = False) -> dict:
    """Record ``duration_s`` of the rig into a rosbag2 at ``path``, each message at its send time (the log
    time a recorder would give it: depth after its colour frame). Returns topic -> message count.

    ``compressed``: record what image_transport's ``compressed`` / ``compressedDepth`` publishers send
    (sensor_msgs/CompressedImage: JPEG quality 95 colour, compressedDepth PNG depth), made by the encoders.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from ros2_iterprime.messages.compressed import compressed_format, encode_compressed, encode_compressed_depth
    from ros2_iterprime.messages.image import numpy_to_msg
    from ros2_iterprime.replay.bag_io import coerce, default_message, rosbags_kit

    ts = get_typestore(Stores.ROS2_KILTED)
    kit = rosbags_kit(ts, with_result=False)
    sim.cfg.t0_ns = t0_ns
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    types = {image_topic: image_type, depth_topic: image_type,
             info_topic: "sensor_msgs/msg/CameraInfo", "/tf": "tf2_msgs/msg/TFMessage",
             "/tf_static": "tf2_msgs/msg/TFMessage"}
    topic_of = {"image": image_topic, "depth": depth_topic, "camera_info": info_topic, "tf": "/tf",
                "tf_static": "/tf_static"}
    counts = {t: 0 for t in types if t not in skip_topics}
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    c = sim.cfg

    def header(stamp, frame):
        h = default_message(ts, "std_msgs/msg/Header")
        h.stamp.sec, h.stamp.nanosec = divmod(stamp, S)
        h.frame_id = frame
        return h

    def ts_msg(parent, child, tf: RigidTransform, stamp):
        m = default_message(ts, "geometry_msgs/msg/TransformStamped")
        m.header, m.child_frame_id = header(stamp, parent), child
        t, q = tf.translation, tf.rotation
        m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = (float(v) for v in t)
        m.transform.rotation.x, m.transform.rotation.y, m.transform.rotation.z, m.transform.rotation.w = \
            (float(v) for v in q)
        return m

    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {t: w.add_connection(t, ty, typestore=ts) for t, ty in types.items() if t not in skip_topics}
        for ev in sim.events(duration_s):
            topic = topic_of[ev.topic]
            if topic in skip_topics:
                continue
            msgtype = types[topic]
            if ev.topic in ("tf", "tf_static"):
                msg = default_message(ts, msgtype)
                if ev.topic == "tf_static":
                    msg.transforms = [ts_msg("base_link", c.colour_frame, BASE_TO_CAMERA, ev.stamp_ns)]
                    if c.unaligned_depth:
                        msg.transforms.append(ts_msg(c.colour_frame, c.depth_frame_unaligned, sim.depth_to_colour(),
                                                     ev.stamp_ns))
                else:
                    msg.transforms = [ts_msg("odom", "base_link", sim.base_pose(sim.t_of(ev.stamp_ns)), ev.stamp_ns)]
            elif ev.topic == "image":
                rgb = sim.render(ev.index)[0]
                arr = rgb[:, :, ::-1] if image_encoding == "bgr8" else rgb
                if compressed:
                    msg = default_message(ts, msgtype)
                    msg.header, msg.format = header(ev.stamp_ns, c.colour_frame), compressed_format("rgb8", "jpeg")
                    msg.data = np.frombuffer(encode_compressed(rgb, "jpeg"), np.uint8)
                else:
                    msg = numpy_to_msg(np.ascontiguousarray(arr), image_encoding, header(ev.stamp_ns, c.colour_frame),
                                       kit.Image)
            elif ev.topic == "depth":
                d = sim.render(ev.index, depth_camera=True)[1].copy()
                d[~np.isfinite(d)] = 0.0
                if depth_encoding == "16UC1":
                    d = np.round(d * 1000).astype(np.uint16)
                if compressed:
                    msg = default_message(ts, msgtype)
                    msg.header = header(ev.stamp_ns, c.depth_frame)
                    msg.format, payload = encode_compressed_depth(d, depth_encoding)
                    msg.data = np.frombuffer(payload, np.uint8)
                else:
                    msg = numpy_to_msg(d, depth_encoding, header(ev.stamp_ns, c.depth_frame), kit.Image)
            else:
                k = c.intrinsics
                msg = default_message(ts, msgtype)
                msg.header, msg.width, msg.height = header(ev.stamp_ns, c.colour_frame), c.width, c.height
                msg.distortion_model = "plumb_bob"
                msg.d = np.array(c.distortion, np.float64)
                msg.k = np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], np.float64)
                msg.p = np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], np.float64)
                msg.r = np.eye(3).reshape(-1)
            w.write(conns[topic], t0_ns + int(ev.send_s * S), ts.serialize_cdr(coerce(ts, msgtype, msg), msgtype))
            counts[topic] += 1
    return counts
