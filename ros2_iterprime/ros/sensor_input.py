"""Camera input of the node: the ``image``, ``depth`` and ``camera_info`` subscriptions, raw or compressed.

Each message is decoded here (``image``: sensor_msgs/Image -> (H, W, 3) uint8; ``depth``: 16UC1 mm or
32FC1 m -> metres with implausible values refused; ``camera_info``: validated intrinsics) and handed to
the scheduler (newest colour frame) or the depth matcher. A message that cannot be used is counted and
logged (throttled per cause) and the node goes on: no callback here ever raises.

Transports (parameters ``image_transport`` / ``depth_transport``), as image_transport names them: the
base topic is resolved first (remappings, namespace), then the transport's suffix is appended, so
``-r image:=/camera/color/image_raw -p image_transport:=compressed`` subscribes to
``/camera/color/image_raw/compressed`` (sensor_msgs/CompressedImage, JPEG or PNG) and
``depth_transport:=compressedDepth`` to ``<depth>/compressedDepth``; same QoS as the raw topics. The
payloads are decoded by :mod:`ros2_iterprime.messages.compressed` (size checked from the header before
decoding); the header (stamp, frame_id) of the compressed message is the frame's header.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..geometry.camera import PinholeIntrinsics
from ..messages.compressed import CompressedImageError, decode_compressed, decode_compressed_depth
from .diagnostics import NodeStats
from .image import ImageConversionError, depth_to_metres, msg_to_numpy, to_rgb8
from .inputs import DepthFrame, DepthSync, stamp_ns
from .log import CauseThrottle
from .worker import Scheduler

__all__ = ["SensorInput", "transport_topic"]

#: image_transport's topic suffix per transport ('raw' has none).
SUFFIX = {"raw": "", "compressed": "/compressed", "compressedDepth": "/compressedDepth"}


def transport_topic(resolved_base: str, transport: str) -> str:
    """``/camera/image_raw`` + 'compressed' -> ``/camera/image_raw/compressed`` (image_transport's rule)."""
    return resolved_base.rstrip("/") + SUFFIX[transport]


class SensorInput:
    """Subscribes to the camera topics while the node is active and feeds the scheduler and depth matcher.

    Args:
        node: the rclpy node (subscriptions, topic names).
        scheduler: receives every decoded colour frame (only the newest is kept).
        depth_sync: receives decoded depth images and CameraInfos.
        stats, log: counters for /diagnostics and the per-cause throttled logger.
        setting: callable name -> current parameter value (image_transport, depth_transport, depth_scale,
            min_depth, max_depth).
    """

    def __init__(self, node: Any, scheduler: Scheduler, depth_sync: DepthSync, stats: NodeStats,
                 log: CauseThrottle, setting: Callable[[str], Any]):
        self.node, self.scheduler, self.depth_sync = node, scheduler, depth_sync
        self.stats, self.log, self.setting = stats, log, setting
        self.image_topic = self.depth_topic = ""

    def topic(self, base: str, transport: str) -> str:
        """The absolute topic of ``base`` ('image', 'depth') for ``transport``."""
        return transport_topic(self.node.resolve_topic_name(base), transport)

    def subscribe(self, qos, group, use_depth: bool) -> list:
        """Create the subscriptions (activation); returns them for the node to destroy on deactivation."""
        node = self.node
        image_transport = self.setting("image_transport")
        self.image_topic = self.topic("image", image_transport)
        if image_transport == "compressed":
            subs = [node.create_subscription(CompressedImage, self.image_topic, self.on_compressed_image, qos,
                                             callback_group=group)]
        else:
            subs = [node.create_subscription(Image, "image", self.on_image, qos, callback_group=group)]
        if use_depth:
            depth_transport = self.setting("depth_transport")
            self.depth_topic = self.topic("depth", depth_transport)
            if depth_transport == "compressedDepth":
                subs.append(node.create_subscription(CompressedImage, self.depth_topic, self.on_compressed_depth,
                                                     qos, callback_group=group))
            else:
                subs.append(node.create_subscription(Image, "depth", self.on_depth, qos, callback_group=group))
            subs.append(node.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos,
                                                 callback_group=group))
        return subs

    # ------------------------------------------------------------------------------ colour
    def on_image(self, msg: Image) -> None:
        self.stats.image()
        try:
            rgb = to_rgb8(msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self._invalid_image(f"skipping image on {self.image_topic}: {exc}")
            return
        except Exception as exc:  # never die on a message
            self._invalid_image(f"skipping image: unexpected {type(exc).__name__}: {exc}")
            return
        self._frame(msg.header, rgb)

    def on_compressed_image(self, msg: CompressedImage) -> None:
        self.stats.image()
        try:
            decoded = decode_compressed(msg.data, msg.format)
            rgb = to_rgb8(decoded.array, decoded.encoding)
        except (CompressedImageError, ImageConversionError) as exc:
            self._invalid_image(f"skipping compressed image on {self.image_topic}: {exc}")
            return
        except Exception as exc:  # never die on a message
            self._invalid_image(f"skipping compressed image: unexpected {type(exc).__name__}: {exc}")
            return
        self._frame(msg.header, rgb)

    def _invalid_image(self, reason: str) -> None:
        self.stats.count("invalid_images")
        self.log.warning("invalid_image", reason)

    def _frame(self, header, rgb) -> None:
        replaced = self.scheduler.put_frame(header, rgb, stamp_ns(header))
        if replaced is not None:
            self.stats.count(replaced)
        if replaced == "dropped":
            self.log.warning("dropped", f"dropped {self.scheduler.counts['dropped']} frame(s) so far: the model "
                                        f"is slower than the image stream (only the newest frame is processed)")

    # ------------------------------------------------------------------------------ depth
    def on_depth(self, msg: Image) -> None:
        try:
            array, encoding = msg_to_numpy(msg), msg.encoding
        except Exception as exc:
            self._invalid_depth(f"skipping depth image on {self.depth_topic}: {exc}")
            return
        self._depth(msg.header, array, encoding)

    def on_compressed_depth(self, msg: CompressedImage) -> None:
        try:
            decoded = decode_compressed_depth(msg.data, msg.format)
        except Exception as exc:  # CompressedImageError, or anything unexpected: never die on a message
            self._invalid_depth(f"skipping compressedDepth image on {self.depth_topic}: {exc}")
            return
        self._depth(msg.header, decoded.array, decoded.encoding)

    def _depth(self, header, array, encoding: str) -> None:
        s = self.setting
        try:
            depth = depth_to_metres(array, encoding, s("depth_scale"), s("min_depth"), s("max_depth"))
        except Exception as exc:
            self._invalid_depth(f"skipping depth image on {self.depth_topic}: {exc}")
            return
        self.depth_sync.add_depth(DepthFrame(header, depth, stamp_ns(header), self.node.now_ns()))

    def _invalid_depth(self, reason: str) -> None:
        self.stats.count("invalid_depth")
        self.log.warning("invalid_depth", reason)

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = PinholeIntrinsics.from_camera_info(msg)
        except Exception as exc:
            self.stats.count("invalid_camera_info")
            self.log.warning("invalid_camera_info",
                             f"skipping camera_info on {self.node.resolve_topic_name('camera_info')}: {exc}")
            return
        self.depth_sync.add_info(stamp_ns(msg.header), intr, self.node.now_ns())
