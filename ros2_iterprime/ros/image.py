"""sensor_msgs/Image <-> numpy for the node: :mod:`ros2_iterprime.messages.image` (shared with the bag
replay, which imports no ROS), with rclpy's ``sensor_msgs/Image`` as :func:`numpy_to_msg`'s default class."""
from __future__ import annotations

import array
from typing import Any

import numpy as np

from ..messages.image import (  # noqa: F401 (re-exported for the node's modules)
    DEPTH_ENCODINGS,
    ENCODINGS,
    MAX_PIXELS,
    ImageConversionError,
    depth_to_metres,
    image_to_numpy,
    msg_to_numpy,
    numpy_to_fields,
    to_rgb8,
)
from ..messages.image import numpy_to_msg as _numpy_to_msg


def numpy_to_msg(array_: np.ndarray, encoding: str, header: Any = None, msg_cls: Any = None):
    """numpy -> sensor_msgs/Image (rclpy's class unless ``msg_cls`` is given)."""
    if msg_cls is None:
        from sensor_msgs.msg import Image as msg_cls  # noqa: N813
    return _numpy_to_msg(array_, encoding, header, msg_cls)


def compressed_msg(array_: np.ndarray, encoding: str, header: Any = None, codec: str = "png",
                   msg_cls: Any = None):
    """numpy -> sensor_msgs/CompressedImage as image_transport's compressed publisher writes it.

    ``format`` is compressed_image_transport's (e.g. ``"mono8; png compressed "``); the payload is a PNG
    (level 3) or JPEG (quality 95) file made by :func:`ros2_iterprime.messages.compressed.encode_compressed`.
    Imports sensor_msgs lazily unless ``msg_cls`` is given.
    """
    from ..messages.compressed import compressed_format, encode_compressed

    if msg_cls is None:
        from sensor_msgs.msg import CompressedImage as msg_cls  # noqa: N813 (lazy ROS import)
    if encoding not in ("mono8", "rgb8", "mono16"):
        raise ImageConversionError(f"compressed output supports mono8, mono16 and rgb8, not {encoding!r}")
    msg = msg_cls()
    msg.format = compressed_format(encoding, codec)
    data = array.array("B")
    data.frombytes(encode_compressed(np.asarray(array_), codec))
    msg.data = data
    if header is not None:
        msg.header = header
    return msg
