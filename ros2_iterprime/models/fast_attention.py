"""Lossless attention swaps: `scaled_dot_product_attention` where transformers has only an eager path.

BLIP's vision tower (`BlipAttention`, transformers 5.23) has no SDPA implementation: it materialises
the (heads, 577, 577) score matrix, soft-maxes it and multiplies, in three passes over memory. The
same attention through `torch.nn.functional.scaled_dot_product_attention` (one fused kernel on CPU
and GPU) computes the same function with the same weights; the results differ by float rounding only
(the bench's "lossless" section measures the difference on full-size random weights, and
tests/models/test_fast_attention.py on the tiny model).

Only the vision tower is swapped. BLIP's TEXT encoder stays eager: Grad-CAM reads the
cross-attention probabilities of one layer and their gradient, which a fused kernel never forms.
SAM's image encoder and SAM 2.1 already use transformers' own SDPA classes (``_attn_implementation``
'sdpa', the default of `from_pretrained` and of building from a config); `attention_report` says which
path each model runs.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

#: attribute set on a swapped module (the original bound forward, for `restore_eager`)
_ORIGINAL = "_iterprime_eager_forward"


def _sdpa_forward(self, hidden_states: torch.Tensor, **kwargs):
    """`BlipAttention.forward` through SDPA: (B, N, C) -> ((B, N, C), None); eval mode (no dropout)."""
    bsz, n, c = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(bsz, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    p = self.dropout.p if self.training else 0.0
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=p, scale=self.scale)
    return self.projection(out.transpose(1, 2).reshape(bsz, n, c)), None


def blip_vision_attention_modules(blip) -> list:
    """The `BlipAttention` modules of a BLIP model's vision tower (one per layer)."""
    return [layer.self_attn for layer in blip.vision_model.encoder.layers]


def use_sdpa_for_blip_vision(blip) -> int:
    """Route BLIP's vision self-attention through SDPA, in place; returns how many modules were swapped."""
    n = 0
    for mod in blip_vision_attention_modules(blip):
        if not hasattr(mod, _ORIGINAL):
            setattr(mod, _ORIGINAL, mod.forward)
            mod.forward = types.MethodType(_sdpa_forward, mod)
            n += 1
    return n


def restore_eager(blip) -> None:
    """Undo `use_sdpa_for_blip_vision` (the benchmark compares both paths in one run)."""
    for mod in blip_vision_attention_modules(blip):
        orig = mod.__dict__.pop(_ORIGINAL, None)
        if orig is not None:
            del mod.forward  # the instance attribute; the class's eager forward is back


def blip_vision_uses_sdpa(blip) -> bool:
    return all(hasattr(m, _ORIGINAL) for m in blip_vision_attention_modules(blip))


def attention_report(blip=None, sam=None, tracker=None) -> dict[str, str]:
    """Which attention path each loaded model runs ('sdpa' / 'eager'), for logs and the bench JSON."""
    out: dict[str, str] = {}
    if blip is not None:
        out["blip_vision"] = "sdpa" if blip_vision_uses_sdpa(blip) else "eager"
        out["blip_text"] = "eager (Grad-CAM reads attention probabilities and their gradient)"
    if sam is not None:
        out["sam_image_encoder"] = str(sam.vision_encoder.config._attn_implementation)
    if tracker is not None:
        out["tracker"] = str(tracker.config._attn_implementation)
    return out
