"""The node's parameters: one table of specs (default, description, type, range, choices, read-only).

Every parameter is declared with a descriptor (`ros2 param describe`), and every value is checked by
the same rule at start-up (`-p` overrides and params files) and at run time (`ros2 param set`): rclpy
enforces the numeric ranges at run time only for some paths and never checks string choices, so
:func:`check_value` does it all. Unknown names are refused (rclpy would otherwise accept odd names such
as '' through the parameter services).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from ..geometry.pointcloud import MIN_VOXEL_SIZE

__all__ = ["PARAMETERS", "ParamSpec", "StartupError", "check_value", "cross_check", "is_builtin"]

MODES = ("on_command", "continuous", "track")
IMAGE_QOS = ("sensor_data", "reliable", "best_effort")
IMAGE_TRANSPORTS = ("raw", "compressed")
DEPTH_TRANSPORTS = ("raw", "compressedDepth")
PROPOSALS = ("cam_points", "automatic")
PROFILES = ("default", "large", "tiny-random")
DTYPES = ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16")


class StartupError(ValueError):
    """A parameter value given at start-up is invalid (the node exits 1 with this message)."""


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its default (which fixes its type), description and constraints."""

    default: Any
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def descriptor(self, name: str) -> ParameterDescriptor:
        d = ParameterDescriptor(name=name, description=self.description, type=_TYPES[self.type],
                                read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.int_range is not None:
            d.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.float_range[0]),
                                                         to_value=float(self.float_range[1]), step=0.0)]
        return d


PARAMETERS: dict[str, ParamSpec] = {
    # --- model (read-only: loaded at configure) ---
    "model": ParamSpec("default", "Model profile: 'default' (BLIP ITM base + SAM ViT-B), 'large', or 'tiny-random' "
                       "(random weights, for tests/demos). Fetch real weights first with `ros2_iterprime download`.",
                       read_only=True, choices=PROFILES),
    "vlm": ParamSpec("", "Override of the BLIP ITM model id or local directory ('' = from `model`).", read_only=True),
    "sam": ParamSpec("", "Override of the SAM model id or local directory ('' = from `model`).", read_only=True),
    "device": ParamSpec("auto", "torch device: 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...",
                        read_only=True),
    "dtype": ParamSpec("auto", "torch dtype of the image encoders and the tracker: 'auto' (float16 on CUDA, bfloat16 "
                       "on CPUs with AVX512-BF16 / AMX, else float32), 'float32', 'float16' (refused on a CPU "
                       "without fp16 arithmetic), 'bfloat16'. Grad-CAM always runs in float32.",
                       read_only=True, choices=DTYPES),
    "local_files_only": ParamSpec(False, "Never contact the model hub at configure (also: HF_HUB_OFFLINE=1).",
                                  read_only=True),
    "autostart": ParamSpec(True, "Configure and activate at start-up (a managed node that starts itself). False: "
                           "wait for lifecycle transitions (e.g. from a lifecycle manager).", read_only=True),
    # --- IteRPrimE ---
    "iterations": ParamSpec(3, "IGRS rounds T (IteRPrimE iterative Grad-CAM refinement).", int_range=(1, 10)),
    "alpha": ParamSpec(0.2, "IGRS blend weight of each new round's Grad-CAM.", float_range=(0.0, 1.0)),
    "pwem_mode": ParamSpec(0, "Primary word emphasis: 0 full PWEM, 1 all tokens, 2 kept tokens + [CLS], "
                           "3 = 2 + global, 4 = 2 + local.", int_range=(0, 4)),
    "proposals": ParamSpec("cam_points", "SAM proposals: 'cam_points' (prompted at Grad-CAM peaks, fast) or "
                           "'automatic' (point grid + NMS, slow).", choices=PROPOSALS),
    "points_per_side": ParamSpec(16, "'automatic' proposals: SAM point grid per side (more = slower, finer).",
                                 int_range=(2, 64)),
    "min_confidence": ParamSpec(0.0, "Results whose confidence (ITM match probability of the final IGRS round; "
                                "uncalibrated) is below this are reported as not found (status low_confidence).",
                                float_range=(0.0, 1.0)),
    # --- behaviour ---
    "mode": ParamSpec("on_command", "'on_command': segment the newest frame once per received expression; "
                      "'continuous': every new frame with the active expression, at most max_rate_hz; 'track': "
                      "ground the expression once, then follow the object on every frame (at most track_rate_hz) "
                      "with the tracker_model, re-grounding when lost or every reground_period.",
                      choices=MODES),
    # --- tracking (mode track) ---
    "tracker_model": ParamSpec("", "mode track: SAM 2.1 / EdgeTAM video model id or local dir; '' = by model profile "
                               "(default: facebook/sam2.1-hiera-tiny, large: facebook/sam2.1-hiera-base-plus, "
                               "tiny-random: tiny-random). Read at configure / first use.", read_only=True),
    "tracker_image_size": ParamSpec(0, "mode track: tracker input side in px (cost knob; docs/tracking.md): 0 = as "
                                    "published (1024 for SAM 2.1), else a multiple of 32 from 256 (documented: 512, "
                                    "768, 1024; the tiny test models take multiples of 16 from 32). Smaller is faster "
                                    "and coarser. Read at configure / first use.", read_only=True, int_range=(0, 2048)),
    "tracker_memory_frames": ParamSpec(0, "mode track: memories the tracker attends per frame (cost knob; "
                                       "docs/tracking.md): 0 = as published (7 for SAM 2.1), else 1 .. that number "
                                       "(the prompt frame + the last N-1 frames). Read at configure / first use.",
                                       read_only=True, int_range=(0, 64)),
    "proposals_model": ParamSpec("sam", "Grounding's proposal network: 'sam' (SAM v1, the `sam` model), a SAM 2.1 / "
                                 "EdgeTAM id (shares the image encoder with the tracker when tracker_model is the same "
                                 "model), or 'mask2former' (the paper's: Mask2Former Swin-L COCO panoptic, all query "
                                 "masks; tiny random under model tiny-random; any Mask2Former id or folder works).",
                                 read_only=True),
    "lost_threshold": ParamSpec(0.0, "mode track: object-score logit below which a frame counts as lost "
                                "(0 = SAM 2's own rule); a frame whose tracked mask is empty is always lost.", float_range=(-100.0, 100.0)),
    "lost_frames": ParamSpec(15, "mode track: consecutive lost frames that trigger a re-grounding (or lost_seconds, "
                             "whichever comes first).", int_range=(1, 100_000)),
    "lost_seconds": ParamSpec(0.5, "mode track: seconds (image stamps) an object may stay lost before a re-grounding, "
                              "whatever the frame rate; 0 = count lost_frames only.", float_range=(0.0, 86400.0)),
    "reground_period": ParamSpec(30.0, "mode track: seconds between periodic re-groundings (drift); 0 = never.",
                                 float_range=(0.0, 86400.0)),
    "reground_period_frames": ParamSpec(0, "mode track: tracked frames between periodic re-groundings (also "
                                        "reground_period, whichever comes first); 0 = by seconds only.",
                                        int_range=(0, 10_000_000)),
    "track_rate_hz": ParamSpec(0.0, "mode track: maximum tracked frames per second (0 = every frame the tracker can "
                               "take; max_rate_hz does not apply to track mode).", float_range=(0.0, 1000.0)),
    "background_regrounding": ParamSpec(True, "mode track: re-ground (lost/period) on a background thread while the "
                                        "old track keeps being tracked, then re-seed; false: re-ground in line.",
                                        read_only=True),
    "max_rate_hz": ParamSpec(2.0, "Continuous mode: maximum segmentations per second (0 = as fast as the model "
                             "allows). Mode track has its own track_rate_hz.", float_range=(0.0, 100.0)),
    "max_frame_age": ParamSpec(2.0, "Oldest frame (s, by its header stamp against this node's clock) an expression "
                               "is answered on; an expression waits up to this long for a fresh frame, then gets a "
                               "frame_too_old / no_frame result. 0 = no limit.", float_range=(0.0, 3600.0)),
    "image_qos": ParamSpec("sensor_data", "QoS of the image/depth/camera_info subscriptions: 'sensor_data' (best "
                           "effort, keep last 5; REP 2003), 'reliable' or 'best_effort' (depth 1).",
                           read_only=True, choices=IMAGE_QOS),
    "image_transport": ParamSpec("raw", "Colour input: 'raw' (sensor_msgs/Image on `image`) or 'compressed' "
                                 "(sensor_msgs/CompressedImage, JPEG or PNG, on `image`/compressed as image_transport "
                                 "publishes it; the base name is remapped first).", read_only=True,
                                 choices=IMAGE_TRANSPORTS),
    "depth_transport": ParamSpec("raw", "Depth input: 'raw' (sensor_msgs/Image on `depth`) or 'compressedDepth' "
                                 "(image_transport's compressedDepth PNG, 16UC1 or 32FC1, on `depth`/compressedDepth).",
                                 read_only=True, choices=DEPTH_TRANSPORTS),
    "use_depth": ParamSpec(True, "Subscribe to depth + camera_info and publish the 3-D centroid.", read_only=True),
    "depth_scale": ParamSpec(0.001, "Metres per unit of 16UC1 depth images (REP 118: millimetres -> 0.001). 32FC1 "
                             "is always metres.", float_range=(1e-6, 1.0)),
    "min_depth": ParamSpec(0.05, "Nearest plausible depth (m); closer readings are invalid.",
                           float_range=(0.0, 100.0)),
    "max_depth": ParamSpec(20.0, "Farthest plausible depth (m); farther readings are invalid.",
                           float_range=(0.01, 1000.0)),
    "sync_slop": ParamSpec(0.05, "Maximum |stamp difference| in seconds between the colour image and the depth "
                           "image matched to it. The depth is matched after segmentation, waiting at most this long "
                           "for the one with the colour image's exact stamp.", float_range=(0.0, 1.0)),
    "images_rectified": ParamSpec(False, "The image and depth streams are rectified (image_rect) although their "
                                  "CameraInfo has a non-zero D or K != P: do not warn. False: such a CameraInfo gets "
                                  "one warning (log, depth_message, /diagnostics)."),
    "min_depth_points": ParamSpec(10, "Fewest points in the cleaned 3-D cloud for any 3-D output (centroid, box, "
                                  "~/points).", int_range=(1, 1_000_000)),
    "erosion_px": ParamSpec(3, "The mask is eroded by this many pixels before back-projection, so depth edges and "
                            "the background behind the object's border do not leak into the cloud (docs/3d.md).",
                            int_range=(0, 50)),
    "voxel_size": ParamSpec(0.0, "Voxel down-sampling of ~/points in metres (0 = off).", float_range=(0.0, 0.5)),
    "max_points": ParamSpec(20000, "Cap on the cloud's points (deterministic subsampling; 0 = no cap).",
                            int_range=(0, 10_000_000)),
    "target_frame": ParamSpec("", "Frame (e.g. base_link) the 3-D outputs are also given in, with TF at the IMAGE "
                              "stamp ('' = camera optical frame only). Needs tf2_ros (every ROS 2 install)."),
    "tf_timeout": ParamSpec(0.1, "Longest wait (s) for the camera -> target_frame transform at the image stamp.",
                            float_range=(0.0, 5.0)),
    "tf_cache_time": ParamSpec(120.0, "Seconds of /tf history kept (from activation, with use_depth): must cover "
                               "max_frame_age + the slowest model run + tf_timeout, because the transform is read at "
                               "the IMAGE stamp after the model ran. Read at activation.",
                               float_range=(1.0, 3600.0), read_only=True),
    "publish_overlay": ParamSpec(True, "Publish ~/overlay (rendered only while someone subscribes)."),
    "marker_diameter": ParamSpec(0.05, "Diameter in metres of the centroid sphere in ~/markers.",
                                 float_range=(0.001, 2.0)),
    "diagnostics_period": ParamSpec(1.0, "Seconds between /diagnostics messages.", float_range=(0.1, 60.0),
                                    read_only=True),
}

#: Parameters rclpy itself declares or reads; always accepted.
_BUILTIN = ("use_sim_time", "start_type_description_service", "start_parameter_services")


def is_builtin(name: str) -> bool:
    return name in _BUILTIN or name.startswith("qos_overrides.")


def check_value(name: str, value: Any) -> str | None:
    """The reason ``value`` is not acceptable for parameter ``name``, or None when it is."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return None if is_builtin(name) else f"unknown parameter {name!r}"
    want = spec.type
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not want:
        return f"{name} must be a {want.__name__}, got {type(value).__name__} {value!r}"
    if want is float and not math.isfinite(value):
        return f"{name} must be finite, got {value!r}"
    if spec.int_range is not None and not spec.int_range[0] <= value <= spec.int_range[1]:
        return f"{name} must be in [{spec.int_range[0]}, {spec.int_range[1]}], got {value}"
    if spec.float_range is not None and not spec.float_range[0] <= value <= spec.float_range[1]:
        return f"{name} must be in [{spec.float_range[0]:g}, {spec.float_range[1]:g}], got {value:g}"
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if name == "tracker_image_size" and value and (value % 16 or value < 32):
        return f"tracker_image_size must be 0 (published) or a multiple of 32 from 256 (tiny models: 16 from 32), got {value}"
    if name == "voxel_size" and 0 < value < MIN_VOXEL_SIZE:  # the cloud's own rule (pointcloud.CloudParams)
        return f"voxel_size must be 0 (off) or >= {MIN_VOXEL_SIZE:g} m, got {value:g}"
    return None


def cross_check(values: dict[str, Any]) -> str | None:
    """Constraints between parameters (the reason, or None)."""
    lo, hi = values.get("min_depth"), values.get("max_depth")
    if lo is not None and hi is not None and not lo < hi:
        return f"min_depth ({lo:g} m) must be below max_depth ({hi:g} m)"
    cache, age, tf_wait = values.get("tf_cache_time"), values.get("max_frame_age"), values.get("tf_timeout")
    if cache is not None and age is not None and tf_wait is not None and not cache > age + tf_wait:
        return (f"tf_cache_time ({cache:g} s) must exceed max_frame_age + tf_timeout ({age + tf_wait:g} s): the "
                f"transform is read at the image stamp, after the model ran")
    return None
