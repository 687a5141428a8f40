"""Model registry and loading: real BLIP ITM / SAM checkpoints, local directories, and `tiny-random`.

Real weights are loaded with `from_pretrained` (safetensors only, never `trust_remote_code`): first
from the local model cache / a local directory, then from the hub unless `HF_HUB_OFFLINE=1` or
`local_files_only=True`. When they are missing, one `ModelNotFoundError` names the model and says how
to fetch it (`ros2_iterprime download`).

`tiny-random` builds tiny, randomly initialised configs of the SAME model classes in-process (seeded,
no files), the way `transformers` tests its models. Its outputs are meaningless: it exists for tests,
smoke runs and plumbing checks, and says so loudly in the log.
"""
from __future__ import annotations

import logging
import os
import string
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ModelNotFoundError

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
#: files `download` fetches (weights as safetensors only, plus configs, tokenizer and processor files)
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


@dataclass
class LoadedModels:
    """Everything the predictor needs, on one device and dtype."""

    blip: Any  # transformers.BlipForImageTextRetrieval
    blip_processor: Any  # transformers.BlipImageProcessorPil
    tokenizer: Any  # a fast BERT tokenizer (offsets are needed)
    sam: Any  # transformers.SamModel
    sam_processor: Any  # transformers.SamImageProcessorPil
    vlm_id: str
    sam_id: str
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


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' is fp32 on CPU and fp16 on CUDA; 'fp16'/'bf16' are honoured as given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, fp32, fp16 or bf16")
    return _DTYPES[dtype]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def missing_weights_message(kind: str, model_id: str, reason: str) -> str:
    local = os.path.isdir(model_id)
    how = (
        f"the directory {model_id!r} must hold config.json and *.safetensors (and the tokenizer / "
        "preprocessor files) as saved by `save_pretrained` or downloaded from the hub"
        if local
        else f"fetch it once on a machine with internet: `ros2_iterprime download --{kind} {model_id}` "
        f"(or `hf download {model_id}`), then copy the model cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}/hub) to this machine, or pass a local "
        f"directory (--{kind} /path/to/dir); use --model tiny-random for a weight-free smoke run"
    )
    return f"{kind.upper()} model {model_id!r} could not be loaded: {reason}. To get it, {how}."


def _from_pretrained(cls, kind: str, model_id: str, local_files_only: bool | None, cache_dir: str | None, **kw):
    """cls.from_pretrained, cache first, hub second (unless offline); one clear error when missing."""
    attempts = [True] if (local_files_only or _offline() or os.path.isdir(model_id)) else [True, False]
    if local_files_only is False and not _offline():
        attempts = [False]
    last: Exception | None = None
    for local_only in attempts:
        try:
            return cls.from_pretrained(model_id, local_files_only=local_only, cache_dir=cache_dir, **kw)
        except (OSError, ValueError, EnvironmentError) as exc:  # transformers raises OSError for missing files
            last = exc
    reason = str(last).strip().splitlines()[0].rstrip(".") if last else "unknown error"
    raise ModelNotFoundError(missing_weights_message(kind, model_id, reason)) from last


def load_models(
    vlm: str = DEFAULT_VLM,
    sam: str = DEFAULT_SAM,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    local_files_only: bool | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> LoadedModels:
    """Load (or build, for 'tiny-random') both models, frozen, in eval mode, on `device`."""
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
        blip, blip_proc, tok = build_tiny_blip(seed)
    else:
        common = dict(local_files_only=local_files_only, cache_dir=cache_dir)
        blip = _from_pretrained(BlipForImageTextRetrieval, "vlm", vlm, use_safetensors=True,
                                attn_implementation="eager", **common)
        blip_proc = _from_pretrained(BlipImageProcessorPil, "vlm", vlm, **common)
        tok = _from_pretrained(AutoTokenizer, "vlm", vlm, use_fast=True, **common)
    if sam == TINY:
        sam_model, sam_proc = build_tiny_sam(seed)
    else:
        common = dict(local_files_only=local_files_only, cache_dir=cache_dir)
        sam_model = _from_pretrained(SamModel, "sam", sam, use_safetensors=True, **common)
        sam_proc = _from_pretrained(SamImageProcessorPil, "sam", sam, **common)
    if not getattr(tok, "is_fast", False):
        raise ModelNotFoundError(f"VLM {vlm!r}: a fast tokenizer (tokenizer.json) is required for word offsets")
    for m in (blip, sam_model):
        m.eval()
        m.requires_grad_(False)  # Grad-CAM takes gradients w.r.t. attention maps only, never parameters
        m.to(device=dev, dtype=torch.float32)
    # Mixed precision: only the two per-image encoders (nearly all the FLOPs) run in `dt`. The Grad-CAM
    # path (BLIP text encoder + ITM head) stays fp32 because attention gradients underflow fp16, and
    # SAM's small prompt decoder stays fp32 so mask boundaries do not move (tests/test_bench.py).
    blip.vision_model.to(dtype=dt)
    sam_model.vision_encoder.to(dtype=dt)
    return LoadedModels(blip, blip_proc, tok, sam_model, sam_proc, vlm, sam, dev, dt)


def download(vlm: str = DEFAULT_VLM, sam: str = DEFAULT_SAM, cache_dir: str | None = None) -> list[str]:
    """Fetch both checkpoints (safetensors + configs) into the model cache; returns the local paths."""
    from huggingface_hub import snapshot_download

    paths = []
    for repo in (vlm, sam):
        if repo == TINY:
            continue
        LOG.info("downloading %s", repo)
        paths.append(snapshot_download(repo, allow_patterns=DOWNLOAD_PATTERNS, cache_dir=cache_dir))
    return paths


# --------------------------------------------------------------------------------------------------
# tiny-random: same classes, tiny configs, built in-process (no files, no network)
# --------------------------------------------------------------------------------------------------
TINY_WORDS = (
    "there is a an the of on in at to with and by near behind next front left right middle center top "
    "bottom side far closest man woman guy girl boy person people kid child cup laptop table chair dog cat "
    "car bike red blue green white black yellow holding wearing sitting standing shirt one two"
).split()


def build_tiny_tokenizer():
    """A BERT-uncased-style WordPiece fast tokenizer with a small in-memory vocabulary.

    Every ASCII word tokenises (single letters/digits and their '##' continuations are in the vocab),
    so offsets and word-piece mapping behave as with the real 30k vocabulary.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    punct = list(string.punctuation)
    vocab_list = specials + chars + ["##" + c for c in chars] + punct + [w for w in TINY_WORDS if w not in chars]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return BertTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=64,
    )


def build_tiny_blip(seed: int = 0):
    """Tiny BlipForImageTextRetrieval (4 text + 2 vision layers, 4 heads, 64x64 input, 8x8 patch grid).

    Four text layers put the default Grad-CAM layer (`gradcam.default_layer`: 2) before the last one,
    where the ITM gradient reaches every token, so the tiny model exercises PWEM as the real one does.
    """
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessorPil

    tok = build_tiny_tokenizer()
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
            num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=64,
            pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=64, patch_size=8,
            # BlipVisionConfig defaults to initializer_range=1e-10: activations of ~1e-7 would underflow
            # fp16 and make every map degenerate. 0.02 gives O(1) activations like trained weights.
            initializer_range=0.02,
        ),
        projection_dim=16,
        image_text_hidden_size=32,
    )
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForImageTextRetrieval(config)
    proc = BlipImageProcessorPil(size={"height": 64, "width": 64})
    return model, proc, tok


def build_tiny_sam(seed: int = 0):
    """Tiny SamModel (2-layer ViT, 128x128 input, 8x8 embedding, 32x32 low-res masks)."""
    from transformers import SamConfig, SamImageProcessorPil, SamModel

    config = SamConfig(
        vision_config=dict(
            hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
            image_size=128, patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=4,
            num_pos_feats=8,
        ),
        prompt_encoder_config=dict(hidden_size=16, image_size=128, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = SamModel(config)
    proc = SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    return model, proc
