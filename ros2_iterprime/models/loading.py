"""Model registry and loading: real BLIP ITM / SAM checkpoints, local directories, and `tiny-random`.

(Fetching and exporting checkpoints: `download`; the tiny in-process models: `tiny`.)

Real weights are loaded with `from_pretrained` from a local directory or the model cache (see
`checkpoints`), never with `trust_remote_code`: `model.safetensors` when present, else
`pytorch_model.bin` through transformers' `torch.load(weights_only=True)` (the BLIP ITM repositories
publish only the .bin), and the log says which file was read. A hub id that is not cached is fetched
first unless `HF_HUB_OFFLINE=1` or `local_files_only=True`. When files are missing, one
`ModelNotFoundError` names the model and the route that works (`ros2_iterprime download`).

`tiny-random` builds tiny, randomly initialised configs of the SAME model classes in-process (seeded,
no files), the way `transformers` tests its models. Its outputs are meaningless: it exists for tests,
smoke runs and plumbing checks, and says so loudly in the log.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelNotFoundError, UnsafeCheckpointError
from . import checkpoints

LOG = logging.getLogger(__name__)

TINY = "tiny-random"
DEFAULT_VLM = "Salesforce/blip-itm-base-coco"
DEFAULT_SAM = "facebook/sam-vit-base"

#: profile name -> (vlm id, sam id)
PROFILES: dict[str, tuple[str, str]] = {
    "default": (DEFAULT_VLM, DEFAULT_SAM),
    "large": ("Salesforce/blip-itm-large-coco", "facebook/sam-vit-large"),
    TINY: (TINY, TINY),
}
KNOWN_VLMS = (
    "Salesforce/blip-itm-base-coco",
    "Salesforce/blip-itm-large-coco",
    "Salesforce/blip-itm-base-flickr",
    "Salesforce/blip-itm-large-flickr",
)
KNOWN_SAMS = ("facebook/sam-vit-base", "facebook/sam-vit-large", "facebook/sam-vit-huge")


@dataclass
class LoadedModels:
    """Everything the predictor needs, on one device and dtype."""

    blip: Any  # transformers.BlipForImageTextRetrieval
    blip_processor: Any  # transformers.BlipImageProcessorPil
    tokenizer: Any  # a fast BERT tokenizer (offsets are needed)
    sam: Any  # transformers.SamModel; None when skipped (SAM 2.1 / EdgeTAM proposals: `load_models(sam=None)`)
    sam_processor: Any  # transformers.SamImageProcessorPil; None with sam
    vlm_id: str
    sam_id: str | None  # None when SAM v1 was not loaded
    device: torch.device
    dtype: torch.dtype  # of the two image encoders; everything else runs in fp32


def resolve_profile(model: str | None, vlm: str | None = None, sam: str | None = None) -> tuple[str, str]:
    """Map a profile name ('default', 'large', 'tiny-random') plus optional overrides to (vlm, sam) ids."""
    model = model or "default"
    if model not in PROFILES:
        raise ValueError(f"unknown model profile {model!r}; choose one of {sorted(PROFILES)} (or pass vlm=/sam= ids)")
    pv, ps = PROFILES[model]
    return vlm or pv, sam or ps


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use device='auto' or 'cpu')")
    return dev


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (first 'flags' or 'Features' line); empty where unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def _torch_cpu_probe(name: str) -> bool:
    fn = getattr(torch.cpu, name, None)  # private helpers of torch.cpu (2.1+): what oneDNN will use
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means "not known to be there"
        return False


def cpu_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU multiplies bf16 natively: x86 AVX512-BF16 or AMX-BF16.

    Read from /proc/cpuinfo (``avx512_bf16``, ``amx_bf16``) or torch's own probe
    (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``). Elsewhere torch emulates
    bf16 matmuls in fp32 with extra conversions: slower than fp32, so 'auto' keeps fp32 there.
    """
    if flags is None:
        flags = cpu_flags()
        if _torch_cpu_probe("_is_avx512_bf16_supported") or _torch_cpu_probe("_is_amx_tile_supported"):
            return True
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def cpu_native_fp16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU multiplies fp16 natively: x86 AVX512-FP16 or AMX-FP16, or Arm FP16 arithmetic."""
    if flags is None:
        flags = cpu_flags()
        if _torch_cpu_probe("_is_amx_fp16_supported"):
            return True
    return bool({"avx512_fp16", "amx_fp16", "asimdhp"} & set(flags))


class UnsupportedDtypeError(ValueError):
    """A dtype this device cannot run at a useful speed (e.g. fp16 on a CPU without fp16 arithmetic)."""


def dtype_choice(dtype: str | torch.dtype | None, device: torch.device,
                 flags: frozenset[str] | None = None) -> tuple[torch.dtype, str]:
    """(dtype of the image encoders, why) for a requested dtype on `device`.

    'auto': fp16 on CUDA; on a CPU bf16 where it has native bf16 (AVX512-BF16 / AMX, `cpu_native_bf16`),
    else fp32. Explicit 'fp32' / 'bf16' are honoured; 'fp16' on a CPU without native fp16
    (`cpu_native_fp16`) is refused: torch would emulate it hundreds of times slower than fp32 (measured
    on an AVX512-BF16 CPU: ~0.3 GFLOP/s fp16 against ~150 fp32 for a 2048x2048 matmul).

    Raises:
        ValueError: unknown name. UnsupportedDtypeError: fp16 on such a CPU.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(dtype, torch.dtype):
        dt, why = dtype, "as given"
    elif dtype in (None, "", "auto"):
        if dev.type == "cuda":
            return torch.float16, "auto: fp16 on CUDA"
        if dev.type == "cpu" and cpu_native_bf16(flags):
            return torch.bfloat16, "auto: this CPU has native bf16 (AVX512-BF16 / AMX)"
        return torch.float32, "auto: fp32 (no native bf16 on this device)"
    elif dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, fp32, fp16 or bf16")
    else:
        dt, why = _DTYPES[dtype], "as given"
    if dt == torch.float16 and dev.type == "cpu" and not cpu_native_fp16(flags):
        raise UnsupportedDtypeError(
            "dtype fp16 refused on this CPU: it has no native fp16 arithmetic (no AVX512-FP16 / AMX-FP16), so "
            "torch would emulate it, hundreds of times slower than fp32. Use dtype 'auto' (bf16 where the CPU "
            "has AVX512-BF16 or AMX, else fp32), 'bf16' or 'fp32'; fp16 is for GPUs")
    return dt, why


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The image encoders' dtype (see `dtype_choice`: 'auto' = fp16 on CUDA, bf16 on CPUs with native bf16,
    else fp32; fp16 on a CPU without native fp16 raises `UnsupportedDtypeError`)."""
    return dtype_choice(dtype, device)[0]


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32' / 'fp16' / 'bf16' (else torch's name)."""
    return _NAMES.get(dtype, str(dtype).replace("torch.", ""))


def apply_precision(blip, sam, dtype: torch.dtype, device: torch.device | None = None) -> None:
    """The project's mixed-precision rule, in place: everything fp32 except the two image encoders
    (and the lossless attention swaps of `fast_attention`: BLIP's vision attention through SDPA, SAM's
    relative-position bias in one buffer per encoder pass).

    Only the per-image encoders (nearly all the FLOPs: BLIP's ViT, SAM's image encoder) run in `dtype`.
    The Grad-CAM path (BLIP text encoder + ITM head) stays fp32 because attention gradients underflow
    fp16, and SAM's small prompt decoder stays fp32 so mask boundaries do not move
    (tests/benchmark/test_bench.py). Used by `load_models` and the benchmark's random-weight models alike.
    """
    for m in (blip, sam):
        if m is None:
            continue
        m.eval()
        m.requires_grad_(False)  # Grad-CAM takes gradients w.r.t. attention maps only, never parameters
        m.to(device=device, dtype=torch.float32)
    blip.vision_model.to(dtype=dtype)
    if sam is not None:
        sam.vision_encoder.to(dtype=dtype)
    # lossless: BLIP's vision attention through SDPA (the text encoder stays eager for Grad-CAM), SAM's
    # relative-position bias written into one buffer per encoder pass
    from .fast_attention import use_sam_rel_pos_workspace, use_sdpa_for_blip_vision

    use_sdpa_for_blip_vision(blip)
    if sam is not None:
        use_sam_rel_pos_workspace(sam)


def to_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host tensor onto `device` (and `dtype`). On CUDA the copy goes through pinned (page-locked) host
    memory and does not block the CPU: the copy and the kernels that read it are queued on the same
    stream, so they run in order, and torch's caching host allocator keeps the pinned buffer alive
    until the copy has finished. Elsewhere a plain `.to`."""
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    return t if dtype is None else t.to(dtype)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set: nothing is fetched, only local directories and the cache are used."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")




def missing_weights_message(kind: str, model_id: str, reason: str, cache_dir: str | None = None) -> str:
    """The one error text for a model that cannot be loaded: what failed and the route that works.

    `kind` names the `download` flag (--vlm / --sam / --tracker / --mask2former) and, through
    `checkpoints.KINDS`, the CLI flag and ROS node parameter that take a local copy (vlm / sam /
    tracker_model / proposals_model).
    """
    if os.path.isdir(model_id):
        how = (f"the directory {model_id!r} must hold config.json and model.safetensors or pytorch_model.bin, "
               "plus the tokenizer / preprocessor files, as written by `ros2_iterprime download --to DIR` "
               "(model and processors' save_pretrained)")
    else:
        name = checkpoints.export_name(model_id)
        spec = checkpoints.KINDS.get(kind)
        param = spec.node_param if spec is not None else kind
        flag = spec.use_flag if spec is not None and spec.use_flag else f"--{kind}"
        use, smoke = f"{flag} DIR/{name}", "--model tiny-random"
        if kind == "tracker":
            use, smoke = f"load_tracker('DIR/{name}')", "the tracker 'tiny-random'"
        how = (f"on a machine with internet run `ros2_iterprime download --{kind} {model_id}` (it fetches the "
               "weights the repository publishes, model.safetensors or else pytorch_model.bin, with the config, "
               "tokenizer and processor files, and verifies them); then either copy the model cache "
               f"({checkpoints.hub_cache_dir(cache_dir)}) to this machine and set HF_HUB_OFFLINE=1, or add "
               f"`--to DIR` and pass the folder it writes ({use}; ROS node: -p {param}:=DIR/{name}). "
               f"Use {smoke} for a weight-free smoke run")
    return f"{kind.upper()} model {model_id!r} could not be loaded: {reason}. To get it, {how}."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _is_model_class(cls) -> bool:
    from transformers import PreTrainedModel

    return isinstance(cls, type) and issubclass(cls, PreTrainedModel)


def load_pretrained(cls, kind: str, model_id: str, *, local_files_only: bool | None = None,
                    cache_dir: str | None = None, **kw):
    """`cls.from_pretrained` for a model or processor class, from a local directory or the model cache.

    Hub ids are read from their cached snapshot; when that is missing or incomplete and the hub may be
    used (`local_files_only` not True, HF_HUB_OFFLINE unset), `checkpoints.fetch` downloads the files
    first. Model classes read model.safetensors when present, else pytorch_model.bin through
    torch.load(weights_only=True); the file read is logged. `trust_remote_code` is never enabled.

    Args:
        cls: e.g. BlipForImageTextRetrieval, SamModel, BlipImageProcessorPil, AutoTokenizer.
        kind: 'vlm' / 'sam' / ... (names the CLI flag / node parameter in error messages).
        model_id: hub id ('Salesforce/blip-itm-base-coco') or local directory.
        **kw: passed to from_pretrained (e.g. attn_implementation).
    Raises:
        ModelNotFoundError: files missing (the message gives the route that works).
        UnsafeCheckpointError: a .bin that would need full unpickling (code execution) was refused.
    """
    if kw.pop("trust_remote_code", False) or kw.get("weights_only", True) is False:
        raise ValueError("trust_remote_code and weights_only=False are never enabled")
    kw.pop("local_files_only", None)
    reason = ""
    loc = checkpoints.locate(model_id, cache_dir)
    may_fetch = not (local_files_only or hub_offline() or os.path.isdir(model_id))
    if may_fetch and (loc is None or (kind in checkpoints.KINDS
                                      and not checkpoints.check_location(model_id, kind, cache_dir).ok)):
        try:
            checkpoints.fetch(model_id, cache_dir)
        except Exception as exc:  # network, unknown repo, ...: report below with the route that works
            reason = f"fetching from the hub failed ({_first_line(exc)})"
        loc = checkpoints.locate(model_id, cache_dir)
    if loc is None:
        reason = reason or ("no such directory" if checkpoints._looks_like_path(model_id)
                            else f"not in the model cache ({checkpoints.hub_cache_dir(cache_dir)})")
        raise ModelNotFoundError(missing_weights_message(kind, model_id, reason, cache_dir))
    weights = None
    if _is_model_class(cls):
        weights = checkpoints.find_weights(loc)
        if weights is None or weights.missing:
            what = (f"weight shards {', '.join(weights.missing)} missing" if weights else
                    "no model.safetensors or pytorch_model.bin")
            raise ModelNotFoundError(missing_weights_message(kind, model_id, f"{what} in {loc}", cache_dir))
        kw.update(use_safetensors=weights.format == checkpoints.SAFETENSORS, weights_only=True)
    try:
        obj = cls.from_pretrained(str(loc), local_files_only=True, **kw)
    except pickle.UnpicklingError as exc:
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().split(". ")[0]
        raise UnsafeCheckpointError(
            f"{kind.upper()} model {model_id!r}: refused to load {weights.name if weights else 'a file'} in {loc}: "
            f"it holds more than tensors, and loading it would run code from the file (torch.load "
            f"weights_only=True rejected it: {detail}). Use a safetensors copy "
            "(`ros2_iterprime download --to DIR` on a trusted machine) or the hub's original files.") from exc
    except (OSError, ValueError) as exc:  # transformers raises OSError for missing files
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(missing_weights_message(kind, model_id, reason, cache_dir)) from exc
    if weights is not None:
        LOG.info("%s %r: weights read from %s (%s) in %s", kind.upper(), model_id, weights.name, weights.note, loc)
    return obj



def load_models(
    vlm: str = DEFAULT_VLM,
    sam: str | None = DEFAULT_SAM,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    local_files_only: bool | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> LoadedModels:
    """Load (or build, for 'tiny-random') both models, frozen, in eval mode, on `device`.

    `sam=None` skips SAM v1 (``LoadedModels.sam`` / ``sam_processor`` / ``sam_id`` are None): for a
    segmenter whose proposals come from a SAM 2.1 / EdgeTAM model (`SegmenterConfig.proposals_model`),
    which then needs only BLIP + that model on disk.
    """
    from transformers import (  # local import: keep package import light
        AutoTokenizer,
        BlipForImageTextRetrieval,
        BlipImageProcessorPil,
        SamImageProcessorPil,
        SamModel,
    )

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if vlm == TINY or sam == TINY:
        LOG.warning(
            "Using 'tiny-random' models: tiny RANDOMLY INITIALISED BLIP/SAM built in-process. Masks and "
            "heatmaps are MEANINGLESS (plumbing/smoke tests only). Use the default profile for real results."
        )
    if vlm == TINY:
        from .tiny import build_tiny_blip

        blip, blip_proc, tok = build_tiny_blip(seed)
    else:
        common = dict(local_files_only=local_files_only, cache_dir=cache_dir)
        blip = load_pretrained(BlipForImageTextRetrieval, "vlm", vlm, attn_implementation="eager", **common)
        blip_proc = load_pretrained(BlipImageProcessorPil, "vlm", vlm, **common)
        tok = load_pretrained(AutoTokenizer, "vlm", vlm, use_fast=True, **common)
    set_vision_layer_norm_eps(blip, BLIP_VISION_LAYER_NORM_EPS)  # the value BLIP was trained with
    if sam is None:
        sam_model, sam_proc = None, None
        LOG.info("SAM v1 not loaded (sam=None): proposals come from another model")
    elif sam == TINY:
        from .tiny import build_tiny_sam

        sam_model, sam_proc = build_tiny_sam(seed)
    else:
        common = dict(local_files_only=local_files_only, cache_dir=cache_dir)
        sam_model = load_pretrained(SamModel, "sam", sam, **common)
        sam_proc = load_pretrained(SamImageProcessorPil, "sam", sam, **common)
    if not getattr(tok, "is_fast", False):
        raise ModelNotFoundError(f"VLM {vlm!r}: a fast tokenizer (tokenizer.json) is required for word offsets")
    apply_precision(blip, sam_model, dt, dev)
    LOG.info("image encoders in %s (%s); Grad-CAM path and prompt decoder in fp32", dtype_name(dt),
             dtype_choice(dtype, dev)[1])
    models = LoadedModels(blip, blip_proc, tok, sam_model, sam_proc, vlm, sam, dev, dt)
    backend = os.environ.get("ITERPRIME_ENCODER_BACKEND", "torch").strip().lower() or "torch"
    if backend == "onnxruntime" and sam_model is not None:  # opt-in (models/onnx_encoder.py)
        from .onnx_encoder import use_onnxruntime

        use_onnxruntime(models)
    elif backend not in ("torch", "onnxruntime"):
        raise ValueError(f"ITERPRIME_ENCODER_BACKEND must be 'torch' or 'onnxruntime', got {backend!r}")
    return models


#: LayerNorm eps of BLIP's ViT as trained: the original code (salesforce/BLIP models/vit.py, LAVIS) builds
#: every LayerNorm of the vision encoder with eps 1e-6; the hub config (and transformers' default) says
#: 1e-5. The weights were trained with 1e-6, so that is what the loaded model uses (README, deviations).
BLIP_VISION_LAYER_NORM_EPS = 1e-6


def set_vision_layer_norm_eps(blip, eps: float) -> int:
    """Set eps of every LayerNorm in BLIP's vision model (and its config); returns how many were set."""
    n = 0
    for m in blip.vision_model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = float(eps)
            n += 1
    cfg = getattr(getattr(blip, "config", None), "vision_config", None)
    if cfg is not None:
        cfg.layer_norm_eps = float(eps)
    return n


ENC_TOKEN = "[ENC]"
ITM_FIRST_TOKENS = ("enc", "cls")


def itm_first_token_id(text_config, tokenizer, choice: str = "enc") -> int | None:
    """Token id to put at position 0 of the ITM text pass, or None to keep the tokenizer's [CLS].

    BLIP's retrieval checkpoints were trained with [ENC] replacing [CLS] at position 0 for image-text
    matching (salesforce/BLIP `models/blip_retrieval.py` and LAVIS `BlipITM`:
    `encoder_input_ids[:, 0] = tokenizer.enc_token_id`); transformers' BlipForImageTextRetrieval and
    BlipProcessor feed [CLS]. 'enc' (default) restores the trained condition, 'cls' keeps transformers'.

    Rule for [ENC]: BLIP's tokenizer is bert-base-uncased plus two added tokens, [DEC] (the text
    config's bos_token_id) then [ENC] (salesforce/BLIP `init_tokenizer`), so the published vocabulary is
    [tokenizer 0..N-1, DEC = N, ENC = N + 1], vocab_size = N + 2 (30522, 30523, 30524 for BLIP base).
    The published tokenizer files do not contain either token, so: the tokenizer's own "[ENC]" id when
    it has one, else bos_token_id + 1 when [DEC] directly follows the tokenizer's entries
    (bos_token_id == len(tokenizer)) and the embedding matrix has that row (bos_token_id + 1 < vocab_size).

    Raises:
        ValueError: 'enc' asked for but the model's vocabulary has no [ENC] row (use 'cls').
    """
    if choice not in ITM_FIRST_TOKENS:
        raise ValueError(f"itm_first_token must be one of {ITM_FIRST_TOKENS}, got {choice!r}")
    if choice == "cls":
        return None
    vocab = int(text_config.vocab_size)
    own = tokenizer.convert_tokens_to_ids(ENC_TOKEN) if ENC_TOKEN in tokenizer.get_vocab() else None
    if own is not None and own < vocab:
        return int(own)
    bos, n = text_config.bos_token_id, len(tokenizer)
    if bos is not None and int(bos) == n and n + 1 < vocab:
        return n + 1
    raise ValueError(
        f"itm_first_token='enc' needs BLIP's [ENC] embedding, but this model's vocabulary has no room for it: "
        f"tokenizer size {n}, text bos_token_id ([DEC]) {bos}, vocab_size {vocab} (expected bos = tokenizer "
        f"size and vocab_size = tokenizer size + 2). Use itm_first_token='cls' for this model.")
