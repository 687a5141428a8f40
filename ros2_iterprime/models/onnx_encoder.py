"""Optional ONNX Runtime path for the image encoders (SAM, SAM 2.1): exported by this package, cached, opt-in.

    from ros2_iterprime.models.onnx_encoder import use_onnxruntime, use_onnxruntime_tracker
    use_onnxruntime(models)            # models = load_models(...): SAM's get_image_embeddings now runs in ORT
    use_onnxruntime_tracker(tracker)   # tracker = load_tracker(...): SAM 2.1's get_image_features in ORT

The SAM 2.1 / EdgeTAM path exports ``get_image_features`` (Hiera trunk + FPN neck + the mask decoder's
two high-resolution projections, as transformers computes them per frame): (1, 3, S, S) -> three
feature maps and their three position encodings, (HW, 1, C) each. It serves the tracker's every frame
and, through the same model instance, SAM 2.1 proposals.

`export_sam_encoder` writes SAM's image encoder (``SamModel.get_image_embeddings``: (1, 3, 1024, 1024)
pixels -> (1, 256, 64, 64) embedding) as ONNX with torch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``: works with torch 2.13 CPU and no torchvision; the dynamo
exporter needs the extra `onnxscript` package), opset 17, in fp32 (ONNX Runtime's CPU provider has
fast fp32 kernels, not bf16 ones). The file is cached under `cache_dir()`
(``$ITERPRIME_ONNX_CACHE``, else ``$HF_HOME/ros2_iterprime/onnx``, else
``~/.cache/huggingface/ros2_iterprime/onnx``), named by the model id, a fingerprint of its weights,
the input size, the dtype and the torch / transformers / onnxruntime versions: a new checkpoint or a
library upgrade exports again, an unchanged one loads the file.

**Same outputs**: `check_same_outputs` runs both paths on one input; the documented tolerance is
`TOLERANCE` (max |diff| / max |torch output|), the bench's ``onnxruntime_sam_encoder`` entry measures it
on full-size random weights and times both. **Default**: off. The bench decides: the ORT path is used
by default only where it is faster on the machine with the same outputs; on this project's CPU the
bf16 torch path is expected to be the faster one (ORT's CPU provider runs the graph in fp32; the quiet
bench run decides, docs/performance.md), so nothing switches it on by itself;
`use_onnxruntime` / `use_onnxruntime_tracker` (or ``ITERPRIME_ENCODER_BACKEND=onnxruntime`` for `load_models`
and `load_tracker`, e.g. in the ROS node's environment) opt in.

**Jetson / TensorRT (untested here)**: the same ONNX file is what TensorRT consumes
(``trtexec --onnx=<file> --fp16 --saveEngine=sam_vit_b.plan``, or ONNX Runtime's TensorRT execution
provider, which `use_onnxruntime(providers=[...])` accepts). No Jetson and no TensorRT were available to
this work: that route is documented, not tested.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)

#: largest accepted max |ORT - torch| / max |torch| of the SAM embedding (fp32 against fp32: the two
#: runtimes sum in different orders; measured ~1e-6 on the tiny model, see the bench for full size)
TOLERANCE = 1e-3
OPSET = 17
BACKENDS = ("torch", "onnxruntime")


def available() -> bool:
    """Whether onnxruntime can be imported (`pip install onnxruntime`)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    if os.environ.get("ITERPRIME_ONNX_CACHE"):
        return Path(os.environ["ITERPRIME_ONNX_CACHE"])
    hf = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf) / "ros2_iterprime" / "onnx"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters (names, shapes and a sample of their values)."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        flat = p.detach().reshape(-1)
        sample = torch.cat([flat[:16], flat[-16:], flat.float().sum().reshape(1).to(flat.dtype)])
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(sample.float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return "none"


def cache_path(model_id: str, module: torch.nn.Module, image_size: int, dtype: str = "fp32") -> Path:
    """The cache file of one export (see the module docstring for the key)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_id)).strip("_") or "model"
    versions = f"torch{torch.__version__.split('+')[0]}-tf{_version('transformers')}-ort{_version('onnxruntime')}"
    return cache_dir() / f"{name}-{weights_fingerprint(module)}-{image_size}px-{dtype}-{versions}.onnx"


class _SamEmbeddings(torch.nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.sam = sam

    def forward(self, pixel_values):
        return self.sam.get_image_embeddings(pixel_values)


def export_sam_encoder(sam, path: Path, image_size: int | None = None) -> Path:
    """Write SAM's image encoder (fp32 copy) as ONNX to `path` (atomic: a temp file, then renamed)."""
    import copy

    size = int(image_size or sam.config.vision_config.image_size)
    from .fast_attention import restore_sam_rel_pos

    ref = copy.deepcopy(sam).float().eval().cpu()
    restore_sam_rel_pos(ref)  # trace transformers' own forward (the workspace is a CPU-eager optimisation)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    with torch.no_grad():
        torch.onnx.export(_SamEmbeddings(ref), (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                          opset_version=OPSET, input_names=["pixel_values"], output_names=["image_embeddings"])
    os.replace(tmp, path)
    LOG.info("SAM image encoder exported to %s", path)
    return path


class OrtSamEncoder:
    """``get_image_embeddings`` through ONNX Runtime: (1, 3, S, S) tensor -> (1, C, S/16, S/16) tensor on the
    caller's device, in the caller's dtype."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])

    def __call__(self, pixel_values: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        x = pixel_values.detach().float().cpu().numpy()
        (out,) = self.session.run(None, {"pixel_values": x})
        return torch.from_numpy(out).to(pixel_values.device, pixel_values.dtype)


def ort_sam_encoder(sam, model_id: str, providers: list[str] | None = None) -> OrtSamEncoder:
    """The cached ONNX export of `sam` (exported on first use) in an ORT session."""
    if not available():
        raise ImportError("the ONNX Runtime path needs `pip install onnxruntime`")
    size = int(sam.config.vision_config.image_size)
    path = cache_path(model_id, sam.vision_encoder, size)
    if not path.is_file():
        export_sam_encoder(sam, path, size)
    else:
        LOG.info("SAM image encoder: cached ONNX export %s", path)
    return OrtSamEncoder(path, providers)


def check_same_outputs(sam, encoder: OrtSamEncoder, pixel_values: torch.Tensor) -> dict:
    """Max |ORT - torch| of the embedding, relative to max |torch|, and whether it is within `TOLERANCE`."""
    with torch.inference_mode():
        ref = type(sam).get_image_embeddings(sam, pixel_values.to(next(sam.vision_encoder.parameters()).dtype))
    out = encoder(pixel_values.float())
    diff = float((ref.float().cpu() - out.float().cpu()).abs().max())
    scale = float(ref.float().abs().max()) or 1.0
    return {"max_abs_diff": diff, "relative": diff / scale, "same": diff / scale <= TOLERANCE}


def use_onnxruntime(models, providers: list[str] | None = None, check: bool = True) -> OrtSamEncoder:
    """Route `models.sam.get_image_embeddings` through the cached ONNX export (an instance attribute:
    `use_torch(models)` undoes it). With `check`, the first use compares both paths on a random input
    and refuses (ValueError) an export whose outputs differ beyond `TOLERANCE`."""
    sam = models.sam
    if sam is None:
        raise ValueError("no SAM v1 model loaded (proposals from SAM 2.1): nothing to export")
    enc = ort_sam_encoder(sam, models.sam_id, providers)
    if check:
        size = int(sam.config.vision_config.image_size)
        pv = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        res = check_same_outputs(sam, enc, pv)
        if not res["same"]:
            raise ValueError(f"ONNX Runtime SAM encoder differs from torch by {res['relative']:.2e} (> {TOLERANCE}): "
                             f"not used ({enc.path})")
    sam.get_image_embeddings = enc
    return enc


def use_torch(models) -> None:
    """Undo `use_onnxruntime`."""
    if models.sam is not None:
        models.sam.__dict__.pop("get_image_embeddings", None)


# ------------------------------------------------------------------------------------------------
# SAM 2.1 / EdgeTAM image features (tracker)
# ------------------------------------------------------------------------------------------------
class _Sam2Features(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        out = self.model.get_image_features(pixel_values, return_dict=True)
        return (*out.fpn_hidden_states, *out.fpn_position_encoding)


class OrtSam2Features:
    """``get_image_features`` of a SAM 2 video model through ONNX Runtime: returns the model's own output
    class with ``fpn_hidden_states`` / ``fpn_position_encoding`` (lists of (HW, 1, C) tensors) on the
    caller's device and dtype, what the video model and `Sam2Proposer` read."""

    def __init__(self, model, path: Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # the exporter's shape hints make ORT warn about merged shapes
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        self._output_class = _sam2_output_class(model)

    def __call__(self, pixel_values: torch.Tensor, *args, **kwargs):
        outs = self.session.run(None, {"pixel_values": pixel_values.detach().float().cpu().numpy()})
        ts = [torch.from_numpy(o).to(pixel_values.device, pixel_values.dtype) for o in outs]
        n = len(ts) // 2
        return self._output_class(fpn_hidden_states=ts[:n], fpn_position_encoding=ts[n:])


def _sam2_output_class(model):
    import importlib

    mod = importlib.import_module(type(model).__module__)
    for name in ("Sam2VideoVisionEncoderOutput", "EdgeTamVideoVisionEncoderOutput"):
        if hasattr(mod, name):
            return getattr(mod, name)
    raise TypeError(f"{type(model).__name__}: no vision encoder output class found")


def ort_sam2_features(tracker, providers: list[str] | None = None) -> OrtSam2Features:
    """The cached ONNX export of a `TrackerModel`'s image features (exported on first use)."""
    import copy

    if not available():
        raise ImportError("the ONNX Runtime path needs `pip install onnxruntime onnx`")
    size = int(tracker.geometry.size)
    model = tracker.model
    path = cache_path(tracker.model_id, model.vision_encoder, size)
    if not path.is_file():
        ref = copy.deepcopy(model).float().eval().cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".onnx.tmp")
        with torch.no_grad():
            torch.onnx.export(_Sam2Features(ref), (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                              opset_version=OPSET, input_names=["pixel_values"])
        os.replace(tmp, path)
        LOG.info("tracker image encoder exported to %s", path)
    return OrtSam2Features(model, path, providers)


def check_same_features(model, encoder: OrtSam2Features, pixel_values: torch.Tensor) -> dict:
    """Largest relative difference over the feature maps (ORT against torch, same input)."""
    with torch.inference_mode():
        ref = type(model).get_image_features(model, pixel_values.to(next(model.vision_encoder.parameters()).dtype),
                                             return_dict=True)
    out = encoder(pixel_values.float())
    rel = 0.0
    for a, b in zip(ref.fpn_hidden_states, out.fpn_hidden_states, strict=True):
        rel = max(rel, float((a.float() - b.float()).abs().max()) / (float(a.float().abs().max()) or 1.0))
    return {"relative": rel, "same": rel <= TOLERANCE}


def use_onnxruntime_tracker(tracker, providers: list[str] | None = None, check: bool = True) -> OrtSam2Features:
    """Route a `TrackerModel`'s ``get_image_features`` through the cached ONNX export (checked as in
    `use_onnxruntime`); `use_torch_tracker` undoes it."""
    enc = ort_sam2_features(tracker, providers)
    if check:
        s = int(tracker.geometry.size)
        res = check_same_features(tracker.model, enc, torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0)))
        if not res["same"]:
            raise ValueError(f"ONNX Runtime tracker encoder differs from torch by {res['relative']:.2e} (> {TOLERANCE}): "
                             f"not used ({enc.path})")
    tracker.model.get_image_features = enc
    return enc


def use_torch_tracker(tracker) -> None:
    tracker.model.__dict__.pop("get_image_features", None)
