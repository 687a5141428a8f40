"""ros2_iterprime: zero-shot referring image segmentation (IteRPrimE, AAAI 2025) for robots.

The core is a plain Python library (no ROS import):

    from ros2_iterprime import ReferringSegmenter
    seg = ReferringSegmenter.from_pretrained()          # BLIP ITM base + SAM ViT-B
    seg.set_image(image)                                # PIL image or HxWx3 uint8 RGB
    result = seg.segment("the red cup behind the laptop")

The ROS 2 node (`ros2_iterprime.node`) is a thin adapter over it.
"""
from .errors import InvalidInputError, IterPrimeError, ModelNotFoundError, NoImageError
from .results import SegmentationResult

__version__ = "0.1.0"

__all__ = [
    "InvalidInputError",
    "IterPrimeError",
    "ModelNotFoundError",
    "NoImageError",
    "ReferringSegmenter",
    "SegmenterConfig",
    "SegmentationResult",
    "load_segmenter",
]


def __getattr__(name):  # lazy: importing the package must not import torch/transformers
    if name in ("ReferringSegmenter", "SegmenterConfig", "load_segmenter"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
