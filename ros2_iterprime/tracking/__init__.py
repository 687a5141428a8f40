"""Ground once with IteRPrimE, then follow the object at camera rate (SAM 2.1 / EdgeTAM tracking).

    from ros2_iterprime.predictor import load_segmenter
    from ros2_iterprime.tracking import ReferringTracker, RegroundPolicy, load_tracker

    tracker = ReferringTracker(load_segmenter("default"), load_tracker("facebook/sam2.1-hiera-tiny"),
                               RegroundPolicy(lost_threshold=0.0, lost_frames=15, reground_period=30.0))
    tracker.start(frame, "the red cup behind the laptop")   # -> TrackResult (source 'grounding')
    result = tracker.update(next_frame)                      # -> TrackResult (source 'tracking')

Modules: `preprocess` (the SAM 2 processors' resize/normalise and mask geometry without torchvision),
`models` (tracker checkpoints, tiny and full-size random configs), `session` (streaming inference
with a bounded memory bank), `policy` (when to re-ground), `tracker` (`ReferringTracker`).
No ROS import; importing this package does not import torch until a name is used.
"""
from __future__ import annotations

_EXPORTS = {
    "ReferringTracker": "tracker",
    "TrackResult": "tracker",
    "NotTrackingError": "tracker",
    "RegroundPolicy": "policy",
    "RegroundSettings": "policy",
    "StreamingSession": "session",
    "FrameOutput": "session",
    "TrackerModel": "models",
    "load_tracker": "models",
    "build_tiny_tracker": "models",
    "build_random_tracker": "models",
    "published_config": "models",
    "KNOWN_TRACKERS": "models",
    "DEFAULT_TRACKER": "models",
    "TINY_TRACKERS": "models",
    "FrameGeometry": "preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
