"""Replay a recording: ground (or track) an expression on every recorded colour frame, write the node's outputs.

    summary = replay_bag("in_bag", "out_bag", ReplayConfig(expression="the red box"), segmenter)

Rules, the node's (docs/ros.md, "Timing"), applied with the whole recording in view:

- each colour frame is processed with its **original stamp** and header; the outputs carry that header
  and are written at the colour frame's recorded (log) time, so the output bag lines up with the input;
- its depth image is the one with the colour frame's stamp, else the closest within ``sync_slop`` (the
  newer on ties), wherever it lies in the recording (host-aligned depth is recorded after its colour
  frame); a depth image of another ``frame_id`` than the colour image gives no 3-D, with the reason;
  the CameraInfo is the one closest in time to the depth image;
- ``target_frame`` outputs use the recorded /tf and /tf_static at the image stamp (TF recorded after the
  frame is read before the frame is processed: ``tf_lookahead_s``);
- tracking (``track``) runs the tracker on every processed frame, re-grounding in line (deterministic)
  with the policy's limits in frames and in seconds of recorded time (image stamps).

Outputs (topics under ``namespace``, the node's types): ``mask`` (sensor_msgs/Image), ``result``
(ros2_iterprime_msgs/SegmentationResult, registered from its .msg file), ``result_json``
(std_msgs/String), ``points`` (sensor_msgs/PointCloud2), ``centroid`` (geometry_msgs/PointStamped),
``pose`` (geometry_msgs/PoseStamped) and ``markers`` (visualization_msgs/MarkerArray), built by
``messages.outputs`` exactly as the node builds them. ``latency`` in the results is the processing time
(offline there is no stamp-to-publication delay). Nothing imports rclpy.
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.camera import PinholeIntrinsics
from ..geometry.target import Target3DParams
from ..geometry.tf_buffer import TransformBuffer, TransformLookupError
from ..messages import outputs as mo
from ..messages.image import depth_to_metres
from .bag_io import (
    AtomicBagWriter,
    BagError,
    UnsupportedMessageError,
    decode_image,
    open_typestore,
    rosbags_kit,
    stamp_ns,
    to_rgb,
)

__all__ = ["ReplayConfig", "ReplaySummary", "bag_topics", "replay_bag"]

OUTPUT_TYPES = {
    "mask": "sensor_msgs/msg/Image",
    "result": "ros2_iterprime_msgs/msg/SegmentationResult",
    "result_json": "std_msgs/msg/String",
    "points": "sensor_msgs/msg/PointCloud2",
    "centroid": "geometry_msgs/msg/PointStamped",
    "pose": "geometry_msgs/msg/PoseStamped",
    "markers": "visualization_msgs/msg/MarkerArray",
}


@dataclass
class ReplayConfig:
    """What to replay and how (the node's parameters of the same names where there is one)."""

    expression: str
    track: bool = False
    image_topic: str = "/image"
    depth_topic: str = "/depth"
    camera_info_topic: str = "/camera_info"
    use_depth: bool = True
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    namespace: str = "/iterprime"
    target_frame: str = ""
    sync_slop: float = 0.05
    rate_hz: float = 0.0  # recorded-time cap on processed frames; 0 = every frame
    min_confidence: float = 0.0
    images_rectified: bool = False
    depth_scale: float = 0.001
    target: Target3DParams = field(default_factory=Target3DParams)
    marker_diameter: float = 0.05
    segment_overrides: dict = field(default_factory=dict)
    lost_threshold: float = 0.0
    lost_frames: int = 15
    lost_seconds: float = 0.5
    reground_period: float = 30.0
    reground_period_frames: int = 0
    tf_lookahead_s: float = 0.5
    storage: str = "mcap"


@dataclass
class ReplaySummary:
    frames: int = 0  # colour frames in the recording
    processed: int = 0
    found: int = 0
    with_3d: int = 0
    statuses: dict = field(default_factory=lambda: collections.Counter())
    written: dict = field(default_factory=dict)  # output topic -> messages
    notes: list = field(default_factory=list)
    seconds: float = 0.0


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of a rosbag2 (MCAP or sqlite3)."""
    with _open_reader(path) as reader:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}


@contextlib.contextmanager
def _open_reader(path):
    """An opened rosbags Reader; BagError for a missing or unreadable bag."""
    from rosbags.rosbag2 import Reader

    p = Path(path)
    if not p.exists():
        raise BagError(f"no such bag: {p}")
    try:
        reader = Reader(p)
        reader.open()
    except Exception as exc:  # rosbags' own errors: not a rosbag2, unknown storage, ...
        raise BagError(f"{p} is not a readable rosbag2 (MCAP or sqlite3 with metadata.yaml): "
                       f"{type(exc).__name__}: {exc}") from None
    try:
        yield reader
    finally:
        reader.close()


def _check_topics(found: dict[str, str], cfg: ReplayConfig) -> None:
    need = [("--image-topic", cfg.image_topic)]
    if cfg.use_depth:
        need += [("--depth-topic", cfg.depth_topic), ("--camera-info-topic", cfg.camera_info_topic)]
    if cfg.target_frame:
        if cfg.tf_topic not in found and cfg.tf_static_topic not in found:
            need.append(("--tf-topic", cfg.tf_topic))
    listing = ", ".join(f"{t} [{ty}]" for t, ty in sorted(found.items())) or "none"
    for option, topic in need:
        if topic not in found:
            hint = " (or --no-depth)" if option in ("--depth-topic", "--camera-info-topic") else ""
            raise BagError(f"topic {topic} is not in the bag ({option}{hint}); the bag has: {listing}")


def _pair_depths(colour: list[int], depths: list[int], slop_ns: int) -> dict[int, int]:
    """colour stamp -> depth stamp: exact, else the closest within the slop, the newer on ties."""
    pairs = {}
    for c in colour:
        i = bisect.bisect_left(depths, c)
        cands = [d for d in depths[max(0, i - 1): i + 2] if abs(d - c) <= slop_ns]
        if cands:
            pairs[c] = min(cands, key=lambda d: (abs(d - c), -d))
    return pairs


class _Tracking:
    """The tracker of a replay and the grounding its track was seeded from (the node's TrackRunner rules)."""

    def __init__(self, segmenter, tracker_model, cfg: ReplayConfig):
        from ..tracking import ReferringTracker, RegroundPolicy, RegroundSettings

        policy = RegroundPolicy(RegroundSettings(
            lost_threshold=cfg.lost_threshold, lost_frames=cfg.lost_frames, reground_period=cfg.reground_period,
            lost_seconds=cfg.lost_seconds, reground_period_frames=cfg.reground_period_frames))
        self.tracker = ReferringTracker(segmenter, tracker_model, policy, background=False,
                                        segment_overrides=cfg.segment_overrides)
        self.cfg = cfg
        self.base = None
        self.base_status = (mo.NOT_FOUND, "")
        self.started = False

    def step(self, rgb: np.ndarray, header, t_s: float, seconds_start: float) -> mo.Outcome:
        trk = self.tracker
        restart = not self.started or trk.frame_size != tuple(rgb.shape[:2])
        tr = trk.start(rgb, self.cfg.expression, t_s) if restart else trk.update(rgb, t_s)
        self.started = True
        g = tr.grounding
        if g is not None and (tr.source != "tracking" or g.found):
            self.base, self.base_status = g, mo.classify(g, self.cfg.min_confidence)
        status, message, result = mo.track_status(tr, self.base, self.base_status, self.cfg.lost_threshold)
        seconds = time.perf_counter() - seconds_start
        o = mo.Outcome(header, tr.expression, status, message, result, None, seconds, seconds, 0,
                       (int(rgb.shape[1]), int(rgb.shape[0])))
        o.source, o.object_score, o.frames_since_grounding = tr.source, tr.object_score, tr.frames_since_grounding
        o.extra.update(reground_reason=tr.reground_reason, grounding_pending=False, grounding_applied=g is not None)
        return o

    def close(self) -> None:
        self.tracker.close()


def replay_bag(in_path: str | Path, out_path: str | Path, cfg: ReplayConfig, segmenter, tracker_model=None,
               progress: Callable[[int, int], None] | None = None) -> ReplaySummary:
    """Replay ``in_path`` into a new rosbag2 ``out_path`` (see the module docstring). Raises BagError."""
    t_start = time.perf_counter()
    summary = ReplaySummary()
    expression = " ".join(str(cfg.expression or "").split())
    if not expression:
        raise BagError("empty expression")
    cfg.expression = expression
    with _open_reader(in_path) as reader:
        found = {c.topic: c.msgtype for c in reader.connections}
        _check_topics(found, cfg)
        typestore, note = open_typestore()
        if note:
            summary.notes.append(note)
        in_ts = typestore
        conns = {c.topic: [] for c in reader.connections}
        for c in reader.connections:
            conns[c.topic].append(c)
        for topic in [cfg.image_topic] + ([cfg.depth_topic] if cfg.use_depth else []):
            msgtype = found[topic]
            if msgtype not in _decoders():
                raise UnsupportedMessageError(f"{topic}: message type {msgtype} is not supported (supported: "
                                              f"{', '.join(sorted(_decoders()))})")

        # pass 1: the stamps of every colour and depth image (the depth pairing sees the whole recording)
        colour_stamps, depth_stamps = [], []
        index_conns = conns[cfg.image_topic] + (conns[cfg.depth_topic] if cfg.use_depth else [])
        for conn, _, raw in reader.messages(connections=index_conns):
            msg = in_ts.deserialize_cdr(raw, conn.msgtype)
            (colour_stamps if conn.topic == cfg.image_topic else depth_stamps).append(stamp_ns(msg.header))
        summary.frames = len(colour_stamps)
        pairs = _pair_depths(sorted(colour_stamps), sorted(set(depth_stamps)), int(cfg.sync_slop * 1e9)) \
            if cfg.use_depth else {}
        wanted_depths = set(pairs.values())

        # pass 2: in recorded order; a colour frame waits until tf_lookahead_s of recording after it was read
        ns = "/" + cfg.namespace.strip("/") if cfg.namespace.strip("/") else ""
        kit = rosbags_kit(typestore, with_result=not note)
        tf = TransformBuffer(cache_time_s=max(60.0, 4 * cfg.tf_lookahead_s))
        tracking = _Tracking(segmenter, tracker_model, cfg) if cfg.track else None
        depths: dict[int, Any] = {}
        infos: collections.deque = collections.deque(maxlen=60)
        pending: collections.deque = collections.deque()
        last_done = -1 << 62
        lookahead = int(cfg.tf_lookahead_s * 1e9)
        topics = [t for t in (cfg.image_topic, cfg.depth_topic if cfg.use_depth else None,
                              cfg.camera_info_topic if cfg.use_depth else None, cfg.tf_topic, cfg.tf_static_topic)
                  if t and t in conns]
        try:
            with AtomicBagWriter(out_path, typestore, cfg.storage) as writer:
                for name, msgtype in OUTPUT_TYPES.items():
                    if name == "result" and kit.SegmentationResult is None:
                        continue
                    if name in ("points", "centroid") and not cfg.use_depth:
                        continue
                    writer.add_topic(f"{ns}/{name}", msgtype)

                def process(item):
                    nonlocal last_done
                    log_t, msg, msgtype = item
                    stamp = stamp_ns(msg.header)
                    if cfg.rate_hz > 0 and stamp - last_done < 1e9 / cfg.rate_hz:
                        return
                    last_done = stamp
                    o, rgb = _process_frame(msg, msgtype, stamp, cfg, segmenter, tracking, depths.get(pairs.get(stamp)),
                                            infos, tf, in_ts)
                    _write_outcome(writer, ns, kit, o, log_t, cfg)
                    summary.processed += 1
                    summary.statuses[o.status] += 1
                    summary.found += int(o.found)
                    summary.with_3d += int(o.found and o.point is not None)
                    if progress is not None:
                        progress(summary.processed, summary.frames)

                for conn, log_t, raw in reader.messages(connections=[c for t in topics for c in conns[t]]):
                    while pending and log_t - pending[0][0] > lookahead:
                        process(pending.popleft())
                    if conn.topic in (cfg.tf_topic, cfg.tf_static_topic):
                        tf.add_message(in_ts.deserialize_cdr(raw, conn.msgtype), static=conn.topic == cfg.tf_static_topic)
                    elif conn.topic == cfg.image_topic:
                        pending.append((log_t, in_ts.deserialize_cdr(raw, conn.msgtype), conn.msgtype))
                    elif cfg.use_depth and conn.topic == cfg.depth_topic:
                        msg = in_ts.deserialize_cdr(raw, conn.msgtype)
                        if stamp_ns(msg.header) in wanted_depths:
                            depths[stamp_ns(msg.header)] = (msg, conn.msgtype)
                    elif cfg.use_depth and conn.topic == cfg.camera_info_topic:
                        msg = in_ts.deserialize_cdr(raw, conn.msgtype)
                        infos.append((stamp_ns(msg.header), msg))
                    if len(depths) > 256:  # depths of frames already processed
                        oldest_pending = stamp_ns(pending[0][1].header) if pending else None
                        for k in sorted(depths)[: len(depths) - 256]:
                            if oldest_pending is None or k < oldest_pending - int(cfg.sync_slop * 1e9):
                                del depths[k]
                while pending:
                    process(pending.popleft())
                summary.written = dict(writer.counts)
                writer.commit()
        finally:
            if tracking is not None:
                tracking.close()
    summary.seconds = time.perf_counter() - t_start
    return summary


def _decoders():
    from .bag_io import DECODERS

    return DECODERS


def _intrinsics_for(infos, depth_stamp: int) -> tuple[PinholeIntrinsics | None, str]:
    if not infos:
        return None, "no CameraInfo recorded before this frame"
    stamp, info = min(infos, key=lambda i: (abs(i[0] - depth_stamp), -i[0]))
    try:
        return PinholeIntrinsics.from_camera_info(info), ""
    except ValueError as exc:
        return None, f"invalid CameraInfo: {exc}"


def _process_frame(msg, msgtype: str, stamp: int, cfg: ReplayConfig, segmenter, tracking, depth_item, infos,
                   tf: TransformBuffer, ts) -> tuple[mo.Outcome, np.ndarray]:
    t0 = time.perf_counter()
    header = msg.header
    rgb = to_rgb(msg, msgtype, cfg.image_topic)
    if tracking is not None:
        o = tracking.step(rgb, header, stamp / 1e9, t0)
    else:
        segmenter.set_image(rgb)
        result = segmenter.segment(cfg.expression, **cfg.segment_overrides)
        status, message = mo.classify(result, cfg.min_confidence)
        seconds = time.perf_counter() - t0
        o = mo.Outcome(header, cfg.expression, status, message, result, None, seconds, seconds, 0,
                       (int(rgb.shape[1]), int(rgb.shape[0])))
    o.target_frame = cfg.target_frame
    if o.status == mo.OK:
        _attach_depth(o, rgb, cfg, depth_item, infos, tf)
    o.processing_time = time.perf_counter() - t0
    o.latency = o.processing_time
    return o, rgb


def _attach_depth(o: mo.Outcome, rgb, cfg: ReplayConfig, depth_item, infos, tf: TransformBuffer) -> None:
    if not cfg.use_depth:
        return
    if depth_item is None:
        o.depth_message = f"no depth image within sync_slop ({cfg.sync_slop:g} s) of the colour image"
        return
    dmsg, dtype = depth_item
    intr, why = _intrinsics_for(infos, stamp_ns(dmsg.header))
    if intr is None:
        o.depth_message = why
        return
    raw, encoding = decode_image(dmsg, dtype, cfg.depth_topic)
    try:
        depth_m = depth_to_metres(raw, encoding, cfg.depth_scale, cfg.target.min_depth, cfg.target.max_depth)
    except ValueError as exc:
        raise UnsupportedMessageError(f"{cfg.depth_topic}: {exc}") from None

    def lookup(target: str, header) -> tuple[Any, str]:
        try:
            return tf.lookup(target, header.frame_id, stamp_ns(header)), ""
        except TransformLookupError as exc:
            return None, f"no transform {header.frame_id} -> {target} at the image stamp: {exc}"

    note = mo.camera_model_note(intr, cfg.images_rectified)
    mo.attach_3d(o, rgb, depth_m, dmsg.header.frame_id, intr, cfg.target, cfg.target_frame, lookup, note)


def _write_outcome(writer: AtomicBagWriter, ns: str, kit, o: mo.Outcome, log_t: int, cfg: ReplayConfig) -> None:
    """The node's publication set for one outcome (ros.publishers.OutputPublishers.publish, without overlay)."""
    mask = mo.mask_msg(o, kit=kit)
    writer.write(f"{ns}/mask", mask, log_t)
    point = mo.finite_or_none(o.point) if o.found else None
    if point is not None and cfg.use_depth:
        writer.write(f"{ns}/centroid", mo.centroid_msg(point, o.header, kit=kit), log_t)
    pose = mo.pose_msg(o, kit=kit)
    if pose is not None:
        writer.write(f"{ns}/pose", pose, log_t)
    if cfg.use_depth:
        writer.write(f"{ns}/points", mo.points_msg(o, kit=kit), log_t)
    writer.write(f"{ns}/markers", mo.markers_msg(o, cfg.marker_diameter, kit=kit), log_t)
    if kit.SegmentationResult is not None:
        writer.write(f"{ns}/result", mo.result_msg(o, mask, kit=kit), log_t)
    writer.write(f"{ns}/result_json", mo.json_msg(o, kit=kit), log_t)
