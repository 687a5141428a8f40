"""ros2_iterprime: zero-shot referring image segmentation (IteRPrimE, AAAI 2025) for robots.

The core is a plain Python library (no ROS import):

    from ros2_iterprime import load_segmenter
    seg = load_segmenter("default")                     # BLIP ITM base + SAM ViT-B
    seg.set_image(image)                                # PIL image or HxWx3 uint8 RGB
    result = seg.segment("the red cup behind the laptop")

One folder per concern (docs/ARCHITECTURE.md); imports point down this list, never up:

    ros/         the ROS 2 node, a thin adapter                    (top: may import everything below)
    cli/         the `ros2_iterprime` command and its subcommands   (top, beside ros/)
    evaluation/  RefCOCO/+/g and PhraseCut harness                  (beside benchmark/)
    benchmark/   timing of every stage
    tracking/    ground once, then follow the object (SAM 2.1 / EdgeTAM)
    grounding/   the IteRPrimE method: Grad-CAM, PWEM, IGRS, proposals, selection, the segmenter
    geometry/    3-D from depth: camera model, point cloud, oriented box, transforms
    models/      model loading: registry, checkpoints, download, tiny and published configs
    errors, image_io, results, visualize   shared helpers (import nothing above them)

This module is the public facade: the names below are loaded lazily, so ``import ros2_iterprime``
imports neither torch nor transformers.
"""
from .errors import InvalidInputError, IterPrimeError, ModelNotFoundError, NoImageError
from .results import SegmentationResult

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first use)
_LAZY = {
    "ReferringSegmenter": "grounding.segmenter",
    "SegmenterConfig": "grounding.segmenter",
    "load_segmenter": "grounding.segmenter",
    "ReferringTracker": "tracking.tracker",
    "TrackResult": "tracking.tracker",
    "RegroundPolicy": "tracking.policy",
    "load_tracker": "models.trackers",
}

__all__ = [
    "InvalidInputError",
    "IterPrimeError",
    "ModelNotFoundError",
    "NoImageError",
    "SegmentationResult",
    *_LAZY,
]


def __getattr__(name):  # lazy: importing the package must not import torch/transformers
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
