"""sensor_msgs/Image <-> numpy for the node: :mod:`ros2_iterprime.messages.image` (shared with the bag
replay, which imports no ROS), with rclpy's ``sensor_msgs/Image`` as :func:`numpy_to_msg`'s default class."""
from __future__ import annotations

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
