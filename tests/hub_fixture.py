"""A hub-faithful model cache for tests: `Salesforce/blip-itm-base-coco`, `facebook/sam-vit-base`,
`facebook/sam2.1-hiera-tiny` and `facebook/mask2former-swin-large-coco-panoptic` laid out exactly as
`huggingface_hub` caches them, with the files those repositories publish (the ones `download` fetches),
shrunk.

    build_hub_cache(tmp_path / "hf_home")   # then HF_HOME=<that> HF_HUB_OFFLINE=1, or cache_dir=<hub dir>

Layout (huggingface_hub `file_download.py` / `_snapshot_download.py`):
    hub/models--Salesforce--blip-itm-base-coco/refs/main             commit hash, no newline
    hub/models--Salesforce--blip-itm-base-coco/snapshots/<commit>/F  relative symlink ../../blobs/<etag>
    hub/models--Salesforce--blip-itm-base-coco/blobs/<etag>          git-blob sha1, or sha256 for LFS files

What each repository holds here (as on the hub's `main`):
- BLIP: config.json (every key of the published file, `ros2_iterprime.models.published`; widths and depths
  shrunk, heads / vocab / special ids / image size kept), `pytorch_model.bin` ONLY (no safetensors:
  those exist only on an unmerged conversion PR), the tokenizer files of bert-base-uncased
  (tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt: 30522 entries with BERT's
  special tokens at their real ids and no [DEC]/[ENC]; the word list is a small one padded with
  [unusedN] entries), and preprocessor_config.json (384x384, OpenAI CLIP mean/std).
- SAM: config.json, model.safetensors, preprocessor_config.json (longest edge 1024).
- SAM 2.1 hiera-tiny (tracker): the files transformers' converter writes (`convert_sam2_video_to_hf.py`:
  `Sam2VideoProcessor.save_pretrained` + `Sam2VideoModel.save_pretrained`) and that the hub's main holds
  since "Add Transformers weights (#1)": config.json (model_type sam2_video), model.safetensors,
  preprocessor_config.json, video_preprocessor_config.json, processor_config.json. The repository also
  holds the original `sam2.1_hiera_tiny.pt` pickle and `sam2.1_hiera_t.yaml`, which `download` never
  fetches (see `SAM21_HUB_LISTING`). Sources of each file's content: `sam21_fixture_files`.
- Mask2Former Swin-L COCO panoptic (the official IteRPrimE proposal network): what main holds
  (`MASK2FORMER_HUB_LISTING`): config.json (every key of the published file,
  `ros2_iterprime.models.published`; widths and depths shrunk, 200 queries / 133 classes / window 12 /
  384 px / Swin heads kept), `pytorch_model.bin` ONLY (its safetensors copy exists only on the unmerged
  hub PR #3), with the state-dict names of transformers 4.26 (Swin `attention.self.query`, ...,
  and the then persistent `relative_position_index` buffers, which 5.x no longer registers and must
  tolerate), and preprocessor_config.json (the 538-byte published file: a 384 x 384 processor that the
  official-input preprocessing does not read).

State-dict key names are those of the checkpoints (transformers 4.26 / 4.29 module names, unchanged
in 5.x), including the BLIP text `embeddings.position_ids` buffer that the old save kept and 5.x no
longer registers as persistent (an unexpected key the loader must tolerate).
The BLIP text encoder has FIXTURE_TEXT_LAYERS layers so the default Grad-CAM layer is not the last.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ros2_iterprime.models.published import published
from ros2_iterprime.models.tiny import TINY_WORDS, bert_layout_vocab, bert_uncased_backend

BLIP_REPO = "Salesforce/blip-itm-base-coco"
SAM_REPO = "facebook/sam-vit-base"
SAM21_REPO = "facebook/sam2.1-hiera-tiny"
MASK2FORMER_REPO = "facebook/mask2former-swin-large-coco-panoptic"
#: the files on `main` of facebook/mask2former-swin-large-coco-panoptic (hub file listing, 10 commits,
#: last "Update README.md"); model.safetensors is only on refs/pr/3
MASK2FORMER_HUB_LISTING = [".gitattributes", "README.md", "config.json", "preprocessor_config.json",
                           "pytorch_model.bin"]
#: the files on `main` of facebook/sam2.1-hiera-tiny: the original release (.gitattributes, README.md,
#: sam2.1_hiera_t.yaml, sam2.1_hiera_tiny.pt; hub file listing) plus the converter's transformers files
SAM21_HUB_LISTING = [".gitattributes", "README.md", "config.json", "model.safetensors", "preprocessor_config.json",
                     "processor_config.json", "sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt",
                     "video_preprocessor_config.json"]
FIXTURE_TEXT_LAYERS = 12  # the real depth (cheap at width 48): the default Grad-CAM layer is 7 as with the real model
FIXTURE_WORDS = [*TINY_WORDS, "zebra", "square", "grey", "background", "bright"]


@dataclass(frozen=True)
class HubFixture:
    """Paths of a built fixture: HF_HOME, its hub cache and each repo's snapshot folder."""

    hf_home: Path
    hub: Path
    snapshots: dict[str, Path]


# ------------------------------------------------------------------------------------------ cache layout
def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_cached_repo(hub: Path, repo_id: str, files: dict[str, bytes], lfs: set[str] | None = None) -> Path:
    """Write `files` as one commit of `repo_id` into the hub cache `hub`; returns the snapshot folder.

    Large files (`lfs`, e.g. weights) are stored under their sha256, others under their git blob sha1,
    as huggingface_hub names blobs by the file's etag.
    """
    lfs = lfs or set()
    storage = hub / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(("fixture:" + repo_id + ":" + ",".join(sorted(files))).encode()).hexdigest()
    snap = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest() if name in lfs else _git_blob_sha1(data)
        blob = storage / "blobs" / etag
        blob.write_bytes(data)
        link = snap / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


# ------------------------------------------------------------------------------------------ BLIP
def blip_tokenizer_files() -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt of a BERT-uncased tokenizer."""
    vocab = bert_layout_vocab(FIXTURE_WORDS)
    return {
        "tokenizer.json": bert_uncased_backend(vocab).to_str(pretty=True).encode(),
        "tokenizer_config.json": _json(published("BLIP_TOKENIZER_CONFIG")),
        "special_tokens_map.json": _json(published("BLIP_SPECIAL_TOKENS_MAP")),
        "vocab.txt": ("\n".join(vocab) + "\n").encode(),
    }


def blip_fixture_config() -> dict:
    """The published BLIP ITM base config with widths/depths shrunk (every key kept)."""
    cfg = published("BLIP_ITM_BASE_COCO_CONFIG")
    t, v = cfg["text_config"], cfg["vision_config"]
    # kept: vocab_size 30524, bos 30522, pad 0, sep 102, eos 2, is_decoder, 12 heads, 512 positions
    t.update(hidden_size=48, intermediate_size=96, num_hidden_layers=FIXTURE_TEXT_LAYERS, projection_dim=48)
    # kept: image_size 384, patch 16 (24x24 patches), 12 heads, layer_norm_eps 1e-5
    v.update(hidden_size=48, intermediate_size=96, num_hidden_layers=2, projection_dim=48)
    # The published file has no encoder_hidden_size (its default 768 = ViT-B width); the shrunk vision
    # width must be stated for the text cross-attention.
    t["encoder_hidden_size"] = v["hidden_size"]
    cfg.update(image_text_hidden_size=16, projection_dim=48)
    return cfg


def blip_fixture_files(seed: int = 0) -> dict[str, bytes]:
    from transformers import BlipConfig, BlipForImageTextRetrieval

    cfg = blip_fixture_config()
    config = BlipConfig.from_dict(json.loads(json.dumps(cfg)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForImageTextRetrieval(config)
        # random weights of trained-like scale (BLIP vision init_range 1e-10 would give ~0 activations)
        for p in model.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.05)
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    # persistent in the transformers 4.26 that saved the real checkpoint (non-persistent since 4.31)
    state["text_encoder.embeddings.position_ids"] = torch.arange(
        cfg["text_config"]["max_position_embeddings"]).expand((1, -1)).clone()
    buf = io.BytesIO()
    torch.save(state, buf)
    return {
        "config.json": _json(cfg),
        "pytorch_model.bin": buf.getvalue(),
        "preprocessor_config.json": _json(published("BLIP_ITM_BASE_COCO_PREPROCESSOR")),
        **blip_tokenizer_files(),
    }


# ------------------------------------------------------------------------------------------ SAM
def sam_fixture_config() -> dict:
    """The published SAM ViT-B config with widths/depths shrunk (every key kept; 1024 px kept)."""
    cfg = published("SAM_VIT_BASE_CONFIG")
    cfg["vision_config"].update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                                output_channels=32, num_pos_feats=16, global_attn_indexes=[1])
    cfg["prompt_encoder_config"].update(hidden_size=32)
    cfg["mask_decoder_config"].update(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
    return cfg


def sam_fixture_files(seed: int = 0) -> dict[str, bytes]:
    import tempfile

    from transformers import SamConfig, SamModel

    cfg = sam_fixture_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = SamModel(SamConfig.from_dict(json.loads(json.dumps(cfg))))
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)  # safetensors, tied weights written once, as the hub file
        weights = (Path(d) / "model.safetensors").read_bytes()
    return {
        "config.json": _json(cfg),
        "model.safetensors": weights,
        "preprocessor_config.json": _json(published("SAM_VIT_BASE_PREPROCESSOR")),
    }


# ------------------------------------------------------------------------------------------ SAM 2.1 (tracker)
#: processor files of the SAM 2.1 repositories. processor_config.json: as published (hub file of
#: facebook/sam2.1-hiera-tiny main, identical in -small / -base-plus). The two others: what
#: `Sam2ImageProcessorFast()` / `Sam2VideoVideoProcessor()` (the converter's processors) save, from their
#: class defaults in transformers 5.23 (`image_processing_sam2.py`, `video_processing_sam2_video.py`:
#: 1024x1024, bilinear (2), rescale 1/255, ImageNet mean/std, image masks 256x256); those classes need
#: torchvision and cannot be instantiated here, and the exact key set of the hub files is not verified.
SAM21_PROCESSOR_CONFIG = {"point_pad_value": -10, "processor_class": "Sam2VideoProcessor", "target_size": 1024}
_SAM21_COMMON = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "processor_class": "Sam2VideoProcessor",
    "resample": 2, "rescale_factor": 0.00392156862745098, "size": {"height": 1024, "width": 1024},
}
SAM21_PREPROCESSOR = {**_SAM21_COMMON, "image_processor_type": "Sam2ImageProcessorFast",
                      "mask_size": {"height": 256, "width": 256}}
SAM21_VIDEO_PREPROCESSOR = {**_SAM21_COMMON, "video_processor_type": "Sam2VideoVideoProcessor"}


def sam21_fixture_config() -> dict:
    """The SAM 2.1 hiera-tiny config.json with widths/depths shrunk (every key kept; 1024 px kept).

    Keys and values: `tracking.models.published_config("sam2.1-hiera-tiny")` (the converter's
    `get_config("sam2.1_hiera_tiny")`: `Sam2VideoConfig` defaults with both SAM 2.1 flags on) as
    transformers 5.23's `save_pretrained` writes it. Kept: 1024 px, the feature sizes 256/128/64, the
    window sizes, 7 memories, 16 object pointers, 64-channel memories. Shrunk: Hiera widths 8..64 and
    blocks [1, 1, 2, 1], hidden size 128 (see `tracking.models` for the 64/128 constraints), one layer
    per memory-attention / fuser / two-way transformer.
    """
    import tempfile

    from ros2_iterprime.models.trackers import published_config

    with tempfile.TemporaryDirectory() as d:
        published_config(SAM21_REPO).save_pretrained(d)
        cfg = json.loads((Path(d) / "config.json").read_text())
    v = cfg["vision_config"]
    v["backbone_config"].update(hidden_size=8, embed_dim_per_stage=[8, 16, 32, 64],
                                num_attention_heads_per_stage=[1, 1, 2, 2], blocks_per_stage=[1, 1, 2, 1],
                                global_attention_blocks=[3])
    v.update(backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=128)
    cfg["prompt_encoder_config"].update(hidden_size=128)
    cfg["mask_decoder_config"].update(hidden_size=128, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                      iou_head_hidden_dim=16)
    cfg.update(memory_attention_hidden_size=128, memory_attention_num_layers=1,
               memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=128,
               mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64,
               memory_fuser_num_layers=1, architectures=["Sam2VideoModel"])
    return cfg


def sam21_fixture_files(seed: int = 0) -> dict[str, bytes]:
    import tempfile

    from transformers import Sam2VideoConfig, Sam2VideoModel

    cfg = sam21_fixture_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        model = Sam2VideoModel(Sam2VideoConfig.from_dict(json.loads(json.dumps(cfg))))
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)  # safetensors, as the converter's save_pretrained
        weights = (Path(d) / "model.safetensors").read_bytes()
    return {
        "config.json": _json(cfg),
        "model.safetensors": weights,
        "preprocessor_config.json": _json(SAM21_PREPROCESSOR),
        "video_preprocessor_config.json": _json(SAM21_VIDEO_PREPROCESSOR),
        "processor_config.json": _json(SAM21_PROCESSOR_CONFIG),
    }


# ------------------------------------------------------------------------------------------ Mask2Former
def mask2former_fixture_config() -> dict:
    """The published Mask2Former Swin-L COCO panoptic config with widths/depths shrunk (every key kept).

    Kept: 200 queries, 133 labels, Swin window 12 / patch 4 / 384 px / heads [6, 12, 24, 48], 8 decoder
    heads, strides. Shrunk: Swin embed 48 (head width 8; hidden_size 384 follows), one block per stage,
    32-wide pixel and transformer decoders, one deformable encoder layer, 3 decoder layers (2 masked-
    attention layers; `num_hidden_layers` follows), FFN 64. At the official 800-pixel input one pass
    still takes seconds on a CPU: the fixture is faithful in input size, not fast.
    """
    cfg = published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_CONFIG")
    cfg["backbone_config"].update(embed_dim=48, depths=[1, 1, 1, 1], hidden_size=48 * 8)
    cfg.update(feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_layers=1, encoder_feedforward_dim=64,
               dim_feedforward=64, decoder_layers=3, num_hidden_layers=3)
    return cfg


def mask2former_fixture_files(seed: int = 0) -> dict[str, bytes]:
    import tempfile

    from safetensors.torch import load_file
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    cfg = mask2former_fixture_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 4)
        model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig.from_dict(json.loads(json.dumps(cfg))))
        with torch.no_grad():  # trained-like mask logits, so that the 200 masks differ (see models.tiny)
            for name, p in model.model.transformer_module.named_parameters():
                if "mask_embedder" in name or "queries_features" in name:
                    p.normal_(0.0, 1.0)
    with tempfile.TemporaryDirectory() as d:
        # transformers 5.x writes the checkpoint names it reads (Swin attention.self.query, ...), i.e. 4.26's
        model.save_pretrained(d)
        state = load_file(str(Path(d) / "model.safetensors"))
    window = cfg["backbone_config"]["window_size"]
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    index = rel[..., 0] * (2 * window - 1) + rel[..., 1]  # (window^2, window^2), as 4.26 registered it
    for key in [k for k in state if k.endswith("attention.self.relative_position_bias_table")]:
        state[key.replace("relative_position_bias_table", "relative_position_index")] = index.clone()
    buf = io.BytesIO()
    torch.save(state, buf)
    return {
        "config.json": _json(cfg),
        "pytorch_model.bin": buf.getvalue(),
        "preprocessor_config.json": _json(published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_PREPROCESSOR")),
    }


# ------------------------------------------------------------------------------------------ entry point
def build_hub_cache(hf_home: str | os.PathLike, seed: int = 0, tracker: bool = True,
                    mask2former: bool = False) -> HubFixture:
    """Write the repositories into `hf_home/hub` (the cache HF_HOME=hf_home uses); `tracker`: with SAM 2.1,
    `mask2former`: with Mask2Former Swin-L COCO panoptic."""
    hf_home = Path(hf_home)
    hub = hf_home / "hub"
    snaps = {
        BLIP_REPO: write_cached_repo(hub, BLIP_REPO, blip_fixture_files(seed), lfs={"pytorch_model.bin"}),
        SAM_REPO: write_cached_repo(hub, SAM_REPO, sam_fixture_files(seed), lfs={"model.safetensors"}),
    }
    if tracker:
        snaps[SAM21_REPO] = write_cached_repo(hub, SAM21_REPO, sam21_fixture_files(seed), lfs={"model.safetensors"})
    if mask2former:
        snaps[MASK2FORMER_REPO] = write_cached_repo(hub, MASK2FORMER_REPO, mask2former_fixture_files(seed),
                                                    lfs={"pytorch_model.bin"})
    return HubFixture(hf_home, hub, snaps)


def fixture_env(fx: HubFixture, base: dict | None = None) -> dict:
    """Environment for a subprocess that must see only the fixture cache, offline."""
    env = dict(os.environ if base is None else base)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(var, None)
    env.update(HF_HOME=str(fx.hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _json(d: dict) -> bytes:
    return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()
