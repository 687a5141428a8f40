"""``ros2_iterprime bag``: replay a recorded rosbag2 offline and write the node's outputs into a new one.

    ros2_iterprime bag IN -o OUT --expression "the red cup" [--track] [--image-topic /camera/color/image_raw
        --depth-topic /camera/aligned_depth_to_color/image_raw --camera-info-topic /camera/color/camera_info]
        [--target-frame base_link] [--model tiny-random]

Reads IN (rosbag2, MCAP or sqlite3) with the `rosbags` library: no ROS install needed. OUT is written
under a temporary name and appears only when complete. See ros2_iterprime/replay/run.py for the rules
and docs/ros.md ("Replaying a recording").
"""
from __future__ import annotations

import argparse
import logging
import sys

from .common import add_method_args, add_model_args, config_from_args, segmenter_from_args, subcommand

LOG = logging.getLogger("ros2_iterprime")


@subcommand("bag", help="replay a rosbag2 offline: ground (or track) an expression, write the node's outputs")
def add_bag_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="the recording: a rosbag2 folder (MCAP or sqlite3)")
    p.add_argument("-o", "--output", required=True, help="the new rosbag2 folder to write (must not exist)")
    p.add_argument("--expression", required=True, help="the referring expression, e.g. 'the red cup'")
    p.add_argument("--track", action="store_true", help="ground once, then follow the object (mode track)")
    t = p.add_argument_group("topics (the node's remappable names, resolved in the root namespace)")
    t.add_argument("--image-topic", default="/image")
    t.add_argument("--depth-topic", default="/depth")
    t.add_argument("--camera-info-topic", default="/camera_info")
    t.add_argument("--no-depth", action="store_true", help="no 3-D outputs (no depth / CameraInfo needed)")
    t.add_argument("--tf-topic", default="/tf")
    t.add_argument("--tf-static-topic", default="/tf_static")
    t.add_argument("--namespace", default="/iterprime", help="prefix of the output topics (default /iterprime)")
    r = p.add_argument_group("replay")
    r.add_argument("--target-frame", default="", help="also give the 3-D outputs in this frame (recorded TF)")
    r.add_argument("--sync-slop", type=float, default=0.05, help="max colour/depth stamp difference (s)")
    r.add_argument("--rate", type=float, default=0.0, help="at most this many frames per recorded second (0 = all)")
    r.add_argument("--min-confidence", type=float, default=0.0)
    r.add_argument("--images-rectified", action="store_true", help="no warning for a CameraInfo with D != 0 or K != P")
    r.add_argument("--depth-scale", type=float, default=0.001, help="metres per 16UC1 unit")
    r.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="storage of OUT")
    k = p.add_argument_group("tracking (--track)")
    k.add_argument("--tracker", default="", help="SAM 2.1 / EdgeTAM id or dir ('' = by --model)")
    k.add_argument("--lost-frames", type=int, default=15)
    k.add_argument("--lost-seconds", type=float, default=0.5)
    k.add_argument("--reground-period", type=float, default=30.0, help="s of recorded time; 0 = never")
    k.add_argument("--reground-period-frames", type=int, default=0)
    k.add_argument("--lost-threshold", type=float, default=0.0)
    add_model_args(p)
    add_method_args(p)
    p.set_defaults(func=cmd_bag)


def cmd_bag(args) -> int:
    from tqdm import tqdm

    from ..replay.run import ReplayConfig, replay_bag

    cfg = ReplayConfig(
        expression=args.expression, track=args.track, image_topic=args.image_topic, depth_topic=args.depth_topic,
        camera_info_topic=args.camera_info_topic, use_depth=not args.no_depth, tf_topic=args.tf_topic,
        tf_static_topic=args.tf_static_topic, namespace=args.namespace, target_frame=args.target_frame,
        sync_slop=args.sync_slop, rate_hz=args.rate, min_confidence=args.min_confidence,
        images_rectified=args.images_rectified, depth_scale=args.depth_scale, storage=args.storage,
        lost_threshold=args.lost_threshold, lost_frames=args.lost_frames, lost_seconds=args.lost_seconds,
        reground_period=args.reground_period, reground_period_frames=args.reground_period_frames)
    from ..replay.run import bag_topics

    bag_topics(args.input)  # a missing / unreadable bag is reported before the models load
    seg = segmenter_from_args(args, config_from_args(args))
    tracker = None
    if args.track:
        from ..models.trackers import load_tracker
        from ..tracking.tracker import tracker_id

        tracker = load_tracker(tracker_id(args.tracker, args.model), device=args.device,
                               local_files_only=True if args.local_files_only else None)
    bar = tqdm(total=0, unit="frame", desc="replay", disable=None)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        s = replay_bag(args.input, args.output, cfg, seg, tracker, progress)
    finally:
        bar.close()
    for note in s.notes:
        LOG.warning(note)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(s.statuses.items()))
    print(f"wrote {args.output}: {s.processed} of {s.frames} frames ({statuses}), {s.with_3d} with 3-D, "
          f"in {s.seconds:.1f} s; topics: " + ", ".join(f"{t} ({n})" for t, n in sorted(s.written.items())),
          file=sys.stderr)
    return 0
