"""Checkpoint files: which files a model needs, where they are, fetching, verifying and exporting them.

A checkpoint location is either a local directory or a hub repository id. Hub ids are resolved
against the Hugging Face model cache exactly as `huggingface_hub` lays it out:

    <cache>/models--<org>--<name>/refs/main            -> commit hash
    <cache>/models--<org>--<name>/snapshots/<commit>/  -> one entry per file (links into blobs/)
    <cache>/models--<org>--<name>/blobs/<etag>

(`<cache>` = `cache_dir`, else `$HF_HUB_CACHE`, else `$HF_HOME/hub`, default ~/.cache/huggingface/hub.)

Weights come in the formats the hub repositories publish; we read, in this order of preference:
`model.safetensors` (or a sharded `model.safetensors.index.json`), else `pytorch_model.bin` (or its
index). `Salesforce/blip-itm-*` publish only `pytorch_model.bin` on `main`; the SAM repositories ship
safetensors. A `.bin` is read only through transformers' `torch.load(weights_only=True)` path, which
refuses anything but tensors and plain containers (no code runs while loading).

The registry (`KINDS`, `KNOWN_REPOS`) says which files each kind of model needs; `ros2_iterprime
download` fetches exactly those, verifies them and can export self-contained safetensors directories.
New model families register here: add a `ModelKind` and their repo ids. Kinds: 'vlm' (BLIP ITM),
'sam' (SAM v1 proposals), 'tracker' (SAM 2.1 / EdgeTAM video models, `ros2_iterprime.tracking`;
their repositories also hold the original `.pt` pickles and YAML files, which are never fetched) and
'mask2former' (Mask2Former panoptic models as the proposal network, the official IteRPrimE setup;
`facebook/mask2former-swin-large-coco-panoptic` publishes only `pytorch_model.bin` on main).
"""
from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)

SAFETENSORS = "safetensors"
PYTORCH_BIN = "pytorch_bin"

#: weight files in order of preference, with their format
WEIGHT_FILES: tuple[tuple[str, str], ...] = (
    ("model.safetensors", SAFETENSORS),
    ("model.safetensors.index.json", SAFETENSORS),
    ("pytorch_model.bin", PYTORCH_BIN),
    ("pytorch_model.bin.index.json", PYTORCH_BIN),
)
FORMAT_NOTE = {
    SAFETENSORS: "safetensors",
    PYTORCH_BIN: "PyTorch pickle, read with torch.load(weights_only=True)",
}
#: non-weight files `download` fetches when the repository has them
SUPPORT_PATTERNS = ("*.json", "*.txt", "*.model")


@dataclass(frozen=True)
class ModelKind:
    """What one kind of model needs on disk.

    Attributes:
        name: 'vlm', 'sam', 'tracker', 'mask2former' (also the `download` flag: --vlm / --sam / --tracker /
            --mask2former).
        required: (label, any-of file names): every label must be satisfied besides the weights.
        model_class: transformers class that loads the weights.
        processor_classes: transformers classes of its processors (image processor, tokenizer), loaded
            and re-saved by `download --to`.
        param: the ROS node parameter that takes this model ('' = `name`).
        model_types: (config.json ``model_type``, class) pairs for kinds with several model classes;
            `model_class` is the fallback.
        copy_files: processor files copied verbatim by `download --to` when the checkpoint has them
            (for processors that cannot be instantiated everywhere, e.g. the torchvision-only SAM 2 ones).
        use_flag: how the CLI takes a local copy of this model ('' = ``--<name>``), for messages.
    """

    name: str
    required: tuple[tuple[str, tuple[str, ...]], ...]
    model_class: str
    processor_classes: tuple[str, ...]
    param: str = ""
    model_types: tuple[tuple[str, str], ...] = ()
    copy_files: tuple[str, ...] = ()
    use_flag: str = ""

    @property
    def node_param(self) -> str:
        return self.param or self.name

    def class_for(self, location: Path | None) -> str:
        """The model class name for the checkpoint in `location` (by its config.json ``model_type``)."""
        if self.model_types and location is not None:
            import json

            try:
                model_type = str(json.loads((Path(location) / "config.json").read_text()).get("model_type", ""))
            except (OSError, ValueError, AttributeError):
                model_type = ""
            for prefix, cls in self.model_types:
                if model_type == prefix:
                    return cls
        return self.model_class


KINDS: dict[str, ModelKind] = {
    "vlm": ModelKind("vlm", (
        ("config", ("config.json",)),
        ("tokenizer", ("tokenizer.json",)),  # a fast tokenizer is required (word offsets)
        ("tokenizer config", ("tokenizer_config.json",)),
        ("image processor", ("preprocessor_config.json",)),
    ), "BlipForImageTextRetrieval", ("BlipImageProcessorPil", "AutoTokenizer")),
    "sam": ModelKind("sam", (
        ("config", ("config.json",)),
        ("image processor", ("preprocessor_config.json",)),
    ), "SamModel", ("SamImageProcessorPil",)),
    # SAM 2.1 / EdgeTAM video models (tracking; also SAM 2 proposals). The converters
    # (transformers convert_sam2_video_to_hf.py / convert_edgetam_video_to_hf.py) save the model
    # (config.json, model.safetensors) and a Sam2VideoProcessor (preprocessor_config.json,
    # video_preprocessor_config.json, processor_config.json). Only config + weights are required:
    # `models.trackers.load_tracker` falls back to the processor defaults (1024 px, ImageNet mean/std).
    "tracker": ModelKind("tracker", (
        ("config", ("config.json",)),
    ), "Sam2VideoModel", (), param="tracker_model",
        model_types=(("sam2_video", "Sam2VideoModel"), ("edgetam_video", "EdgeTamVideoModel")),
        copy_files=("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")),
    # Mask2Former (proposals_model: mask2former). The converter saved the model and a
    # Mask2FormerImageProcessor (preprocessor_config.json); only config + weights are required, because
    # the test-time input follows the official detectron2 config, not that file
    # (`models.mask2former_preprocess`); it is fetched and copied by `download --to` all the same.
    "mask2former": ModelKind("mask2former", (
        ("config", ("config.json",)),
    ), "Mask2FormerForUniversalSegmentation", (), param="proposals_model",
        copy_files=("preprocessor_config.json",), use_flag="--proposals-model"),
}

#: published tracker checkpoints (`models.trackers.KNOWN_TRACKERS`; `download --tracker ID`)
TRACKER_REPOS: tuple[str, ...] = (
    "facebook/sam2.1-hiera-tiny",
    "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-base-plus",
    "facebook/sam2.1-hiera-large",
    "facebook/EdgeTAM",
)

#: published Mask2Former COCO panoptic checkpoints (`download --mask2former ID`); the first is the paper's
MASK2FORMER_REPOS: tuple[str, ...] = (
    "facebook/mask2former-swin-large-coco-panoptic",
    "facebook/mask2former-swin-base-coco-panoptic",
    "facebook/mask2former-swin-small-coco-panoptic",
)

#: hub repositories this package knows, with their kind (`download --repo ID` accepts these)
KNOWN_REPOS: dict[str, str] = {
    "Salesforce/blip-itm-base-coco": "vlm",
    "Salesforce/blip-itm-large-coco": "vlm",
    "Salesforce/blip-itm-base-flickr": "vlm",
    "Salesforce/blip-itm-large-flickr": "vlm",
    "facebook/sam-vit-base": "sam",
    "facebook/sam-vit-large": "sam",
    "facebook/sam-vit-huge": "sam",
    **{repo: "tracker" for repo in TRACKER_REPOS},
    **{repo: "mask2former" for repo in MASK2FORMER_REPOS},
}


# --------------------------------------------------------------------------------------------------
# locating files
# --------------------------------------------------------------------------------------------------
def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The model cache directory in use (`cache_dir`, else huggingface_hub's HF_HUB_CACHE)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def cached_snapshot(repo_id: str, cache_dir: str | os.PathLike | None = None,
                    revision: str = "main") -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` (a branch name or a commit), or None."""
    from huggingface_hub.file_download import repo_folder_name

    storage = hub_cache_dir(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = revision
    ref = storage / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    snap = storage / "snapshots" / commit
    return snap if snap.is_dir() else None


def locate(model_id: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """A local directory as given, else the cached snapshot of the hub id (None when not cached)."""
    if os.path.isdir(model_id):
        return Path(model_id)
    if _looks_like_path(model_id):
        return None
    return cached_snapshot(model_id, cache_dir)


def _looks_like_path(model_id: str) -> bool:
    """True for what cannot be a hub id ('org/name' or 'name'): absolute, relative or nested paths."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or (os.sep != "/" and os.sep in model_id)


@dataclass(frozen=True)
class WeightsFile:
    """The weights of one checkpoint location: file name, format and (for shards) every file."""

    name: str
    format: str
    files: tuple[str, ...]
    missing: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        return FORMAT_NOTE[self.format]


def _index_shards(index_path: Path) -> tuple[str, ...]:
    import json

    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    return tuple(sorted(set(weight_map.values())))


def find_weights(location: Path) -> WeightsFile | None:
    """The preferred weight file present in `location` (safetensors first), or None."""
    for name, fmt in WEIGHT_FILES:
        p = location / name
        if p.is_file():
            if name.endswith(".index.json"):
                shards = _index_shards(p)
                missing = tuple(s for s in shards if not (location / s).is_file())
                return WeightsFile(name, fmt, (name, *shards), missing)
            return WeightsFile(name, fmt, (name,))
    return None


def choose_weight_files(repo_files: list[str]) -> list[str]:
    """From a repository's file list, the weight files to fetch: safetensors if any, else the .bin."""
    names = set(repo_files)
    for fmt in (SAFETENSORS, PYTORCH_BIN):
        for name, f in WEIGHT_FILES:
            if f != fmt or name not in names:
                continue
            if name.endswith(".index.json"):
                stem = "model-" if fmt == SAFETENSORS else "pytorch_model-"
                ext = ".safetensors" if fmt == SAFETENSORS else ".bin"
                return [name] + sorted(n for n in names if n.startswith(stem) and n.endswith(ext))
            return [name]
    return []


# --------------------------------------------------------------------------------------------------
# verifying
# --------------------------------------------------------------------------------------------------
@dataclass
class CheckReport:
    """What one checkpoint location holds.

    Attributes:
        model_id: hub id or directory as given. kind: 'vlm' / 'sam' / ...
        location: the directory checked (cached snapshot or local dir), None when nothing is there.
        weights: the weights found (None = none). present: label -> file name. missing: labels/files.
    """

    model_id: str
    kind: str
    location: Path | None
    weights: WeightsFile | None = None
    present: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.location is not None and not self.missing

    def describe(self) -> str:
        head = f"{self.model_id} ({self.kind})"
        if self.location is None:
            return f"{head}: MISSING: nothing in the model cache ({'; '.join(self.missing)})"
        found = ([f"weights {self.weights.name} ({self.weights.note})"] if self.weights else []) + [
            f"{label} {name}" for label, name in self.present.items()]
        text = f"{head}: {'OK' if self.ok else 'INCOMPLETE'} in {self.location}\n  found: {', '.join(found) or '-'}"
        if self.missing:
            text += f"\n  MISSING: {', '.join(self.missing)}"
        return text


def check_location(model_id: str, kind: str, cache_dir: str | os.PathLike | None = None) -> CheckReport:
    """Check that weights, config, tokenizer and processor files of `model_id` are all present."""
    spec = KINDS[kind]
    loc = locate(model_id, cache_dir)
    if loc is None:
        where = "directory does not exist" if _looks_like_path(model_id) else \
            f"no snapshot of {model_id} under {hub_cache_dir(cache_dir)}"
        wanted = ["weights (model.safetensors or pytorch_model.bin)"] + [
            f"{label} ({' or '.join(names)})" for label, names in spec.required]
        return CheckReport(model_id, kind, None, missing=[where] + wanted)
    rep = CheckReport(model_id, kind, loc, weights=find_weights(loc))
    if rep.weights is None:
        rep.missing.append("weights (model.safetensors or pytorch_model.bin)")
    elif rep.weights.missing:
        rep.missing.append(f"weight shards {', '.join(rep.weights.missing)}")
    for label, names in spec.required:
        hit = next((n for n in names if (loc / n).is_file()), None)
        if hit:
            rep.present[label] = hit
        else:
            rep.missing.append(f"{label} ({' or '.join(names)})")
    return rep


# --------------------------------------------------------------------------------------------------
# fetching (needs the hub) and exporting
# --------------------------------------------------------------------------------------------------
def files_to_fetch(repo_files: list[str]) -> list[str]:
    """Weights (one format) + config / tokenizer / processor files of a repository file list."""
    weights = choose_weight_files(repo_files)
    support = [f for f in repo_files if "/" not in f and f not in weights
               and any(fnmatch.fnmatch(f, p) for p in SUPPORT_PATTERNS)
               and not f.endswith(".index.json")]
    return weights + sorted(support)


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the model hub cannot be reached (name resolution or TCP connect to its endpoint), or None.

    One quick check before a download: without it, huggingface_hub retries a failing request 5 times
    with back-off (~30 s and five log lines on a machine without internet) before the one clear error.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"the model hub {constants.ENDPOINT} is unreachable ({type(exc).__name__}: {exc})"
    return None


def fetch(repo_id: str, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Download the files `files_to_fetch` picks for `repo_id` into the model cache; returns them.

    Raises ConnectionError at once when the hub cannot be reached (:func:`hub_unreachable`).
    """
    from huggingface_hub import HfApi, snapshot_download

    why = hub_unreachable()
    if why:
        raise ConnectionError(why)
    repo_files = HfApi().list_repo_files(repo_id)
    wanted = files_to_fetch(repo_files)
    if not choose_weight_files(repo_files):
        LOG.error("%s publishes no model.safetensors or pytorch_model.bin on main", repo_id)
    LOG.info("downloading %s: %s", repo_id, ", ".join(wanted))
    snapshot_download(repo_id, allow_patterns=wanted, cache_dir=str(cache_dir) if cache_dir else None)
    return wanted


def export_name(model_id: str) -> str:
    """Folder name for `download --to DIR`: the repository name (blip-itm-base-coco, sam-vit-base)."""
    return Path(model_id.rstrip("/")).name
