"""Ground once with IteRPrimE, then follow the object at camera rate (SAM 2.1 / EdgeTAM tracking).

    from ros2_iterprime.grounding.segmenter import load_segmenter
    from ros2_iterprime.tracking import ReferringTracker, RegroundPolicy, load_tracker

    tracker = ReferringTracker(load_segmenter("default"), load_tracker("facebook/sam2.1-hiera-tiny"),
                               RegroundPolicy(lost_threshold=0.0, lost_frames=15, reground_period=30.0))
    tracker.start(frame, "the red cup behind the laptop")   # -> TrackResult (source 'grounding')
    result = tracker.update(next_frame)                      # -> TrackResult (source 'tracking')

Owns the tracking loop: `session` (transformers' streaming inference with a bounded memory bank),
`policy` (when to re-ground) and `tracker` (`ReferringTracker`: ground with IteRPrimE, seed the session,
follow). It may import the grounding method (`..grounding`), model loading (`..models`: the tracker
checkpoints and their SAM 2 preprocessing live there, shared with the SAM 2.1 proposal backend) and the
root helpers; never ROS, the CLI, the benchmark or evaluation. The model names below are re-exported
from `..models.trackers` for convenience. No ROS import; importing this package does not import torch
until a name is used.
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
    "TrackerModel": "..models.trackers",
    "load_tracker": "..models.trackers",
    "build_tiny_tracker": "..models.trackers",
    "build_random_tracker": "..models.trackers",
    "published_config": "..models.trackers",
    "KNOWN_TRACKERS": "..models.trackers",
    "DEFAULT_TRACKER": "..models.trackers",
    "TINY_TRACKERS": "..models.trackers",
    "FrameGeometry": "..models.sam2_preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        where = _EXPORTS[name]
        module = importlib.import_module(where if where.startswith(".") else "." + where, __name__)
        return getattr(module, name)
    raise AttributeError(name)
