"""`iterprime_node`: a managed (lifecycle) ROS 2 node over the ros2_iterprime library.

    iterprime_node --ros-args --params-file config/params.yaml -p model:=tiny-random
    ros2 topic pub -1 /referring_expression std_msgs/String "{data: 'the red cup behind the laptop'}"

Lifecycle (REP-free but the ROS 2 managed-node design): **configure** validates the parameters and loads
the model; **activate** subscribes and starts the worker; **deactivate** stops processing, drops frames
and per-image caches and returns accelerator memory; **cleanup** unloads the model. With
``autostart:=true`` (default) the node configures and activates itself, so it works like a plain node;
``autostart:=false`` leaves it unconfigured for a lifecycle manager. ``/diagnostics`` is published in
every state.

Interfaces (relative names, remappable and namespace-able; see docs/ros.md):

    subscribes  image, referring_expression, depth, camera_info
    publishes   ~/mask ~/overlay ~/centroid ~/markers ~/result ~/result_json, /diagnostics
    service     ~/segment

This module only wires ROS to the rooms of ``ros2_iterprime.ros``: ``parameters`` (declaration and
validation), ``inputs`` (frames, depth sync, expression ordering), ``worker`` (newest-frame scheduling),
``processing`` (the model call and its failure modes), ``outputs`` (messages), ``diagnostics``, ``image``
(sensor_msgs/Image <-> numpy) and ``log`` (per-cause throttling, quoting of user text).
"""
from __future__ import annotations

import gc
import sys
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ..errors import ModelNotFoundError
from ..geometry import PinholeIntrinsics
from . import outputs as out
from .diagnostics import NodeStats, diagnostic_status, diagnostics_msg
from .image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8
from .inputs import DepthFrame, DepthSync, ExpressionInbox, Frame, stamp_ns
from .log import CauseThrottle, quote, route_library_logs
from .parameters import PARAMETERS, StartupError, check_value, cross_check, is_builtin
from .processing import Processor, free_accelerator_memory
from .tf import TargetFrameLookup
from .track import TrackRunner, tracker_id
from .worker import Job, Scheduler, Worker

#: Longer expressions are cut here before parsing (the text model keeps far fewer tokens anyway).
MAX_EXPRESSION_CHARS = 1000
LOG_THROTTLE_S = 5.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class IterPrimeNode(LifecycleNode):
    """See the module docstring.

    Args:
        node_name: default node name ('iterprime'; remappable with ``-r __node:=...``).
        segmenter: an already loaded ``ReferringSegmenter`` (tests); None loads it at configure.
    """

    def __init__(self, node_name: str = "iterprime", segmenter=None, **kwargs):
        super().__init__(node_name, **kwargs)
        self._values: dict[str, Any] = {}
        self._declare_parameters()  # raises StartupError
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.log = CauseThrottle(self.get_logger(), LOG_THROTTLE_S)
        route_library_logs(self.get_logger())
        self.stats = NodeStats()
        self.scheduler = Scheduler(self.setting, self._now_ns)
        self.depth_sync = DepthSync()
        self.inbox = ExpressionInbox()
        self._injected = segmenter
        self.processor: Processor | None = None
        self.track: TrackRunner | None = None
        self.lifecycle_state = "unconfigured"
        self.configure_error: str | None = None
        self.autostarting = False
        self.finalized = False
        self._pubs: dict[str, Any] = {}
        self._subs: list = []
        self._latched_sub = None
        self._srv = None
        self._worker: Worker | None = None
        self._graph_timer = None
        self._tf: TargetFrameLookup | None = None
        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._srv_group = MutuallyExclusiveCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(float(self.setting("diagnostics_period")), self._publish_diagnostics,
                          callback_group=ReentrantCallbackGroup())

    # ------------------------------------------------------------------------------ parameters
    def setting(self, name: str):
        """Current value of one of the node's parameters (thread-safe snapshot)."""
        return self._values[name]

    def _declare_parameters(self) -> None:
        problems = []
        for name, spec in PARAMETERS.items():
            try:
                value = self.declare_parameter(name, spec.default, spec.descriptor(name)).value
            except Exception as exc:  # wrong type / out of range in a params file or -p override
                problems.append(f"{name}: {str(exc).strip() or type(exc).__name__}")
                continue
            reason = check_value(name, value)
            if reason:
                problems.append(reason)
            self._values[name] = float(value) if spec.type is float and isinstance(value, int) else value
        if not problems:
            reason = cross_check(self._values)
            if reason:
                problems.append(reason)
        if problems:
            raise StartupError("invalid parameter value(s): " + "; ".join(problems))
        unknown = sorted(n for n in getattr(self, "_parameter_overrides", {})
                         if n not in PARAMETERS and not is_builtin(n))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {', '.join(map(quote, unknown))} "
                                      f"(known: {', '.join(PARAMETERS)})")

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = dict(self._values)
        for prm in params:
            if is_builtin(prm.name):
                continue
            reason = check_value(prm.name, prm.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            spec = PARAMETERS[prm.name]
            new[prm.name] = float(prm.value) if spec.type is float else prm.value
        reason = cross_check(new)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if new["target_frame"] and new["target_frame"] != self._values["target_frame"] \
                and not TargetFrameLookup.importable():
            self.get_logger().warning(f"target_frame {quote(new['target_frame'])}: {TargetFrameLookup.MISSING}; "
                                      f"3-D outputs stay in the camera frame")
        self._values = new
        return SetParametersResult(successful=True)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.configure_error = None
        try:
            segmenter = self._injected if self._injected is not None else self._load_model()
        except Exception as exc:
            self.configure_error = self._load_error_text(exc)
            if not self.autostarting:
                self.get_logger().error(self.configure_error)
            return FAILURE
        if self.setting("target_frame"):  # else created at the first lookup (no /tf traffic for nothing)
            self._tf = TargetFrameLookup(self)
            if not self._tf.available:
                self.get_logger().warning(f"target_frame {quote(self.setting('target_frame'))} is set but "
                                          f"{self._tf.unavailable_reason}: 3-D outputs stay in the camera frame")
        self.processor = Processor(segmenter, self.setting, self._now_ns, self._lookup_target_frame)
        self.track = TrackRunner(self.processor, self.setting, self._load_tracker)
        if self.setting("mode") == "track":
            try:
                self.track.ensure_loaded()
            except Exception as exc:
                self.configure_error = self._load_error_text(exc, "tracker")
                if not self.autostarting:
                    self.get_logger().error(self.configure_error)
                self._release_model()
                return FAILURE
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        pub = self.create_lifecycle_publisher
        self._pubs = {
            "mask": pub(Image, "~/mask", qos),
            "overlay": pub(Image, "~/overlay", qos),
            "centroid": pub(PointStamped, "~/centroid", qos),
            "pose": pub(PoseStamped, "~/pose", qos),
            "markers": pub(MarkerArray, "~/markers", qos),
            "json": pub(String, "~/result_json", qos),
        }
        if self.setting("use_depth"):
            self._pubs["points"] = pub(PointCloud2, "~/points", qos)
        if out.SegmentationResultMsg is not None:
            self._pubs["result"] = pub(out.SegmentationResultMsg, "~/result", qos)
        else:
            self.get_logger().warning(
                "ros2_iterprime_msgs is not installed: ~/result and ~/segment are disabled; the standard "
                "topics (~/mask, ~/centroid, ~/overlay, ~/markers, ~/result_json) work as usual")
        self.lifecycle_state = "inactive"
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # activates the lifecycle publishers
        if ret != SUCCESS:
            return ret
        name = self.setting("image_qos")
        img_qos = {
            "sensor_data": qos_profile_sensor_data,
            "reliable": QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
            "best_effort": QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        }[name]
        g = self._inputs_group
        self._subs = [
            self.create_subscription(Image, "image", self._on_image, img_qos, callback_group=g),
            self.create_subscription(String, "referring_expression", self._on_expression,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE), callback_group=g),
        ]
        if self.setting("use_depth"):
            self._subs += [
                self.create_subscription(Image, "depth", self._on_depth, img_qos, callback_group=g),
                self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, img_qos, callback_group=g),
            ]
        if out.SegmentSrv is not None:
            self._srv = self.create_service(out.SegmentSrv, "~/segment", self._on_segment_srv,
                                            callback_group=self._srv_group)
        self._graph_timer = self.create_timer(0.5, self._sync_latched_reader, callback_group=g)
        self._worker = Worker(self.scheduler, self._run_job, self._on_worker_error)
        self._worker.start()
        self.lifecycle_state = "active"
        self.get_logger().info(
            f"ready: active, mode={self.setting('mode')}, image QoS={name}, image topic "
            f"{self.resolve_topic_name('image')}, expressions on {self.resolve_topic_name('referring_expression')}")
        return SUCCESS

    def _stop_processing(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._graph_timer is not None:
            self.destroy_timer(self._graph_timer)
            self._graph_timer = None
        for sub in self._subs + ([self._latched_sub] if self._latched_sub is not None else []):
            self.destroy_subscription(sub)
        self._subs, self._latched_sub = [], None
        if self._srv is not None:
            self.destroy_service(self._srv)
            self._srv = None
        self.scheduler.reset()
        self.depth_sync.clear()
        self.inbox = ExpressionInbox()  # after re-activation a latched expression is served again
        if self.track is not None:
            self.track.stop()  # the worker is stopped: nobody else uses the tracker now
        if self.processor is not None:
            self.processor.forget_image()
        free_accelerator_memory()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.lifecycle_state = "inactive"
        self.get_logger().info("deactivated: not processing; per-image caches released")
        return super().on_deactivate(state)

    def _lookup_target_frame(self, target_frame: str, header):
        """Transform to ``target_frame`` at the image stamp (worker thread; bounded by tf_timeout)."""
        if self._tf is None:  # target_frame was set at run time: start listening now
            self._tf = TargetFrameLookup(self)
        tf, reason = self._tf.lookup(target_frame, header, float(self.setting("tf_timeout")))
        if tf is None:
            self.log.warning("tf", f"3-D outputs not given in {quote(target_frame)}: {reason}")
        return tf, reason

    def _release_model(self) -> None:
        for p in self._pubs.values():
            self.destroy_lifecycle_publisher(p)
        self._pubs = {}
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        if self.track is not None:
            self.track.close()
            self.track = None
        self.processor = None
        self._injected = None
        gc.collect()
        free_accelerator_memory()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        self.lifecycle_state = "unconfigured"
        self.get_logger().info("cleaned up: model unloaded")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self.lifecycle_state = "finalized"
        self.get_logger().info("finalized (lifecycle shutdown): exiting")
        self.finalized = True  # main() leaves its spin loop: a finalized node has nothing left to do
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error during a lifecycle transition from {state.label}: releasing everything")
        self.close()
        self.lifecycle_state = "unconfigured"
        return SUCCESS

    def close(self) -> None:
        """Stop processing and unload (shutdown, errors, process exit); safe to call twice."""
        self._stop_processing()
        self._release_model()

    # ------------------------------------------------------------------------------ model
    def _load_model(self):
        from ..predictor import SegmenterConfig, load_segmenter

        model, vlm, sam = self.setting("model"), self.setting("vlm") or None, self.setting("sam") or None
        cfg = SegmenterConfig(iterations=self.setting("iterations"), alpha=self.setting("alpha"),
                              pwem_mode=self.setting("pwem_mode"), proposals=self.setting("proposals"),
                              points_per_side=self.setting("points_per_side"),
                              proposals_model=self.setting("proposals_model"))
        kw = {"device": self.setting("device"), "dtype": self.setting("dtype")}
        if self.setting("local_files_only"):
            kw["local_files_only"] = True
        what = model + (f" (vlm={vlm})" if vlm else "") + (f" (sam={sam})" if sam else "")
        self.get_logger().info(f"loading model '{what}' on device '{kw['device']}' ...")
        t0 = time.perf_counter()
        seg = load_segmenter(model, vlm=vlm, sam=sam, config=cfg, **kw)
        dev = getattr(getattr(seg, "models", None), "device", kw["device"])
        self.get_logger().info(f"model '{what}' loaded in {time.perf_counter() - t0:.2f} s on {dev}")
        return seg

    def _load_tracker(self):
        """The tracker model for mode track (None: share the segmenter's SAM 2.1 proposal model)."""
        from ..tracking import load_tracker

        tm, pm = self.setting("tracker_model").strip(), self.setting("proposals_model")
        if pm != "sam" and tm in ("", pm):
            self.get_logger().info(f"tracker: sharing the proposal model {quote(pm)} (one image encoding per "
                                   "grounding frame)")
            return None
        tid = tracker_id(tm, self.setting("model"))
        self.get_logger().info(f"loading tracker {quote(tid)} ...")
        t0 = time.perf_counter()
        kw = {"local_files_only": True} if self.setting("local_files_only") else {}
        model = load_tracker(tid, device=self.setting("device"), dtype=self.setting("dtype"), **kw)
        self.get_logger().info(f"tracker {quote(tid)} loaded in {time.perf_counter() - t0:.2f} s")
        return model

    @staticmethod
    def _load_error_text(exc: BaseException, what: str = "model") -> str:
        if what == "tracker":
            return (f"cannot load the tracker for mode track ({type(exc).__name__}: {exc}). Set -p tracker_model:=<id "
                    f"or dir> (fetch it with `ros2_iterprime download --tracker <id>`), -p tracker_model:=tiny-random "
                    f"for a weight-free smoke test, or use another mode.")
        if isinstance(exc, ModelNotFoundError):
            return (f"cannot load the model: {exc} (node parameters: -p vlm:=<cached id or folder from `ros2_iterprime "
                    f"download --to DIR`>, -p sam:=<same>, or -p model:=tiny-random)")
        return (f"cannot load the model ({type(exc).__name__}: {exc}). Check the `model`/`vlm`/`sam` parameters; "
                f"fetch real weights with `ros2_iterprime download` (or use model:=tiny-random for a weight-free "
                f"smoke test).")

    # ------------------------------------------------------------------------------ inputs
    def _on_image(self, msg: Image) -> None:
        self.stats.image()
        try:
            rgb = to_rgb8(msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self.stats.count("invalid_images")
            self.log.warning("invalid_image", f"skipping image on {self.resolve_topic_name('image')}: {exc}")
            return
        except Exception as exc:  # never die on a message
            self.stats.count("invalid_images")
            self.log.warning("invalid_image", f"skipping image: unexpected {type(exc).__name__}: {exc}")
            return
        replaced = self.scheduler.put_frame(msg.header, rgb, stamp_ns(msg.header))
        if replaced is not None:
            self.stats.count(replaced)
        if replaced == "dropped":
            self.log.warning("dropped", f"dropped {self.scheduler.counts['dropped']} frame(s) so far: the model "
                                        f"is slower than the image stream (only the newest frame is processed)")

    def _sync_latched_reader(self) -> None:
        """Keep a transient-local expression reader only while a transient-local publisher exists.

        A volatile reader matches every publisher but never receives a latched publisher's earlier
        sample; a transient-local reader does, but is incompatible with volatile writers (every
        `ros2 topic pub` would warn about it). So the second reader exists only while the graph shows a
        transient-local writer on the topic; the :class:`ExpressionInbox` keeps the newest sample whichever
        reader delivers it.
        """
        try:
            topic = self.resolve_topic_name("referring_expression")
            latched = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for i in self.get_publishers_info_by_topic(topic))
            if latched and self._latched_sub is None:
                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
                # volatile writers (`ros2 topic pub`) cannot match this reader by design: not worth a warning
                self._latched_sub = self.create_subscription(
                    String, "referring_expression", self._on_latched_expression, qos, callback_group=self._inputs_group,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda event: None))
            elif not latched and self._latched_sub is not None:
                self.destroy_subscription(self._latched_sub)
                self._latched_sub = None
        except Exception as exc:  # graph queries can fail during shutdown
            self.log.warning("graph", f"expression reader update failed: {type(exc).__name__}: {exc}")

    # two parameters without defaults: rclpy then passes the MessageInfo (publisher, sequence, time)
    def _on_expression(self, msg: String, info) -> None:
        self._expression_received(msg, info, latched=False)

    def _on_latched_expression(self, msg: String, info) -> None:
        self._expression_received(msg, info, latched=True)

    def _expression_received(self, msg: String, info, latched: bool) -> None:
        if not self.inbox.accept(info, latched):
            self.stats.count("expressions_ignored")
            return
        text = msg.data if isinstance(msg.data, str) else ""
        if len(text) > MAX_EXPRESSION_CHARS:
            self.log.warning("long_expression", f"expression of {len(text)} characters cut to {MAX_EXPRESSION_CHARS}")
            text = text[:MAX_EXPRESSION_CHARS]
        stripped = " ".join(text.split())
        self.stats.count("expressions")
        self.scheduler.put_expression(stripped or None)
        if not stripped:
            self.get_logger().warning("empty expression: cleared the active expression (no target)")
            self._publish_markers_clear()
        else:
            self.get_logger().info(f"new expression {quote(stripped, 120)}")

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = depth_to_metres(msg_to_numpy(msg), msg.encoding, self.setting("depth_scale"),
                                    self.setting("min_depth"), self.setting("max_depth"))
        except Exception as exc:
            self.stats.count("invalid_depth")
            self.log.warning("invalid_depth", f"skipping depth image on {self.resolve_topic_name('depth')}: {exc}")
            return
        self.depth_sync.add_depth(DepthFrame(msg.header, depth, stamp_ns(msg.header)))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = PinholeIntrinsics.from_camera_info(msg)
        except Exception as exc:
            self.stats.count("invalid_camera_info")
            self.log.warning("invalid_camera_info",
                             f"skipping camera_info on {self.resolve_topic_name('camera_info')}: {exc}")
            return
        self.depth_sync.add_info(stamp_ns(msg.header), intr)

    # ------------------------------------------------------------------------------ worker
    def _failure_header(self) -> Header:
        hdr = Header()
        frame = self.scheduler.frame
        hdr.frame_id = frame.header.frame_id if frame is not None else ""
        hdr.stamp = self.get_clock().now().to_msg()
        return hdr

    def _run_job(self, job: Job) -> None:
        proc = self.processor
        dropped = int(self.scheduler.counts["dropped"])
        if job.failure is not None:
            status, message = job.failure
            outcome = out.Outcome(self._failure_header(), job.expression, status, message, dropped_frames=dropped)
        elif proc is None:
            return
        else:
            depth = intr = None
            if self.setting("use_depth"):
                depth, intr = self.depth_sync.match(job.frame.stamp_ns, float(self.setting("sync_slop")))
            if self.setting("mode") == "track" and self.track is not None:
                outcome = self.track.run(job.frame, job.expression, job.trigger, depth, intr, dropped)
            else:
                if self.track is not None and self.track.loaded:
                    self.track.stop()  # mode changed away from track: end the track (worker thread)
                outcome = proc.run(job.frame, job.expression, depth, intr, dropped)
        if not self.scheduler.is_current(job):
            self.get_logger().debug("result of a superseded expression discarded")
            return
        self._publish(outcome, job.frame)

    def _on_worker_error(self, exc: BaseException) -> None:
        self.stats.error(f"{type(exc).__name__}: {exc}")
        self.log.error("worker", f"unexpected error while processing a frame: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------ outputs
    def _publish_markers_clear(self) -> None:
        pub = self._pubs.get("markers")
        if pub is not None:
            pub.publish(out.markers_msg(out.Outcome(self._failure_header(), "", out.NOT_FOUND)))

    def _publish(self, o: out.Outcome, frame: Frame | None) -> None:
        self.stats.result(o.status, o.latency, o.processing_time)
        if o.status not in (out.OK, out.NOT_FOUND, out.LOW_CONFIDENCE, out.LOST):
            self.stats.error(f"{o.status}: {o.message}")
        pubs = self._pubs
        if not pubs:
            return
        mask = None
        if o.size != (0, 0):
            mask = out.mask_msg(o)
            pubs["mask"].publish(mask)
        if (frame is not None and o.result is not None and self.setting("publish_overlay")
                and pubs["overlay"].get_subscription_count() > 0):
            try:
                pubs["overlay"].publish(out.overlay_msg(frame.rgb, o))
            except Exception as exc:
                self.log.warning("overlay", f"overlay rendering failed: {type(exc).__name__}: {exc}")
        point = out.finite_or_none(o.point) if o.found else None
        if point is not None:
            pubs["centroid"].publish(out.centroid_msg(point, o.header))
        pose = out.pose_msg(o)
        if pose is not None:
            pubs["pose"].publish(pose)
        if "points" in pubs and o.size != (0, 0):
            pubs["points"].publish(out.points_msg(o))
        pubs["markers"].publish(out.markers_msg(o, float(self.setting("marker_diameter"))))
        if "result" in pubs:
            pubs["result"].publish(out.result_msg(o, mask))
        pubs["json"].publish(out.json_msg(o))
        r = o.result
        what = f"{quote(o.expression, 60)}: {o.status}"
        if o.source != "grounding":  # mode track: one line per frame would flood the log
            self.get_logger().debug(f"{what} ({o.source}, object score {o.object_score})")
            return
        if o.found:
            c = f"({r.centroid[0]:.0f}, {r.centroid[1]:.0f})" if r.centroid is not None else "-"
            p3 = (f", 3-D ({point.x:.3f}, {point.y:.3f}, {point.z:.3f}) m from {point.n_points} points"
                  if point is not None else (f", no 3-D: {o.depth_message}" if o.depth_message else ""))
            self.get_logger().info(f"{what} confidence={o.confidence:.3f} area={int(r.mask.sum())} px centroid "
                                   f"{c}{p3}, model {o.processing_time * 1000:.0f} ms, latency "
                                   f"{o.latency * 1000:.0f} ms")
        elif o.status in (out.NOT_FOUND, out.LOW_CONFIDENCE):
            self.get_logger().info(f"{what} ({o.message}), model {o.processing_time * 1000:.0f} ms")
        else:
            self.log.warning("result." + o.status, f"{what}: {quote(o.message, 300)}")

    # ------------------------------------------------------------------------------ service
    def _on_segment_srv(self, request, response):
        response.success = False
        try:
            proc = self.processor
            if proc is None or self.lifecycle_state != "active":
                response.message = f"node is not active ({self.lifecycle_state})"
                return response
            expression = request.expression if isinstance(request.expression, str) else ""
            expression = " ".join(expression[:MAX_EXPRESSION_CHARS].split())
            if not expression:
                response.message = "empty expression"
                return response
            depth = intr = None
            if request.image.width > 0 and request.image.height > 0:
                try:
                    rgb = to_rgb8(msg_to_numpy(request.image), request.image.encoding)
                except ImageConversionError as exc:
                    response.message = f"invalid image: {exc}"
                    return response
                frame = Frame(request.image.header, rgb, stamp_ns(request.image.header), -1, self._now_ns())
                if request.depth.width > 0 and request.depth.height > 0:
                    try:
                        d = depth_to_metres(msg_to_numpy(request.depth), request.depth.encoding,
                                            self.setting("depth_scale"), self.setting("min_depth"),
                                            self.setting("max_depth"))
                        intr = PinholeIntrinsics.from_camera_info(request.camera_info)
                    except (ImageConversionError, ValueError) as exc:
                        response.message = f"invalid depth/camera_info: {exc}"
                        return response
                    depth = DepthFrame(request.depth.header, d, stamp_ns(request.depth.header))
            else:
                frame = self.scheduler.frame
                if frame is None:
                    response.message = "no image received yet on " + self.resolve_topic_name("image")
                    return response
                max_age = float(self.setting("max_frame_age"))
                age = frame.age_s(self._now_ns())
                if max_age > 0 and age > max_age:
                    response.message = (f"the newest image on {self.resolve_topic_name('image')} is {age:.1f} s "
                                        f"old (max_frame_age {max_age:g} s)")
                    return response
                if self.setting("use_depth"):
                    depth, intr = self.depth_sync.match(frame.stamp_ns, float(self.setting("sync_slop")))
            o = proc.run(frame, expression, depth, intr, int(self.scheduler.counts["dropped"]))
            self.stats.result(o.status, o.latency, o.processing_time)
            response.result = out.result_msg(o)
            response.success = o.status in (out.OK, out.NOT_FOUND, out.LOW_CONFIDENCE)
            response.message = o.status if not o.message else f"{o.status}: {o.message}"
        except Exception as exc:  # never let a request take the node down
            response.success = False
            response.message = f"internal error: {type(exc).__name__}: {exc}"
            self.log.error("service", response.message)
        return response

    # ------------------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        try:
            proc = self.processor
            models = getattr(getattr(proc, "segmenter", None), "models", None)
            model = self.setting("model")
            if models is not None:
                proposer = models.sam_id or self.setting("proposals_model")
                model = f"{self.setting('model')} ({models.vlm_id} + {proposer})"
            status = diagnostic_status(
                f"{self.get_fully_qualified_name()}: referring segmentation",
                state=self.lifecycle_state, model=model,
                device=str(getattr(models, "device", self.setting("device"))), mode=self.setting("mode"),
                expression=self.scheduler.active_expression, model_loaded=proc is not None,
                configure_error=self.configure_error, stats=self.stats)
            for key, value in self.scheduler.counts.items():
                status.values.append(KeyValue(key="scheduler." + key, value=str(value)))
            self._diag_pub.publish(diagnostics_msg(status, self.get_clock().now().to_msg()))
        except Exception as exc:
            self.log.warning("diagnostics", f"diagnostics failed: {type(exc).__name__}: {exc}")


def _log_fatal(msg: str) -> None:
    rclpy.logging.get_logger("iterprime").fatal(msg)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = IterPrimeNode()
        except StartupError as exc:
            _log_fatal(f"cannot start: {exc}")
            return 1
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        if node.setting("autostart"):
            node.autostarting = True
            if node.trigger_configure() != SUCCESS:
                _log_fatal(node.configure_error or "configure failed")
                return 1
            node.autostarting = False
            if node.trigger_activate() != SUCCESS:
                _log_fatal("activate failed")
                return 1
        else:
            node.get_logger().info("ready: unconfigured (autostart:=false); waiting for lifecycle transitions")
        while rclpy.ok() and not node.finalized:
            try:
                executor.spin_once(timeout_sec=0.5)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as exc:  # a failing callback (e.g. a malformed parameter request) never ends the node
                node.stats.error(f"{type(exc).__name__}: {exc}")
                node.log.error("callback", f"a callback failed and was skipped: {type(exc).__name__}: "
                                           f"{quote(str(exc), 300)}")
    except KeyboardInterrupt:
        pass
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)  # no callback may run on a destroyed node
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
