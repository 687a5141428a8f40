"""The ROS 2 node: camera image + referring expression in, mask, centroid (+3-D), overlay, markers out.

A thin adapter over the core library (``ros2_iterprime.predictor``)::

    iterprime_node --ros-args --params-file config/params.yaml -p model:=tiny-random
    ros2 topic pub -1 /referring_expression std_msgs/String "{data: 'the red cup behind the laptop'}"

Interfaces (all names relative, so remappable and namespace-able; see docs/ros.md):

    subscribes  image                 sensor_msgs/Image         QoS from `image_qos` (default sensor data, REP 2003)
                referring_expression  std_msgs/String           reliable; volatile AND transient-local readers
                depth                 sensor_msgs/Image         16UC1 mm / 32FC1 m, optional (`use_depth`)
                camera_info           sensor_msgs/CameraInfo    optional, for the 3-D centroid
    publishes   ~/mask                sensor_msgs/Image         mono8 0/255, the image's size and header
                ~/overlay             sensor_msgs/Image         bgr8 (`publish_overlay`)
                ~/centroid            geometry_msgs/PointStamped  metres, optical frame, when depth is available
                ~/markers             visualization_msgs/MarkerArray  sphere + text, DELETEALL without target
                ~/result              ros2_iterprime_msgs/SegmentationResult  (if the interfaces are installed)
                ~/result_json         std_msgs/String           the same summary as JSON (standard messages only)
    service     ~/segment             ros2_iterprime_msgs/srv/Segment  (if the interfaces are installed)

Threading: subscription callbacks only decode and store the newest frame; one worker thread runs the
model on the newest (image, depth, camera_info) set, so frames never queue behind a slow model
(the "latest frame" policy of yolo_ros / Isaac ROS style pipelines). Frames replaced while the model
was busy are counted as dropped. The service runs in its own callback group and shares the model
through a lock.
"""
from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from geometry_msgs.msg import PointStamped
from visualization_msgs.msg import MarkerArray

from . import node_outputs as out
from .errors import InvalidInputError, IterPrimeError, ModelNotFoundError, NoImageError
from .geometry import MaskPoint3D, PinholeIntrinsics, mask_centroid_3d
from .ros_image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8

MODES = ("on_command", "continuous")
IMAGE_QOS = ("sensor_data", "reliable", "best_effort")
PROPOSALS = ("cam_points", "automatic")
#: Longer expressions are cut here before parsing (the text model keeps far fewer tokens anyway).
MAX_EXPRESSION_CHARS = 1000
LOG_THROTTLE_S = 5.0


# --------------------------------------------------------------------------------------------- data
@dataclass
class Frame:
    header: Header
    rgb: np.ndarray  # (H, W, 3) uint8
    stamp_ns: int
    seq: int


@dataclass
class DepthFrame:
    header: Header
    depth_m: np.ndarray  # (H, W) float32 metres, NaN = invalid
    stamp_ns: int


@dataclass
class Job:
    frame: Frame
    expression: str
    generation: int


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# ----------------------------------------------------------------------------------------- params
def _desc(description: str, type_: int, *, read_only: bool = False, int_range=None, float_range=None,
          choices: tuple[str, ...] | None = None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, type=type_, read_only=read_only)
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if int_range is not None:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                     to_value=float(float_range[1]), step=0.0)]
    return d


S, I, D, B = (ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER,
              ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL)

#: name -> (default, descriptor). Read-only ones are fixed at start-up (model, QoS, topics).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "model": ("default", _desc(
        "Model profile: 'default' (BLIP ITM base + SAM ViT-B), 'large', or 'tiny-random' (random weights, "
        "for tests/demos). Fetch real weights first with `ros2_iterprime download`.", S, read_only=True)),
    "vlm": ("", _desc("Override of the BLIP ITM model id or local directory ('' = from `model`).", S, read_only=True)),
    "sam": ("", _desc("Override of the SAM model id or local directory ('' = from `model`).", S, read_only=True)),
    "device": ("auto", _desc("torch device: 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...", S,
                             read_only=True)),
    "dtype": ("auto", _desc("torch dtype: 'auto', 'float32', 'float16', 'bfloat16'.", S, read_only=True)),
    "local_files_only": (False, _desc("Never download weights at start-up (also: HF_HUB_OFFLINE=1).", B,
                                      read_only=True)),
    "iterations": (3, _desc("IGRS rounds T (IteRPrimE iterative Grad-CAM refinement).", I, int_range=(1, 10))),
    "alpha": (0.2, _desc("IGRS blend weight of each new round's Grad-CAM.", D, float_range=(0.0, 1.0))),
    "pwem_mode": (0, _desc("Primary word emphasis: 0 full PWEM, 1 all tokens, 2 kept tokens + [CLS], "
                           "3 = 2 + global, 4 = 2 + local.", I, int_range=(0, 4))),
    "proposals": ("cam_points", _desc("SAM proposals: 'cam_points' (prompted at Grad-CAM peaks, fast) or "
                                      "'automatic' (point grid + NMS, slow).", S, choices=PROPOSALS)),
    "points_per_side": (16, _desc("'automatic' proposals: SAM point grid per side (more = slower, finer).", I,
                                  int_range=(2, 64))),
    "mode": ("on_command", _desc("'on_command': segment the newest frame once per received expression; "
                                 "'continuous': every new frame with the active expression, at most "
                                 "max_rate_hz.", S, choices=MODES)),
    "max_rate_hz": (2.0, _desc("Continuous mode: maximum segmentations per second (0 = as fast as the "
                               "model allows).", D, float_range=(0.0, 100.0))),
    "image_qos": ("sensor_data", _desc("QoS of the image/depth/camera_info subscriptions: 'sensor_data' "
                                       "(best effort, keep last 5; REP 2003), 'reliable' or 'best_effort' "
                                       "(depth 1).", S, read_only=True, choices=IMAGE_QOS)),
    "use_depth": (True, _desc("Subscribe to depth + camera_info and publish the 3-D centroid.", B, read_only=True)),
    "depth_scale": (0.001, _desc("Metres per unit of 16UC1 depth images (REP 118: millimetres -> 0.001). "
                                 "32FC1 is always metres.", D, float_range=(1e-6, 1.0))),
    "sync_slop": (0.05, _desc("Maximum |stamp difference| in seconds between the colour image and the depth "
                              "image matched to it.", D, float_range=(0.0, 1.0))),
    "min_depth_points": (10, _desc("Fewest mask pixels with a valid depth for a 3-D centroid.", I,
                                   int_range=(1, 1_000_000))),
    "publish_overlay": (True, _desc("Publish ~/overlay (rendered only while someone subscribes).", B)),
    "marker_diameter": (0.05, _desc("Diameter in metres of the centroid sphere in ~/markers.", D,
                                    float_range=(0.001, 2.0))),
}


# ------------------------------------------------------------------------------------------- node
class IterPrimeNode(Node):
    """See the module docstring. ``segmenter`` is a loaded ``ReferringSegmenter``."""

    def __init__(self, segmenter=None, *, node_name: str = "iterprime", load_model: bool = True, **kwargs):
        super().__init__(node_name, **kwargs)
        self._cond = threading.Condition()
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, desc)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.segmenter = segmenter
        self.model_load_s = 0.0
        if self.segmenter is None and load_model:
            self.segmenter = self._load_model()  # raises on failure (main() turns that into exit 1)

        self._model_lock = threading.Lock()
        self._running = True
        self._frame: Frame | None = None  # newest valid colour frame
        self._frame_seq = 0
        self._taken_seq = 0  # seq of the newest frame the worker took
        self._busy = False
        self._pending: tuple[str, int] | None = None  # on_command: (expression, generation)
        self._active_expression: str | None = None  # continuous mode
        self._generation = 0
        self._last_start = 0.0
        self._image_set_seq = -1  # frame seq whose encoders are cached in the segmenter
        self._depths: collections.deque[DepthFrame] = collections.deque(maxlen=15)
        self._infos: collections.deque[tuple[int, PinholeIntrinsics]] = collections.deque(maxlen=15)
        self._seen_expr: collections.deque = collections.deque(maxlen=64)
        self.stats = collections.Counter()

        # QoS: images per REP 2003 (sensor data = best effort) by default; outputs reliable so that both
        # reliable and best-effort subscribers (e.g. RViz) connect.
        qos_name = self.get_parameter("image_qos").value
        img_qos = {
            "sensor_data": qos_profile_sensor_data,
            "reliable": QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
            "best_effort": QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        }[qos_name]
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        cmd_volatile = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        cmd_latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)

        self.pub_mask = self.create_publisher(Image, "~/mask", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_centroid = self.create_publisher(PointStamped, "~/centroid", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self.pub_json = self.create_publisher(String, "~/result_json", out_qos)
        self.pub_result = None
        if out.SegmentationResultMsg is not None:
            self.pub_result = self.create_publisher(out.SegmentationResultMsg, "~/result", out_qos)
        else:
            self.get_logger().warning(
                "ros2_iterprime_msgs is not installed: ~/result and ~/segment are disabled; the standard "
                "topics (~/mask, ~/centroid, ~/overlay, ~/markers, ~/result_json) work as usual")

        subs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, "image", self._on_image, img_qos, callback_group=subs)
        # A volatile reader matches every publisher; a transient-local reader also gets the last
        # expression of a latched publisher that started before us (QoS compatibility: a transient-local
        # reader never matches a volatile writer). Messages seen by both are deduplicated.
        self.create_subscription(String, "referring_expression", self._on_expression, cmd_volatile,
                                 callback_group=subs)
        # A volatile publisher (e.g. `ros2 topic pub`) is incompatible with the transient-local reader by
        # design; do not log that expected mismatch on our side.
        self.create_subscription(String, "referring_expression", self._on_expression, cmd_latched,
                                 callback_group=subs,
                                 event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda event: None))
        if self.get_parameter("use_depth").value:
            self.create_subscription(Image, "depth", self._on_depth, img_qos, callback_group=subs)
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, img_qos, callback_group=subs)
        if out.SegmentSrv is not None:
            self.create_service(out.SegmentSrv, "~/segment", self._on_segment_srv,
                                callback_group=MutuallyExclusiveCallbackGroup())

        self._worker = threading.Thread(target=self._worker_loop, name="iterprime_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: mode={self.get_parameter('mode').value}, image QoS={qos_name}, "
            f"image topic {self.resolve_topic_name('image')}, expressions on "
            f"{self.resolve_topic_name('referring_expression')}")

    # ------------------------------------------------------------------------------ set-up
    def p(self, name: str):
        return self.get_parameter(name).value

    def _load_model(self):
        from .predictor import SegmenterConfig, load_segmenter

        model, vlm, sam = self.p("model"), self.p("vlm") or None, self.p("sam") or None
        cfg = SegmenterConfig(iterations=self.p("iterations"), alpha=self.p("alpha"),
                              pwem_mode=self.p("pwem_mode"), proposals=self.p("proposals"),
                              points_per_side=self.p("points_per_side"))
        kw = {"device": self.p("device"), "dtype": self.p("dtype")}
        if self.p("local_files_only"):
            kw["local_files_only"] = True
        what = model + (f" (vlm={vlm})" if vlm else "") + (f" (sam={sam})" if sam else "")
        self.get_logger().info(f"loading model '{what}' on device '{kw['device']}' ...")
        t0 = time.perf_counter()
        seg = load_segmenter(model, vlm=vlm, sam=sam, config=cfg, **kw)
        self.model_load_s = time.perf_counter() - t0
        dev = getattr(getattr(seg, "models", None), "device", kw["device"])
        self.get_logger().info(f"model '{what}' loaded in {self.model_load_s:.2f} s on {dev}")
        return seg

    def _validate_parameters(self, params) -> SetParametersResult:
        """Ranges are enforced by rclpy from the descriptors; string choices here."""
        for prm in params:
            choices = {"mode": MODES, "proposals": PROPOSALS, "image_qos": IMAGE_QOS}.get(prm.name)
            if choices and prm.value not in choices:
                return SetParametersResult(successful=False,
                                           reason=f"{prm.name} must be one of {', '.join(choices)}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------ callbacks
    def _warn(self, msg: str) -> None:
        self.get_logger().warning(msg, throttle_duration_sec=LOG_THROTTLE_S)

    def _on_image(self, msg: Image) -> None:
        self.stats["images"] += 1
        try:
            rgb = to_rgb8(msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self.stats["invalid_images"] += 1
            self._warn(f"skipping image ({self.stats['invalid_images']} invalid so far): {exc}")
            return
        except Exception as exc:  # never die on a message
            self.stats["invalid_images"] += 1
            self._warn(f"skipping image: unexpected {type(exc).__name__}: {exc}")
            return
        with self._cond:
            # the previous frame was wanted (continuous mode, model busy) but never processed: dropped
            if (self._busy and self._frame is not None and self._frame.seq > self._taken_seq
                    and self._wants_frames()):
                self.stats["dropped"] += 1
                self._warn(f"dropped {self.stats['dropped']} frame(s) so far: the model is slower than the "
                           f"image stream (only the newest frame is processed)")
            self._frame_seq += 1
            self._frame = Frame(msg.header, rgb, stamp_ns(msg.header), self._frame_seq)
            self._cond.notify_all()

    def _on_expression(self, msg: String, info) -> None:
        # The same sample arrives through both readers when the publisher is transient-local:
        # deduplicate on (publisher GID, sequence number, source timestamp) from the MessageInfo.
        try:
            key = (repr(info.get("publisher_gid")), info.get("publication_sequence_number"),
                   info.get("source_timestamp"))
        except Exception:
            key = None
        if key is not None:
            if key in self._seen_expr:
                return
            self._seen_expr.append(key)
        try:
            text = msg.data if isinstance(msg.data, str) else str(msg.data)
        except Exception:  # pragma: no cover
            return
        if len(text) > MAX_EXPRESSION_CHARS:
            self._warn(f"expression of {len(text)} characters cut to {MAX_EXPRESSION_CHARS}")
            text = text[:MAX_EXPRESSION_CHARS]
        stripped = " ".join(text.split())
        with self._cond:
            self._generation += 1  # pre-empts whatever was pending or running
            if not stripped:
                self._pending = None
                self._active_expression = None
                self.get_logger().warning("empty expression: cleared the active expression (no target)")
                self._publish_clear()
            else:
                self._pending = (text, self._generation)
                self._active_expression = text
                self.get_logger().info(f"new expression: '{stripped[:120]}'")
            self._cond.notify_all()

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = depth_to_metres(msg_to_numpy(msg), msg.encoding, self.p("depth_scale"))
        except Exception as exc:
            self.stats["invalid_depth"] += 1
            self._warn(f"skipping depth image: {exc}")
            return
        with self._cond:
            self._depths.append(DepthFrame(msg.header, depth, stamp_ns(msg.header)))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = PinholeIntrinsics.from_camera_info(msg)
        except Exception as exc:
            self._warn(f"skipping camera_info: {exc}")
            return
        with self._cond:
            self._infos.append((stamp_ns(msg.header), intr))

    # ------------------------------------------------------------------------------ worker
    def _wants_frames(self) -> bool:
        return self.p("mode") == "continuous" and self._active_expression is not None

    def _next_job(self) -> Job | None:
        """Called with the condition held: the job to run now, or None."""
        if self._frame is None:
            return None
        if self._pending is not None:  # a new expression: the newest frame, even if seen before
            text, gen = self._pending
            self._pending = None
            self._taken_seq = self._frame.seq
            return Job(self._frame, text, gen)
        if self._wants_frames() and self._frame.seq > self._taken_seq:
            rate = float(self.p("max_rate_hz"))
            if rate > 0 and time.monotonic() - self._last_start < 1.0 / rate:
                return None
            self._taken_seq = self._frame.seq
            return Job(self._frame, self._active_expression, self._generation)
        return None

    def _worker_loop(self) -> None:
        while self._running:
            with self._cond:
                job = self._next_job()
                if job is None:
                    wait = 0.5
                    rate = float(self.p("max_rate_hz"))
                    if self._wants_frames() and rate > 0 and self._frame is not None \
                            and self._frame.seq > self._taken_seq:
                        wait = max(0.001, 1.0 / rate - (time.monotonic() - self._last_start))
                    self._cond.wait(timeout=wait)
                    continue
                self._busy = True
                self._last_start = time.monotonic()
            try:
                outcome = self._process(job)
                with self._cond:  # a newer expression pre-empts this one's result
                    stale = job.generation != self._generation and (
                        self.p("mode") == "on_command" or job.expression != self._active_expression)
                if outcome is not None and not stale:
                    self._publish(outcome, job.frame)
                elif stale:
                    self.get_logger().debug("result of a superseded expression discarded")
            except Exception as exc:  # the worker never dies
                self.get_logger().error(f"unexpected error while processing a frame: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
            finally:
                with self._cond:
                    self._busy = False

    def _overrides(self) -> dict:
        return {"iterations": int(self.p("iterations")), "alpha": float(self.p("alpha")),
                "pwem_mode": int(self.p("pwem_mode")), "proposals": str(self.p("proposals")),
                "points_per_side": int(self.p("points_per_side"))}

    def _segment(self, frame: Frame, expression: str, cache_key: int | None):
        """Run the model (under the model lock). Returns (SegmentationResult | None, seconds)."""
        t0 = time.perf_counter()
        try:
            with self._model_lock:
                if cache_key is None or cache_key != self._image_set_seq:
                    self._image_set_seq = -1
                    self.segmenter.set_image(frame.rgb)
                    self._image_set_seq = cache_key if cache_key is not None else -1
                res = self.segmenter.segment(expression, **self._overrides())
            self.stats["processed"] += 1
            return res, time.perf_counter() - t0
        except (InvalidInputError, NoImageError) as exc:
            self.stats["rejected"] += 1
            self._warn(f"cannot segment '{expression[:80]}': {exc}")
        except (MemoryError, RuntimeError) as exc:
            self.stats["errors"] += 1
            oom = isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
            self.get_logger().error(
                ("out of memory" if oom else f"model error ({type(exc).__name__})")
                + f" on a {frame.rgb.shape[1]}x{frame.rgb.shape[0]} frame: {str(exc)[:300]}"
                + (" (try a smaller image, dtype:=float16 or device:=cpu)" if oom else ""),
                throttle_duration_sec=LOG_THROTTLE_S)
            if oom:
                _free_accelerator_memory()
        except IterPrimeError as exc:
            self.stats["errors"] += 1
            self._warn(f"segmentation failed: {exc}")
        return None, time.perf_counter() - t0

    def _match_depth(self, frame: Frame, depths=None, infos=None) -> tuple[DepthFrame | None, PinholeIntrinsics | None]:
        slop_ns = int(float(self.p("sync_slop")) * 1e9)
        with self._cond:
            depths = list(self._depths) if depths is None else depths
            infos = list(self._infos) if infos is None else infos
        best = min(depths, key=lambda d: abs(d.stamp_ns - frame.stamp_ns), default=None)
        if best is None or abs(best.stamp_ns - frame.stamp_ns) > slop_ns:
            return None, None
        # CameraInfo: the one closest in time (intrinsics rarely change); the latest if none is close
        info = min(infos, key=lambda i: abs(i[0] - best.stamp_ns), default=None)
        return best, (info[1] if info is not None else None)

    def _point_3d(self, result, frame: Frame, depth: DepthFrame | None, intr: PinholeIntrinsics | None):
        if depth is None or intr is None or not result.found or not result.mask.any():
            return None
        try:
            return mask_centroid_3d(result.mask, depth.depth_m, intr, int(self.p("min_depth_points")))
        except Exception as exc:
            self._warn(f"3-D centroid failed: {exc}")
            return None

    def _process(self, job: Job, depth_override=None) -> out.Outcome | None:
        frame = job.frame
        result, seconds = self._segment(frame, job.expression, frame.seq)
        if result is None:
            return None
        depth, intr = depth_override if depth_override is not None else self._match_depth(frame)
        point = self._point_3d(result, frame, depth, intr)
        return out.Outcome(frame.header, result, point, seconds, self._latency(frame, seconds),
                           int(self.stats["dropped"]))

    def _latency(self, frame: Frame, seconds: float) -> float:
        if frame.stamp_ns <= 0:
            return seconds
        return (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e9

    # ------------------------------------------------------------------------------ publishing
    def _publish_clear(self) -> None:
        hdr = self._frame.header if self._frame is not None else Header()
        clear = out.Outcome(hdr, _empty_result(), None, 0.0, 0.0, 0)
        self.pub_markers.publish(out.markers_msg(clear))

    def _publish(self, o: out.Outcome, frame: Frame) -> None:
        mask = out.mask_msg(o.result, o.header)
        self.pub_mask.publish(mask)
        if self.p("publish_overlay") and self.pub_overlay.get_subscription_count() > 0:
            try:
                self.pub_overlay.publish(out.overlay_msg(frame.rgb, o.result, o.header))
            except Exception as exc:
                self._warn(f"overlay rendering failed: {type(exc).__name__}: {exc}")
        if o.point is not None:
            self.pub_centroid.publish(out.centroid_msg(o.point, o.header))
        self.pub_markers.publish(out.markers_msg(o, float(self.p("marker_diameter"))))
        if self.pub_result is not None:
            self.pub_result.publish(out.result_msg(o, mask))
        self.pub_json.publish(out.json_msg(o))
        r = o.result
        c = f"({r.centroid[0]:.0f}, {r.centroid[1]:.0f})" if r.centroid is not None else "-"
        p3 = (f", 3-D ({o.point.x:.3f}, {o.point.y:.3f}, {o.point.z:.3f}) m" if o.point is not None else "")
        self.get_logger().info(
            f"'{r.expression[:60]}': found={r.found} score={r.score:.3f} area={int(r.mask.sum())} px "
            f"centroid {c}{p3}, model {o.processing_time * 1000:.0f} ms, latency {o.latency * 1000:.0f} ms")

    # ------------------------------------------------------------------------------ service
    def _on_segment_srv(self, request, response):
        response.success = False
        try:
            expression = request.expression if isinstance(request.expression, str) else ""
            if not expression.strip():
                response.message = "empty expression"
                return response
            expression = expression[:MAX_EXPRESSION_CHARS]
            depth_override = None
            if request.image.width > 0 and request.image.height > 0:
                try:
                    rgb = to_rgb8(msg_to_numpy(request.image), request.image.encoding)
                except ImageConversionError as exc:
                    response.message = f"invalid image: {exc}"
                    return response
                frame = Frame(request.image.header, rgb, stamp_ns(request.image.header), -1)
                depth_override = (None, None)
                if request.depth.width > 0 and request.depth.height > 0:
                    try:
                        d = depth_to_metres(msg_to_numpy(request.depth), request.depth.encoding,
                                            self.p("depth_scale"))
                        intr = PinholeIntrinsics.from_camera_info(request.camera_info)
                        depth_override = (DepthFrame(request.depth.header, d, stamp_ns(request.depth.header)), intr)
                    except (ImageConversionError, ValueError) as exc:
                        response.message = f"invalid depth/camera_info: {exc}"
                        return response
            else:
                with self._cond:
                    frame = self._frame
                if frame is None:
                    response.message = "no image received yet on " + self.resolve_topic_name("image")
                    return response
            result, seconds = self._segment(frame, expression, frame.seq if frame.seq >= 0 else None)
            if result is None:
                response.message = "segmentation failed (see the node's log)"
                return response
            depth, intr = depth_override if depth_override is not None else self._match_depth(frame)
            point = self._point_3d(result, frame, depth, intr)
            o = out.Outcome(frame.header, result, point, seconds, self._latency(frame, seconds),
                            int(self.stats["dropped"]))
            response.result = out.result_msg(o)
            response.success = True
            response.message = "ok" if result.found else "no proposal passed the selection (fallback mask)"
        except Exception as exc:  # never let a request take the node down
            response.success = False
            response.message = f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(response.message, throttle_duration_sec=LOG_THROTTLE_S)
        return response

    # ------------------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        self._worker.join(timeout=5.0)


def _empty_result():
    from .results import SegmentationResult

    return SegmentationResult(expression="", mask=np.zeros((0, 0), bool), score=0.0, bbox=None, centroid=None,
                              heatmap=np.zeros((0, 0), np.float32), primary_word=None, kept_tokens=[],
                              rounds=0, match_probs=[], found=False)


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        try:
            node = IterPrimeNode()
        except ModelNotFoundError as exc:
            _log_fatal(f"cannot load the model: {exc} (node parameters: -p vlm:=<id or dir>, "
                       f"-p sam:=<id or dir>, or -p model:=tiny-random)")
            return 1
        except Exception as exc:
            _log_fatal(
                f"cannot load the model ({type(exc).__name__}: {exc}). Check the `model`/`vlm`/`sam` "
                f"parameters; fetch real weights with `ros2_iterprime download` (or use model:=tiny-random "
                f"for a weight-free smoke test).")
            return 1
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


def _log_fatal(msg: str) -> None:
    rclpy.logging.get_logger("iterprime").fatal(msg)


if __name__ == "__main__":
    sys.exit(main())
