"""Camera input of the node: the ``image``, ``depth`` and ``camera_info`` subscriptions.

Each message is decoded here (``image``: sensor_msgs/Image -> (H, W, 3) uint8; ``depth``: 16UC1 mm or
32FC1 m -> metres with implausible values refused; ``camera_info``: validated intrinsics) and handed to
the scheduler (newest colour frame) or the depth matcher. A message that cannot be used is counted and
logged (throttled per cause) and the node goes on: no callback here ever raises.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sensor_msgs.msg import CameraInfo, Image

from ..geometry.camera import PinholeIntrinsics
from .diagnostics import NodeStats
from .image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8
from .inputs import DepthFrame, DepthSync, stamp_ns
from .log import CauseThrottle
from .worker import Scheduler

__all__ = ["SensorInput"]


class SensorInput:
    """Subscribes to the camera topics while the node is active and feeds the scheduler and depth matcher.

    Args:
        node: the rclpy node (subscriptions, topic names).
        scheduler: receives every decoded colour frame (only the newest is kept).
        depth_sync: receives decoded depth images and CameraInfos.
        stats, log: counters for /diagnostics and the per-cause throttled logger.
        setting: callable name -> current parameter value (depth_scale, min_depth, max_depth).
    """

    def __init__(self, node: Any, scheduler: Scheduler, depth_sync: DepthSync, stats: NodeStats,
                 log: CauseThrottle, setting: Callable[[str], Any]):
        self.node, self.scheduler, self.depth_sync = node, scheduler, depth_sync
        self.stats, self.log, self.setting = stats, log, setting

    def subscribe(self, qos, group, use_depth: bool) -> list:
        """Create the subscriptions (activation); returns them for the node to destroy on deactivation."""
        node = self.node
        subs = [node.create_subscription(Image, "image", self.on_image, qos, callback_group=group)]
        if use_depth:
            subs += [node.create_subscription(Image, "depth", self.on_depth, qos, callback_group=group),
                     node.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos,
                                              callback_group=group)]
        return subs

    def on_image(self, msg: Image) -> None:
        self.stats.image()
        try:
            rgb = to_rgb8(msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self.stats.count("invalid_images")
            self.log.warning("invalid_image", f"skipping image on {self.node.resolve_topic_name('image')}: {exc}")
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

    def on_depth(self, msg: Image) -> None:
        s = self.setting
        try:
            depth = depth_to_metres(msg_to_numpy(msg), msg.encoding, s("depth_scale"), s("min_depth"), s("max_depth"))
        except Exception as exc:
            self.stats.count("invalid_depth")
            self.log.warning("invalid_depth",
                             f"skipping depth image on {self.node.resolve_topic_name('depth')}: {exc}")
            return
        self.depth_sync.add_depth(DepthFrame(msg.header, depth, stamp_ns(msg.header), self.node.now_ns()))

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = PinholeIntrinsics.from_camera_info(msg)
        except Exception as exc:
            self.stats.count("invalid_camera_info")
            self.log.warning("invalid_camera_info",
                             f"skipping camera_info on {self.node.resolve_topic_name('camera_info')}: {exc}")
            return
        self.depth_sync.add_info(stamp_ns(msg.header), intr, self.node.now_ns())
