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

    subscribes  image (or image/compressed), referring_expression, depth (or depth/compressedDepth), camera_info
    publishes   ~/mask ~/mask/compressed ~/overlay ~/centroid ~/markers ~/result ~/result_json, /diagnostics
    service     ~/segment

This module holds only the lifecycle transitions and the wiring between the rooms of
``ros2_iterprime.ros``: ``parameters`` (declaration and validation), ``model_loading``,
``sensor_input`` / ``expression_input`` (subscriptions), ``inputs`` (frames, depth sync, expression
ordering), ``worker`` (newest-frame scheduling), ``processing`` / ``track`` (the model call and its
failure modes), ``publishers`` / ``outputs`` (messages), ``service`` (``~/segment``), ``diagnostics``,
``tf`` and ``log``. The executable's ``main`` is in ``entry``.
"""
from __future__ import annotations

import gc
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import Header

from . import outputs as out
from .diagnostics import NodeStats, diagnostics_msg, node_status
from .distro import startup_report
from .expression_input import ExpressionInput
from .inputs import DepthSync
from .log import CauseThrottle, quote, route_library_logs
from .model_loading import load_error_text, load_segmenter_for, load_tracker_for
from .parameters import PARAMETERS, StartupError, check_value, cross_check, is_builtin
from .processing import Processor, free_accelerator_memory
from .publishers import OutputPublishers
from .sensor_input import SensorInput
from .service import RequestGate, answer_segment_request
from .tf import TargetFrameLookup
from .track import TrackRunner
from .worker import Job, Scheduler, Worker

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
        head, differences = startup_report()  # what works differently on this distribution (ros/distro.py)
        self.get_logger().info(head)
        for line in differences:
            self.get_logger().warning(line)
        self.stats = NodeStats()
        self.scheduler = Scheduler(self.setting, self.now_ns)
        self.depth_sync = DepthSync()
        self.sensors = SensorInput(self, self.scheduler, self.depth_sync, self.stats, self.log, self.setting)
        self.output_topics = OutputPublishers(self, self.setting, self.stats, self.log)
        self.expressions = ExpressionInput(self, self.scheduler, self.stats, self.log,
                                           lambda: self.output_topics.clear_markers(self._failure_header()))
        self._injected = segmenter
        self.processor: Processor | None = None
        self.track: TrackRunner | None = None
        self.lifecycle_state = "unconfigured"
        self.configure_error: str | None = None
        self.autostarting = False
        self.finalized = False
        self._subs: list = []
        self._srv = None
        self._worker: Worker | None = None
        self._tf: TargetFrameLookup | None = None
        self._warned: set[str] = set()
        self.segment_gate = RequestGate()  # ~/segment calls in flight (deactivation waits for them)
        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._tf_group = ReentrantCallbackGroup()
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

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.configure_error = None
        try:
            segmenter = (self._injected if self._injected is not None
                         else load_segmenter_for(self.setting, self.get_logger()))
        except Exception as exc:
            self.configure_error = load_error_text(exc)
            if not self.autostarting:
                self.get_logger().error(self.configure_error)
            return FAILURE
        if self.setting("target_frame") and not TargetFrameLookup.importable():
            self.get_logger().warning(f"target_frame {quote(self.setting('target_frame'))} is set but "
                                      f"{TargetFrameLookup.MISSING}: 3-D outputs stay in the camera frame")
        self.processor = Processor(segmenter, self.setting, self.now_ns, self._lookup_target_frame)
        self.processor.warn = self._warn_once
        self.track = TrackRunner(self.processor, self.setting, lambda: load_tracker_for(self.setting, self.get_logger()))
        if self.setting("mode") == "track":
            try:
                self.track.ensure_loaded()
            except Exception as exc:
                self.configure_error = load_error_text(exc, "tracker")
                if not self.autostarting:
                    self.get_logger().error(self.configure_error)
                self._release_model()
                return FAILURE
        self.output_topics.create(bool(self.setting("use_depth")))
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
        if self.setting("use_depth") and TargetFrameLookup.importable():
            # from activation, not at the first lookup: a target_frame set at run time finds the history
            # at image stamps that precede it (docs/ros.md, "Timing")
            self._tf = TargetFrameLookup(self, cache_time_s=float(self.setting("tf_cache_time")),
                                         callback_group=self._tf_group)
        self._subs = self.sensors.subscribe(img_qos, self._inputs_group, bool(self.setting("use_depth")))
        self.expressions.subscribe(self._inputs_group)
        self.segment_gate.open()
        if out.SegmentSrv is not None:
            self._srv = self.create_service(out.SegmentSrv, "~/segment",
                                            lambda req, res: answer_segment_request(self, req, res),
                                            callback_group=self._srv_group)
        self._worker = Worker(self.scheduler, self._run_job, self._on_worker_error)
        self._worker.start()
        self.lifecycle_state = "active"
        self.get_logger().info(
            f"ready: active, mode={self.setting('mode')}, image QoS={name}, image topic "
            f"{self.sensors.image_topic} ({self.setting('image_transport')})"
            + (f", depth {self.sensors.depth_topic} ({self.setting('depth_transport')})"
               if self.setting("use_depth") else "")
            + f", expressions on {self.resolve_topic_name('referring_expression')}")
        return SUCCESS

    def _stop_processing(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self.expressions.unsubscribe()  # after re-activation a latched expression is served again
        # a ~/segment call in progress is answered before its service goes (never destroyed under it)
        if not self.segment_gate.close(timeout=300.0):
            self.get_logger().warning("a ~/segment call is still running; its service is left to node destruction")
        elif self._srv is not None:
            self.destroy_service(self._srv)
            self._srv = None
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        self.scheduler.reset()
        self.depth_sync.clear()
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
        """Transform to ``target_frame`` at the image stamp (worker thread; bounded by tf_timeout).

        Never creates a listener: that happens at activation only (a lookup during deactivation or on an
        unconfigured node gets a reason instead)."""
        lookup = self._tf
        if lookup is None:
            reason = (TargetFrameLookup.MISSING if not TargetFrameLookup.importable()
                      else f"no TF listener (node is {self.lifecycle_state})")
            self.log.warning("tf", f"3-D outputs not given in {quote(target_frame)}: {reason}")
            return None, reason
        tf, reason = lookup.lookup(target_frame, header, float(self.setting("tf_timeout")))
        if tf is None:
            self.log.warning("tf", f"3-D outputs not given in {quote(target_frame)}: {reason}")
        return tf, reason

    def _warn_once(self, cause: str, text: str) -> None:
        """A condition of the inputs (camera model, unregistered depth): logged once, kept in /diagnostics."""
        self.stats.note(cause, text)
        if text not in self._warned:
            self._warned.add(text)
            self.get_logger().warning(text)

    def _release_model(self) -> None:
        self.output_topics.destroy()
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
            # depth is paired AFTER the model: the claim collects the candidates arriving meanwhile
            depth = (self.depth_sync.claim(job.frame.stamp_ns, job.frame.received_ns, float(self.setting("sync_slop")))
                     if self.setting("use_depth") else None)
            try:
                if self.setting("mode") == "track" and self.track is not None:
                    outcome = self.track.run(job.frame, job.expression, job.trigger, depth, dropped)
                else:
                    if self.track is not None and self.track.loaded:
                        self.track.stop()  # mode changed away from track: end the track (worker thread)
                    outcome = proc.run(job.frame, job.expression, depth, dropped)
            finally:
                if depth is not None:
                    depth.release()
        if not self.scheduler.is_current(job):
            self.get_logger().debug("result of a superseded expression discarded")
            return
        self.output_topics.publish(outcome, job.frame)

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok():  # shutting down (Ctrl-C): publishing fails by design, nothing to report
            return
        self.stats.error(f"{type(exc).__name__}: {exc}")
        self.log.error("worker", f"unexpected error while processing a frame: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        try:
            self._diag_pub.publish(diagnostics_msg(node_status(self), self.get_clock().now().to_msg()))
        except Exception as exc:
            self.log.warning("diagnostics", f"diagnostics failed: {type(exc).__name__}: {exc}")
