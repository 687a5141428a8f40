"""The node's output topics: created at configure, one publication set per :class:`~.outputs.Outcome`.

    ~/mask ~/mask/compressed ~/overlay ~/centroid ~/pose ~/markers ~/result_json, ~/points (use_depth),
    ~/result (interfaces)

Messages are built by :mod:`.outputs`; this module decides which are sent (the overlay only when
somebody listens, ~/mask/compressed (PNG, for remote viewers) likewise, the centroid and pose only for a
found target with 3-D) and writes the one log line
per answered expression (tracked frames log at debug level: one line per frame would flood the log).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from . import outputs as out
from .diagnostics import NodeStats
from .image import compressed_msg, msg_to_numpy
from .inputs import Frame
from .log import CauseThrottle, quote

__all__ = ["OutputPublishers"]


class OutputPublishers:
    """Lifecycle publishers of one configured node.

    Args:
        node: the rclpy LifecycleNode.
        setting: callable name -> current parameter value (publish_overlay, marker_diameter).
        stats, log: counters for /diagnostics and the throttled logger.
    """

    def __init__(self, node: Any, setting: Callable[[str], Any], stats: NodeStats, log: CauseThrottle):
        self.node, self.setting, self.stats, self.log = node, setting, stats, log
        self.pubs: dict[str, Any] = {}

    def create(self, use_depth: bool) -> None:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        pub = self.node.create_lifecycle_publisher
        self.pubs = {
            "mask": pub(Image, "~/mask", qos),
            "mask_compressed": pub(CompressedImage, "~/mask/compressed", qos),
            "overlay": pub(Image, "~/overlay", qos),
            "centroid": pub(PointStamped, "~/centroid", qos),
            "pose": pub(PoseStamped, "~/pose", qos),
            "markers": pub(MarkerArray, "~/markers", qos),
            "json": pub(String, "~/result_json", qos),
        }
        if use_depth:
            self.pubs["points"] = pub(PointCloud2, "~/points", qos)
        if out.SegmentationResultMsg is not None:
            self.pubs["result"] = pub(out.SegmentationResultMsg, "~/result", qos)
        else:
            self.node.get_logger().warning(
                "ros2_iterprime_msgs is not installed: ~/result and ~/segment are disabled; the standard "
                "topics (~/mask, ~/centroid, ~/overlay, ~/markers, ~/result_json) work as usual")

    def destroy(self) -> None:
        for p in self.pubs.values():
            self.node.destroy_lifecycle_publisher(p)
        self.pubs = {}

    def clear_markers(self, header) -> None:
        """A DELETEALL on ~/markers (the target was cleared)."""
        pub = self.pubs.get("markers")
        if pub is not None:
            pub.publish(out.markers_msg(out.Outcome(header, "", out.NOT_FOUND)))

    def publish(self, o: out.Outcome, frame: Frame | None) -> None:
        """Count the outcome, publish every output topic, and log it."""
        self.stats.result(o.status, o.latency, o.processing_time)
        if o.status not in (out.OK, out.NOT_FOUND, out.LOW_CONFIDENCE, out.LOST):
            self.stats.error(f"{o.status}: {o.message}")
        pubs = self.pubs
        if not pubs:
            return
        mask = None
        if o.size != (0, 0):
            mask = out.mask_msg(o)
            pubs["mask"].publish(mask)
            if pubs["mask_compressed"].get_subscription_count() > 0:  # PNG only for someone listening
                self._publish_compressed_mask(mask)
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
        self._log(o, point)

    def _publish_compressed_mask(self, mask) -> None:
        """~/mask/compressed: the same mono8 mask as a PNG ("mono8; png compressed "), same header."""
        try:
            self.pubs["mask_compressed"].publish(compressed_msg(msg_to_numpy(mask), "mono8", mask.header))
        except Exception as exc:
            self.log.warning("mask_compressed", f"~/mask/compressed failed: {type(exc).__name__}: {exc}")

    def _log(self, o: out.Outcome, point) -> None:
        logger = self.node.get_logger()
        r = o.result
        what = f"{quote(o.expression, 60)}: {o.status}"
        if o.source != "grounding":  # mode track: one line per frame would flood the log
            logger.debug(f"{what} ({o.source}, object score {o.object_score})")
            return
        if o.found:
            c = f"({r.centroid[0]:.0f}, {r.centroid[1]:.0f})" if r.centroid is not None else "-"
            p3 = (f", 3-D ({point.x:.3f}, {point.y:.3f}, {point.z:.3f}) m from {point.n_points} points"
                  if point is not None else (f", no 3-D: {o.depth_message}" if o.depth_message else ""))
            logger.info(f"{what} confidence={o.confidence:.3f} area={int(r.mask.sum())} px centroid "
                        f"{c}{p3}, model {o.processing_time * 1000:.0f} ms, latency {o.latency * 1000:.0f} ms")
        elif o.status in (out.NOT_FOUND, out.LOW_CONFIDENCE):
            logger.info(f"{what} ({o.message}), model {o.processing_time * 1000:.0f} ms")
        else:
            self.log.warning("result." + o.status, f"{what}: {quote(o.message, 300)}")
