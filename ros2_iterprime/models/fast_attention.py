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

SAM's relative-position bias (`use_sam_rel_pos_workspace`). transformers' `SamVisionSdpaAttention`
builds the decomposed relative-position bias of every layer as a NEW (B x heads, H, W, H, W) tensor
and passes it to SDPA as the mask: for ViT-B's four global layers 12 x 4096 x 4096 elements, 403 MB in
bf16, allocated afresh each time. On a CPU a fresh allocation of that size comes from the kernel as
untouched pages, so writing the bias costs ~145 ms of page faults where the arithmetic takes ~23 ms,
and the result was copied once more before SDPA read it (~100 ms); profiled on this project's 2-core
CPU, that was ~1 s of a 5.4 s encoder pass. The swapped forward writes the same sum with the same op
into one buffer that lives for one encoder pass (allocated by its first layer, reused by the others,
dropped when the pass ends), so the bias values, the SDPA call and the output are bit-identical
(tests/models/test_fast_attention.py; the bench's lossless entry `sam_rel_pos_workspace`).
"""
from __future__ import annotations

import threading
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
        out["sam_rel_pos_bias"] = ("one buffer per encoder pass" if sam_uses_rel_pos_workspace(sam)
                                   else "a new tensor per layer (transformers)")
    if tracker is not None:
        out["tracker"] = str(tracker.config._attn_implementation)
    return out


# --- SAM's relative-position bias in one buffer per encoder pass -----------------------------------

#: attribute on the vision encoder and on each swapped attention module: their shared `_BiasWorkspace`
_SAM_WS = "_iterprime_rel_pos_workspace"
#: attribute on the vision encoder: the two hook handles (for `restore_sam_rel_pos`)
_SAM_HOOKS = "_iterprime_rel_pos_hooks"


class _BiasWorkspace:
    """One flat buffer per thread (two threads may run the same encoder), reused by the encoder's layers
    within a pass and dropped between passes, so no memory is held while the encoder is idle."""

    def __init__(self):
        self._bufs: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        key = threading.get_ident()
        with self._lock:
            buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            with self._lock:
                self._bufs[key] = buf
        return buf[:numel]

    def release(self) -> None:
        with self._lock:
            self._bufs.pop(threading.get_ident(), None)

    def __deepcopy__(self, memo):  # a copied model (e.g. for the ONNX export) gets its own, empty one
        return _BiasWorkspace()


def _sam_sdpa_ws_forward(self, hidden_states: torch.Tensor, output_attentions=False):
    """`SamVisionSdpaAttention.forward` (transformers 5.23) with the decomposed rel-pos bias written into
    the pass's workspace: (B, H, W, C) -> ((B, H, W, C), None). Same ops, same order, same values."""
    batch_size, height, width, _ = hidden_states.shape
    # qkv with shape (3, B, nHead, H * W, C)
    qkv = (self.qkv(hidden_states).reshape(batch_size, height * width, 3, self.num_attention_heads, -1)
           .permute(2, 0, 3, 1, 4))
    # q, k, v with shape (B * nHead, H * W, C)
    query, key, value = qkv.reshape(3, batch_size * self.num_attention_heads, height * width, -1).unbind(0)
    attn_bias = None
    if self.use_rel_pos:
        rel_pos_h = self.get_rel_pos(height, height, self.rel_pos_h)  # (H, H, C)
        rel_pos_w = self.get_rel_pos(width, width, self.rel_pos_w)  # (W, W, C)
        bn, _, dim = query.shape
        reshaped_query = query.reshape(bn, height, width, dim)
        rel_h = torch.einsum("bhwc,hkc->bhwk", reshaped_query, rel_pos_h)  # (B nHead, H, W, H)
        rel_w = torch.einsum("bhwc,wkc->bhwk", reshaped_query, rel_pos_w)  # (B nHead, H, W, W)
        if rel_h.requires_grad or rel_w.requires_grad:  # autograd (not this package's use): out= cannot record it
            bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
        else:
            ws: _BiasWorkspace = getattr(self, _SAM_WS)
            bias = ws.take(bn * height * width * height * width, query).view(bn, height, width, height, width)
            torch.add(rel_h[:, :, :, :, None], rel_w[:, :, :, None, :], out=bias)
        attn_bias = bias.reshape(batch_size, self.num_attention_heads, height * width, height * width)
    query = query.view(batch_size, self.num_attention_heads, height * width, -1)
    key = key.view(batch_size, self.num_attention_heads, height * width, -1)
    value = value.view(batch_size, self.num_attention_heads, height * width, -1)
    attn_output = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_bias)
    attn_output = (attn_output.view(batch_size, self.num_attention_heads, height, width, -1)
                   .permute(0, 2, 3, 1, 4).reshape(batch_size, height, width, -1))
    return self.proj(attn_output), None


def _release_workspace(module, *args):
    ws = getattr(module, _SAM_WS, None)
    if ws is not None:
        ws.release()


def _sam_sdpa_modules(sam) -> list:
    from transformers.models.sam.modeling_sam import SamVisionSdpaAttention

    return [layer.attn for layer in sam.vision_encoder.layers if type(layer.attn) is SamVisionSdpaAttention]


def use_sam_rel_pos_workspace(sam) -> int:
    """Swap SAM's SDPA attention modules to the workspace forward, in place (lossless; module docstring).

    Only transformers' `SamVisionSdpaAttention` is swapped (an eager encoder is left alone). The workspace
    is released by hooks on the vision encoder before and after every pass (before, too, so a pass that
    raised, e.g. out of memory, does not leave its buffer behind). Returns how many modules were swapped.
    """
    enc = sam.vision_encoder
    mods = _sam_sdpa_modules(sam)
    if not mods or hasattr(enc, _SAM_HOOKS):
        return 0
    ws = _BiasWorkspace()
    setattr(enc, _SAM_WS, ws)
    for mod in mods:
        setattr(mod, _SAM_WS, ws)
        mod.forward = types.MethodType(_sam_sdpa_ws_forward, mod)
    setattr(enc, _SAM_HOOKS, (enc.register_forward_pre_hook(_release_workspace),
                              enc.register_forward_hook(_release_workspace)))
    return len(mods)


def restore_sam_rel_pos(sam) -> None:
    """Undo `use_sam_rel_pos_workspace` (the benchmark times both paths; the ONNX export traces the
    original)."""
    enc = sam.vision_encoder
    for h in enc.__dict__.pop(_SAM_HOOKS, ()):
        h.remove()
    enc.__dict__.pop(_SAM_WS, None)
    for layer in enc.layers:
        if _SAM_WS in layer.attn.__dict__:
            del layer.attn.__dict__[_SAM_WS]
            layer.attn.__dict__.pop("forward", None)


def sam_uses_rel_pos_workspace(sam) -> bool:
    return hasattr(sam.vision_encoder, _SAM_HOOKS)
