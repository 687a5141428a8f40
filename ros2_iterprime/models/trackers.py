"""Tracker models: the real SAM 2.1 / EdgeTAM checkpoints, tiny random test models, full-size random.

Two `transformers` classes stream video one frame at a time with a memory bank:

- `Sam2VideoModel` (SAM 2.1, Ravi et al. 2024): Hiera image encoder, 4-layer memory attention over
  the last ``num_maskmem`` frames' memories plus the prompt (conditioning) frames, and up to
  ``max_object_pointers_in_encoder`` object-pointer tokens. Checkpoints `facebook/sam2.1-hiera-tiny`,
  `-small`, `-base-plus`, `-large`.
- `EdgeTamVideoModel` (EdgeTAM, Zhou et al. CVPR 2025): the same streaming design with a RepViT-M1
  image encoder (a `timm` model) and a 2-D spatial perceiver that compresses each frame's memory, built
  for on-device speed. Checkpoint `facebook/EdgeTAM`.

Loading goes through the project's safe path (`ros2_iterprime.models.loading.load_pretrained`: local
directory or model cache, safetensors else a tensors-only .bin, one clear `ModelNotFoundError`).

`tiny-random` / `tiny-random-edgetam` build tiny, seeded, randomly initialised configs of the same
classes in-process (64 px input, one or two layers per block) for tests: their masks and object
scores are meaningless. Two constraints of transformers 5.23 shape them: the memory attention's
cross-attention reads 64-channel memories (``kv_in_dim=64`` is hard-coded), so
``memory_encoder_output_channels`` must be 64; and object pointers are only reshaped when the hidden
size is a multiple of that larger than it, so the hidden size is 128. The tiny EdgeTAM uses a tiny
Hiera image encoder instead of RepViT: EdgeTAM's `EdgeTamVisionModel` wraps a `timm` model, and timm
imports torchvision, which the CPU-only torch here cannot load (see docs/tracking.md). Everything
after the image encoder (perceiver, memory attention, decoder) is EdgeTAM's own.

`published_config(name)` gives the full-size architectures as published (for the benchmark with
random weights); the values come from transformers' conversion scripts
(`convert_sam2_video_to_hf.py`, `convert_edgetam_video_to_hf.py`), which build the hub configs.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from . import checkpoints
from . import loading as core_models
from .sam2_preprocess import FrameGeometry

LOG = logging.getLogger(__name__)

SAM2 = "sam2"
EDGETAM = "edgetam"
FAMILIES = (SAM2, EDGETAM)

#: published tracker checkpoints (hub ids) that `download --tracker ID` fetches (registered in
#: `checkpoints` as kind 'tracker')
KNOWN_TRACKERS = checkpoints.TRACKER_REPOS
DEFAULT_TRACKER = "facebook/sam2.1-hiera-tiny"
TINY_TRACKER = "tiny-random"
TINY_EDGETAM = "tiny-random-edgetam"
#: tiny in-process models: name -> family
TINY_TRACKERS = {TINY_TRACKER: SAM2, TINY_EDGETAM: EDGETAM}
#: model input side of the tiny models
TINY_IMAGE_SIZE = 64

EDGETAM_TIMM_NOTE = (
    "EdgeTAM's image encoder is a timm model (RepViT-M1): `pip install timm` plus a torchvision build "
    "matching your torch are needed (timm imports torchvision at import time)"
)


@dataclass
class TrackerModel:
    """A streaming video segmentation model ready for `StreamingSession`.

    Attributes:
        model: `Sam2VideoModel` or `EdgeTamVideoModel`, eval mode, frozen.
        family: 'sam2' or 'edgetam'.
        model_id: hub id, local directory or tiny name it was made from.
        geometry: input size S and normalisation (see `sam2_preprocess`).
        device, dtype: where and in which precision the model and its session state live.
    """

    model: Any
    family: str
    model_id: str
    geometry: FrameGeometry
    device: torch.device
    dtype: torch.dtype

    @property
    def num_maskmem(self) -> int:
        """Spatial memories attended per frame: the prompt frame(s) + the last ``num_maskmem - 1`` frames
        (the published ``config.num_maskmem`` unless the ``memory_frames`` knob lowered it)."""
        return int(getattr(self.model, "num_maskmem", self.model.config.num_maskmem))

    @property
    def max_object_pointers(self) -> int:
        """Object-pointer tokens attended: the prompt frame(s) + the last ``max - 1`` frames (streaming)."""
        return int(self.model.config.max_object_pointers_in_encoder)

    @property
    def is_tiny(self) -> bool:
        return self.model_id in TINY_TRACKERS

    def new_inference_session(self):
        """An empty streaming inference session of the model's family (no video: frames are added live)."""
        if self.family == EDGETAM:
            from transformers.models.edgetam_video.modeling_edgetam_video import EdgeTamVideoInferenceSession as S
        else:
            from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession as S
        return S(inference_device=self.device, inference_state_device=self.device,
                 video_storage_device=self.device, dtype=self.dtype, max_vision_features_cache_size=1)


def family_of(model_id: str) -> str:
    """'sam2' or 'edgetam' for a tiny name, a hub id or a local directory (its config.json model_type)."""
    if model_id in TINY_TRACKERS:
        return TINY_TRACKERS[model_id]
    cfg_path = os.path.join(model_id, "config.json")
    if os.path.isfile(cfg_path):
        try:
            with open(cfg_path, encoding="utf-8") as fh:
                model_type = str(json.load(fh).get("model_type", ""))
        except (OSError, ValueError):
            model_type = ""
        if model_type.startswith("edgetam"):
            return EDGETAM
        if model_type.startswith("sam2"):
            return SAM2
    return EDGETAM if "edgetam" in os.path.basename(model_id.rstrip("/")).lower() else SAM2


def resolve_tracker_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on CUDA with bf16 (SAM 2's own inference precision) and on CPUs with native bf16
    (AVX512-BF16 / AMX: `loading.cpu_native_bf16`), else fp32; else as given (fp16 on a CPU without
    native fp16 is refused, see `loading.dtype_choice`)."""
    if dtype in (None, "", "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and core_models.cpu_native_bf16():
            return torch.bfloat16
        return torch.float32
    return core_models.resolve_dtype(dtype, device)


#: smallest tracker input side; sides are multiples of this (Hiera: stride 4, three 2x poolings, and
#: the first stage's 8x8 window positional embedding tiles the stride-4 map: S / 4 must divide by 8)
INPUT_SIZE_STEP = 32
#: input sides documented (and benchmarked) besides the published 1024
DOCUMENTED_INPUT_SIZES = (512, 768, 1024)


def check_knobs(config, image_size: int | None, memory_frames: int | None, *, step: int = INPUT_SIZE_STEP,
                lowest: int = 256) -> tuple[int | None, int | None]:
    """Validate the cost knobs against a tracker config; None / 0 = as published. Returns them normalised.

    image_size: model input side S (a multiple of `INPUT_SIZE_STEP`, 256 .. 2048; the tiny test models
        take multiples of 16 from 32).
    memory_frames: spatial memories attended per frame, 1 .. the published ``num_maskmem`` (7 for
        SAM 2.1): the prompt frame + the last ``memory_frames - 1`` tracked frames. The temporal
        position table is the published one, so each kept memory is encoded as trained.
    Raises ValueError with the allowed range.
    """
    size = int(image_size) if image_size else None
    mem = int(memory_frames) if memory_frames else None
    if size is not None and (size % step or not lowest <= size <= 2048):
        raise ValueError(f"tracker input size must be a multiple of {step} in [{lowest}, 2048] "
                         f"(documented: {', '.join(map(str, DOCUMENTED_INPUT_SIZES))}), got {image_size}")
    top = int(config.num_maskmem)
    if mem is not None and not 1 <= mem <= top:
        raise ValueError(f"tracker memory_frames must be in [1, {top}] (this model's num_maskmem), got {memory_frames}")
    if size == int(config.image_size):
        size = None
    if mem == top:
        mem = None
    return size, mem


def sized_config(config, image_size: int):
    """A copy of a `Sam2VideoConfig` / `EdgeTamVideoConfig` for input side `image_size`.

    Every size-derived field follows S: the prompt encoder's and backbone's image size, the three
    backbone feature maps (S/4, S/8, S/16) and the memory attention's RoPE grid (S/16). No weight
    depends on S (Hiera's background position embedding is interpolated to the feature map), so the
    published weights load unchanged; the results are those of the same model at another resolution.
    """
    import copy

    cfg = copy.deepcopy(config)
    s = int(image_size)
    cfg.image_size = s
    cfg.prompt_encoder_config.image_size = s
    vc = cfg.vision_config
    bb = getattr(vc, "backbone_config", None)
    if bb is not None and hasattr(bb, "image_size"):
        bb.image_size = [s, s]
    vc.backbone_feature_sizes = [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]
    cfg.memory_attention_rope_feat_sizes = [s // 16, s // 16]
    return cfg


def load_tracker(model: str = DEFAULT_TRACKER, *, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "auto", local_files_only: bool | None = None,
                 cache_dir: str | None = None, seed: int = 0, image_size: int | None = None,
                 memory_frames: int | None = None) -> TrackerModel:
    """Load a tracker checkpoint (hub id or local directory) or build a tiny random one.

    Args:
        model: a `KNOWN_TRACKERS` id, a local directory written by `save_pretrained` / `download`,
            'tiny-random' (tiny Sam2VideoModel) or 'tiny-random-edgetam' (tiny EdgeTamVideoModel).
        image_size, memory_frames: the cost knobs (`check_knobs`; None or 0 = as published: 1024 px,
            7 memories for SAM 2.1). Per-frame cost grows with S^2 (image encoder) and S^2 x S^2 x
            memories (memory attention); docs/tracking.md has the measured table.
    Raises:
        ModelNotFoundError: weights not available locally (the message gives the route that works).
        ImportError: an EdgeTAM checkpoint without a working `timm` (see `EDGETAM_TIMM_NOTE`).
        ValueError: a knob out of range.
    """
    dev = core_models.resolve_device(device)
    dt = resolve_tracker_dtype(dtype, dev)
    family = family_of(model)
    if model in TINY_TRACKERS:
        LOG.warning("Using tracker %r: a tiny RANDOMLY INITIALISED %s video model built in-process; its masks "
                    "and object scores are MEANINGLESS (plumbing tests only).", model, family)
        config = tiny_tracker_config(family)
        size, mem = check_knobs(config, image_size, memory_frames, step=16, lowest=32)
        net = build_tiny_tracker(family, seed, image_size=size or TINY_IMAGE_SIZE)
        geometry = FrameGeometry(size or TINY_IMAGE_SIZE)
    else:
        cls = _model_class(family)
        kw: dict = {}
        if image_size or memory_frames:
            config = core_models.load_pretrained(cls.config_class, "tracker", model, local_files_only=local_files_only,
                                                 cache_dir=cache_dir)
            size, mem = check_knobs(config, image_size, memory_frames)
            if size:
                kw["config"] = sized_config(config, size)
        else:
            size, mem = None, None
        try:
            net = core_models.load_pretrained(cls, "tracker", model, local_files_only=local_files_only,
                                              cache_dir=cache_dir, **kw)
        except ImportError as exc:
            if family == EDGETAM:
                raise ImportError(f"tracker {model!r}: {EDGETAM_TIMM_NOTE} ({exc})") from exc
            raise
        geometry = _geometry_from_files(model, int(net.config.image_size), cache_dir)
        if size:
            geometry = FrameGeometry(size, geometry.mean, geometry.std)
    tm = _finish(net, family, model, geometry, dev, dt, mem)
    if os.environ.get("ITERPRIME_ENCODER_BACKEND", "").strip().lower() == "onnxruntime":  # opt-in
        from .onnx_encoder import use_onnxruntime_tracker

        use_onnxruntime_tracker(tm)
    return tm


def _finish(net, family: str, model_id: str, geometry: FrameGeometry, dev: torch.device,
            dt: torch.dtype, memory_frames: int | None = None) -> TrackerModel:
    net.eval()
    net.requires_grad_(False)
    net.to(device=dev, dtype=dt)
    if memory_frames:
        # the model reads memories at offsets 1 .. num_maskmem - 1 (an instance attribute; the temporal
        # position table keeps its published rows, so each kept memory is encoded as trained)
        net.num_maskmem = int(memory_frames)
    return TrackerModel(net, family, model_id, geometry, dev, dt)


def _model_class(family: str):
    if family == EDGETAM:
        from transformers import EdgeTamVideoModel

        return EdgeTamVideoModel
    from transformers import Sam2VideoModel

    return Sam2VideoModel


def _geometry_from_files(model_id: str, image_size: int, cache_dir: str | None) -> FrameGeometry:
    """Input size / mean / std from the checkpoint's preprocessor config when present, else the defaults."""
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        path = os.path.join(model_id, name) if os.path.isdir(model_id) else None
        if path is None:
            try:
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
                path = found if isinstance(found, str) else None
            except Exception:  # noqa: BLE001 - an unreadable cache only means "use the defaults"
                path = None
        if path and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as fh:
                    return FrameGeometry.from_preprocessor_config(json.load(fh), image_size)
            except (OSError, ValueError) as exc:
                LOG.warning("tracker %r: ignoring unreadable %s (%s)", model_id, name, exc)
    return FrameGeometry(image_size)


# --------------------------------------------------------------------------------------------------
# tiny random models (tests) and full-size random models (benchmark)
# --------------------------------------------------------------------------------------------------
def tiny_tracker_config(family: str = SAM2, image_size: int = TINY_IMAGE_SIZE):
    """Config of a tiny video model of `family` (64 px input, 1-2 layers per block, hidden size 128).

    Feature maps: strides 4 / 8 / 16 -> 16x16, 8x8, 4x4 for 64 px; low-res masks S/4 = 16x16.
    Memory bank: ``num_maskmem`` 3 (prompt frame + 2 past frames), 4 object pointers.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown tracker family {family!r}; choose one of {FAMILIES}")
    s, hidden = int(image_size), 128
    if s % 16:
        raise ValueError("tiny tracker image_size must be a multiple of 16")
    f = s // 4
    vision = dict(
        model_type="sam2_vision_model",
        backbone_config=dict(
            model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1, image_size=[s, s],
            embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 2, 2],
            # global attention must not sit on a stage's first (query-pooling) block: transformers
            # divides by the window size there
            blocks_per_stage=[1, 1, 2, 1], global_attention_blocks=[3], window_size_per_stage=[4, 4, 4, 2],
            window_positional_embedding_background_size=[2, 2],
        ),
        backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[f, f], [f // 2, f // 2], [f // 4, f // 4]],
        fpn_hidden_size=hidden,
    )
    common = dict(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=s, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
        image_size=s, num_maskmem=3, max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_rope_feat_sizes=[f // 4, f // 4],
        memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64,  # 64: see the module docstring
        mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64,
        memory_fuser_num_layers=1,
    )
    if family == EDGETAM:
        from transformers import EdgeTamVideoConfig

        return EdgeTamVideoConfig(
            **common, memory_attention_mlp_hidden_size=64, memory_attention_rope_k_sizes=[2, 2],
            perceiver_resampler_num_latents=4, perceiver_resampler_num_latents_2d=4,
            perceiver_resampler_mlp_intermediate_size=32, perceiver_resampler_num_layers=1,
            enable_temporal_pos_encoding_for_object_pointers=False, enable_occlusion_spatial_embedding=False)
    from transformers import Sam2VideoConfig

    return Sam2VideoConfig(**common, memory_attention_feed_forward_hidden_size=64)


def build_tiny_tracker(family: str = SAM2, seed: int = 0, image_size: int = TINY_IMAGE_SIZE):
    """Tiny randomly initialised `Sam2VideoModel` / `EdgeTamVideoModel` (seeded, no files), eval mode."""
    config = tiny_tracker_config(family, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        net = _model_class(family)(config)
    return net.eval()


#: published architectures: short name -> (family, hub id)
PUBLISHED = {
    "sam2.1-hiera-tiny": (SAM2, "facebook/sam2.1-hiera-tiny"),
    "sam2.1-hiera-small": (SAM2, "facebook/sam2.1-hiera-small"),
    "sam2.1-hiera-base-plus": (SAM2, "facebook/sam2.1-hiera-base-plus"),
    "sam2.1-hiera-large": (SAM2, "facebook/sam2.1-hiera-large"),
    "EdgeTAM": (EDGETAM, "facebook/EdgeTAM"),
}


def published_config(name: str):
    """The full-size config of a published checkpoint (architecture only; see the module docstring).

    SAM 2.1: `Sam2VideoConfig` defaults are hiera-tiny (Hiera blocks [1, 2, 7, 2], widths 96..768,
    global attention in blocks 5, 7, 9, 1024 px, 7 memories, 16 object pointers); small / base-plus /
    large change only the Hiera trunk; every SAM 2.1 model enables temporal encoding of object
    pointers and the occlusion embedding. EdgeTAM: `EdgeTamVideoConfig` defaults (2 memory-attention
    layers, perceiver with 256 1-D + 256 2-D latents) with a timm `repvit_m1.dist_in1k` features-only
    backbone (out_indices 0-3) and both SAM 2.1 flags off.
    """
    key = name.split("/")[-1]
    if key not in PUBLISHED:
        raise ValueError(f"unknown published tracker {name!r}; choose one of {sorted(PUBLISHED)}")
    family = PUBLISHED[key][0]
    if family == EDGETAM:
        from transformers import EdgeTamVideoConfig, EdgeTamVisionConfig, TimmWrapperConfig

        backbone = TimmWrapperConfig(architecture="repvit_m1",
                                     model_args={"in_chans": 3, "features_only": True,
                                                 "out_indices": (0, 1, 2, 3)})
        return EdgeTamVideoConfig(vision_config=EdgeTamVisionConfig(backbone_config=backbone),
                                  enable_temporal_pos_encoding_for_object_pointers=False,
                                  enable_occlusion_spatial_embedding=False)
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VisionConfig

    trunk: dict = {}
    channels = None
    if key == "sam2.1-hiera-small":
        trunk = dict(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13])
    elif key == "sam2.1-hiera-base-plus":
        trunk = dict(hidden_size=112, embed_dim_per_stage=[112, 224, 448, 896],
                     num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 3, 16, 3],
                     global_attention_blocks=[12, 16, 20], window_positional_embedding_background_size=[14, 14])
        channels = [896, 448, 224, 112]
    elif key == "sam2.1-hiera-large":
        trunk = dict(hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152],
                     num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
                     global_attention_blocks=[23, 33, 43], window_positional_embedding_background_size=[7, 7],
                     window_size_per_stage=[8, 4, 16, 8])
        channels = [1152, 576, 288, 144]
    vision = Sam2VisionConfig(backbone_config=Sam2HieraDetConfig(**trunk),
                              **({"backbone_channel_list": channels} if channels else {}))
    return Sam2VideoConfig(vision_config=vision, enable_temporal_pos_encoding_for_object_pointers=True,
                           enable_occlusion_spatial_embedding=True)


def build_random_tracker(name: str = "sam2.1-hiera-tiny", *, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = "auto", seed: int = 0, image_size: int | None = None,
                         memory_frames: int | None = None) -> TrackerModel:
    """A full-size published architecture with random weights (cost measurements only, e.g. `bench`).

    image_size / memory_frames: the cost knobs, as in `load_tracker`.
    Raises:
        ImportError: for EdgeTAM without a working `timm` (see `EDGETAM_TIMM_NOTE`).
    """
    config = published_config(name)
    size, mem = check_knobs(config, image_size, memory_frames)
    if size:
        config = sized_config(config, size)
    family, hub_id = PUBLISHED[name.split("/")[-1]]
    dev = core_models.resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = _model_class(family)(config)
        except ImportError as exc:
            raise ImportError(f"{name}: {EDGETAM_TIMM_NOTE} ({exc})") from exc
    LOG.warning("tracker %s built with RANDOM weights (timing only, outputs meaningless)", hub_id)
    return _finish(net, family, f"random:{hub_id}", FrameGeometry(int(config.image_size)), dev,
                   resolve_tracker_dtype(dtype, dev), mem)
