"""Mask2Former checkpoints as IteRPrimE's proposal network (the official code's choice): names, loading.

The official IteRPrimE code (VoyageWang/IteRPrimE `demo/IteRPrimE.py`) takes its candidate masks from
Mask2Former Swin-L trained on COCO panoptic (200 queries; `configs/coco/panoptic-segmentation/swin/
maskformer2_swin_large_IN21k_384_bs16_100ep.yaml`, weights `model_final_f07440.pkl`). Its transformers
conversion is `facebook/mask2former-swin-large-coco-panoptic` (`Mask2FormerForUniversalSegmentation`),
the default here.

Names a ``proposals_model`` value may take (`mask2former_id`):
- ``"mask2former"``: the paper's checkpoint above, or, under the tiny-random profile (tiny BLIP), the
  tiny random stand-in (so ``model:=tiny-random proposals_model:=mask2former`` runs with no weights);
- ``"tiny-random-mask2former"``: the tiny random model (`tiny.build_tiny_mask2former`), explicitly;
- any hub id whose repository name contains "mask2former" (e.g. `facebook/mask2former-swin-base-coco-panoptic`),
  a local directory whose config.json says ``model_type`` "mask2former" (e.g. from `download --to`), or
  ``"mask2former:<id or dir>"`` for any other name.

Loading goes through the project's safe path (`loading.load_pretrained`: local directory or model cache,
safetensors else a tensors-only .bin (the default repository publishes only pytorch_model.bin), one clear
`ModelNotFoundError`). The test-time input is the official detectron2 one (`mask2former_preprocess`), not
the hub's preprocessor_config.json. Precision: ``dtype='auto'`` is fp32 on every device (the official
test-time precision; detectron2's DefaultPredictor runs without autocast); fp16 / bf16 when asked.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from . import loading as core
from .checkpoints import MASK2FORMER_REPOS
from .mask2former_preprocess import Mask2FormerInput

LOG = logging.getLogger(__name__)

#: the alias for the paper's proposal network
MASK2FORMER = "mask2former"
DEFAULT_MASK2FORMER = MASK2FORMER_REPOS[0]  # facebook/mask2former-swin-large-coco-panoptic
TINY_MASK2FORMER = "tiny-random-mask2former"
_PREFIX = "mask2former:"


@dataclass
class Mask2FormerModel:
    """A Mask2Former ready to propose masks.

    Attributes:
        model: `Mask2FormerForUniversalSegmentation`, eval mode, frozen.
        model_id: hub id, directory or tiny name it was made from.
        input: its test-time resize / normalise / pad constants.
        device, dtype: where and in which precision it runs (its outputs are post-processed in fp32).
    """

    model: Any
    model_id: str
    input: Mask2FormerInput
    device: torch.device
    dtype: torch.dtype

    @property
    def num_queries(self) -> int:
        return int(self.model.config.num_queries)

    @property
    def is_tiny(self) -> bool:
        return self.model_id == TINY_MASK2FORMER


def _config_model_type(directory: str) -> str:
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as fh:
            return str(json.load(fh).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def mask2former_id(name: str, *, tiny: bool = False) -> str | None:
    """The Mask2Former checkpoint a ``proposals_model`` value names, or None when it names no Mask2Former.

    Args:
        name: 'mask2former', 'tiny-random-mask2former', 'mask2former:<id or dir>', a hub id with
            "mask2former" in its repository name, or a directory with a Mask2Former config.json.
        tiny: the tiny-random profile is in use: 'mask2former' then means the tiny random model.
    Raises:
        ValueError: 'mask2former:' with nothing after it.
    """
    if not isinstance(name, str):
        return None
    n = name.strip()
    if n == MASK2FORMER:
        return TINY_MASK2FORMER if tiny else DEFAULT_MASK2FORMER
    if n == TINY_MASK2FORMER:
        return n
    if n.startswith(_PREFIX):
        rest = n[len(_PREFIX):].strip()
        if not rest:
            raise ValueError("'mask2former:' needs a Mask2Former hub id or directory after the colon")
        return rest
    if os.path.isdir(n):
        return n if _config_model_type(n) == "mask2former" else None
    base = os.path.basename(n.rstrip("/")).lower()
    return n if "mask2former" in base else None


def is_mask2former(name: str) -> bool:
    """Whether a ``proposals_model`` value names a Mask2Former (see `mask2former_id`)."""
    try:
        return mask2former_id(name) is not None
    except ValueError:
        return True  # 'mask2former:' alone: a Mask2Former name, and a clear error when it is loaded


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' is fp32 on every device (the official test-time precision); else as `loading.resolve_dtype`."""
    if dtype in (None, "", "auto"):
        return torch.float32
    return core.resolve_dtype(dtype, device)


def load_mask2former(model: str = DEFAULT_MASK2FORMER, *, device: str | torch.device = "auto",
                     dtype: str | torch.dtype = "auto", local_files_only: bool | None = None,
                     cache_dir: str | None = None, seed: int = 0,
                     input_spec: Mask2FormerInput | None = None) -> Mask2FormerModel:
    """Load a Mask2Former checkpoint (hub id or local directory) or build the tiny random one.

    Args:
        model: a hub id, a directory written by `save_pretrained` / `download --to`, or
            'tiny-random-mask2former' ('mask2former' is resolved by `mask2former_id` first).
        input_spec: test-time input constants; default the official config's (800 / 1333 / 32), or the
            tiny model's own.
    Raises:
        ModelNotFoundError: weights not available locally (the message gives the route that works).
    """
    model = mask2former_id(model) or model
    dev = core.resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model == TINY_MASK2FORMER:
        from .tiny import build_tiny_mask2former

        LOG.warning("Using proposals model %r: a tiny RANDOMLY INITIALISED Mask2Former built in-process; its "
                    "masks are MEANINGLESS (plumbing tests only).", model)
        net, spec = build_tiny_mask2former(seed)
        spec = input_spec or spec
    else:
        from transformers import Mask2FormerForUniversalSegmentation

        net = core.load_pretrained(Mask2FormerForUniversalSegmentation, "mask2former", model,
                                   local_files_only=local_files_only, cache_dir=cache_dir)
        spec = input_spec or Mask2FormerInput()
    return _finish(net, model, spec, dev, dt)


def _finish(net, model_id: str, spec: Mask2FormerInput, dev: torch.device, dt: torch.dtype) -> Mask2FormerModel:
    net.eval()
    net.requires_grad_(False)
    net.to(device=dev, dtype=dt)
    return Mask2FormerModel(net, model_id, spec, dev, dt)


def build_random_mask2former(*, device: str | torch.device = "cpu", dtype: str | torch.dtype = "auto",
                             seed: int = 0) -> Mask2FormerModel:
    """`facebook/mask2former-swin-large-coco-panoptic`'s architecture (published config) with random weights.

    For cost measurements only (`bench`): 215.5 M parameters, Swin-L backbone, 200 queries, the official
    test-time input (800 / 1333 / 32).
    """
    from transformers import Mask2FormerForUniversalSegmentation

    from .published import mask2former_swin_large_coco_panoptic_config

    dev = core.resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Mask2FormerForUniversalSegmentation(mask2former_swin_large_coco_panoptic_config())
    LOG.warning("Mask2Former %s built with RANDOM weights (timing only, outputs meaningless)", DEFAULT_MASK2FORMER)
    return _finish(net, f"random:{DEFAULT_MASK2FORMER}", Mask2FormerInput(), dev, resolve_dtype(dtype, dev))
