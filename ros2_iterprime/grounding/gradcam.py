"""Grad-CAM on the cross-attention of a BLIP image-text-matching (ITM) model.

For a text-encoder layer l, with A the cross-attention probabilities (heads x text tokens x image
tokens) and s the ITM "match" logit (pre-softmax), Grad-CAM is A * ReLU(dS/dA), one map per head and
text token. This follows the ALBEF/BLIP Grad-CAM practice (ALBEF `visualization.ipynb`; LAVIS
`compute_gradcam` for BLIP ITM, whose examples use `block_num=7`, our default layer for 12-layer
BLIP) and IteRPrimE (AAAI 2025), which builds PWEM and IGRS on these maps.

Per-image work is cached outside this module (the predictor keeps the vision embeddings); this module
additionally memoises the key/value projections of the image tokens in every cross-attention layer,
so a Grad-CAM round costs only the text encoder (forward + backward to one layer's attention).
Gradients are taken with `torch.autograd.grad` w.r.t. the captured attention only; parameters are
frozen and never accumulate `.grad`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def gradcam_maps(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM per head and token: A * ReLU(dA).

    Args:
        attn: (heads, tokens, patches) attention probabilities.
        grad: same shape, d(match logit)/dA.
    Returns:
        (heads, tokens, patches).
    """
    return attn * grad.clamp(min=0)


def default_layer(num_layers: int) -> int:
    """Default Grad-CAM layer of an n-layer text encoder: round(8 n / 12) - 1.

    7 for the 12-layer BLIP text encoders (LAVIS BLIP ITM `compute_gradcam`, `block_num=7`; the official
    IteRPrimE code takes layer 8 of ALBEF's 12-layer BERT, whose cross-attention starts at layer 6), the
    same relative depth for other depths, and never the last layer when n >= 2: the ITM head reads only
    the last layer's [CLS] output, and a token's attention row there reaches no other token, so
    d(ITM logit)/dA is exactly zero for every token but [CLS] and PWEM would see nothing.
    """
    if num_layers < 1:
        raise ValueError("the text encoder has no layer")
    return max(0, round(num_layers * 8 / 12) - 1)


def to_patch_grid(maps: torch.Tensor) -> torch.Tensor:
    """(..., P) -> (..., p, p) for a square patch grid (P = p*p)."""
    p = int(round(math.sqrt(maps.shape[-1])))
    if p * p != maps.shape[-1]:
        raise ValueError(f"{maps.shape[-1]} image tokens do not form a square patch grid")
    return maps.reshape(*maps.shape[:-1], p, p)


@dataclass
class CrossAttentionGrad:
    """One ITM text pass of one (image, text) pair.

    Attributes:
        attn: (heads, tokens, P) cross-attention probabilities of the chosen layer, image [CLS] dropped.
        grad: (heads, tokens, P) d(match logit)/d(attn), raw (not rectified).
        match_logit: the ITM "match" logit (pre-softmax).
        match_prob: softmax probability of "match".
    """

    attn: torch.Tensor
    grad: torch.Tensor
    match_logit: float
    match_prob: float

    @property
    def cam(self) -> torch.Tensor:
        """(heads, tokens, P) Grad-CAM, A * ReLU(dA)."""
        return gradcam_maps(self.attn, self.grad)


class _PerImageProjection(nn.Module):
    """Wraps a cross-attention key/value Linear: computed once per image-embedding tensor.

    The image tokens do not change between IGRS rounds or expressions on one frame, so their K/V
    projections in every cross-attention layer are per-image work too. Identity of the input tensor
    is the cache key (the predictor passes the same cached embedding tensor every time).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self._src: torch.Tensor | None = None
        self._out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._src is x and self._out is not None:
            return self._out
        out = self.linear(x)
        if not out.requires_grad:  # parameters are frozen and the image embeddings carry no graph
            self._src, self._out = x, out
        return out

    def reset(self) -> None:
        self._src = self._out = None


def _pass_encoder_mask(module, args, kwargs):
    """Deliver the image-token mask to BLIP's cross-attention.

    In transformers 5.x `BlipTextAttention.forward` passes the cross-attention mask as
    `attention_mask` but `BlipTextSelfAttention.forward` reads `encoder_attention_mask` for
    cross-attention, so image-token masks are silently dropped. IGRS erases patches through that
    mask, so we hand it over explicitly (a no-op where the library already passes it).
    """
    if kwargs.get("encoder_attention_mask") is None and kwargs.get("attention_mask") is not None:
        kwargs = dict(kwargs, encoder_attention_mask=kwargs["attention_mask"])
    return args, kwargs


class BlipGradCAM:
    """Grad-CAM extractor over a frozen `transformers.BlipForImageTextRetrieval`.

    Args:
        model: the ITM model (eval mode, parameters frozen by the loader).
        layer: text-encoder layer whose cross-attention is used; None = `default_layer(num_layers)`,
            i.e. 7, LAVIS' BLIP ITM Grad-CAM layer, for 12-layer BLIP. Negative values count from the end.
    """

    def __init__(self, model, layer: int | None = None):
        self.model = model
        layers = model.text_encoder.encoder.layer
        n = len(layers)
        if layer is None:
            layer = default_layer(n)
        if not -n <= layer < n:
            raise ValueError(f"gradcam layer {layer} out of range for a {n}-layer text encoder")
        self.layer = layer % n
        self._captured: torch.Tensor | None = None
        self._memo: list[_PerImageProjection] = []
        for lyr in layers:
            if getattr(lyr, "crossattention", None) is None:
                continue
            sa = lyr.crossattention.self
            sa.register_forward_pre_hook(_pass_encoder_mask, with_kwargs=True)
            for name in ("key", "value"):
                proj = getattr(sa, name)
                if not isinstance(proj, _PerImageProjection):
                    proj = _PerImageProjection(proj)
                    setattr(sa, name, proj)
                self._memo.append(proj)
        target = layers[self.layer].crossattention.self
        target.register_forward_hook(self._capture)
        # Anchor for autograd: with frozen parameters nothing in the text pass would require grad.
        # Making the Grad-CAM layer's INPUT require grad lets autograd reach its attention probabilities;
        # the layers below it run without recording a graph (the gradient d(match)/dA flows only through
        # this layer and those above it, so anchoring lower would record work no backward reads).
        layers[self.layer].register_forward_pre_hook(self._anchor, with_kwargs=True)

    # hooks ---------------------------------------------------------------------------------------
    def _capture(self, module, inputs, output):
        self._captured = output[1]  # (B, heads, tokens, image tokens) attention probabilities

    @staticmethod
    def _anchor(module, args, kwargs):
        if not torch.is_grad_enabled():
            return None
        if args and isinstance(args[0], torch.Tensor):
            if not args[0].requires_grad:
                args = (args[0].detach().requires_grad_(True), *args[1:])
        elif isinstance(kwargs.get("hidden_states"), torch.Tensor) and not kwargs["hidden_states"].requires_grad:
            kwargs = dict(kwargs, hidden_states=kwargs["hidden_states"].detach().requires_grad_(True))
        return args, kwargs

    # API -----------------------------------------------------------------------------------------
    def reset_image_cache(self) -> None:
        """Forget the memoised K/V projections (call when the image changes)."""
        for m in self._memo:
            m.reset()

    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) -> (1, 1 + P, D) fp32 vision embeddings (image [CLS] first).

        The vision tower may run in reduced precision; its output is cast to the text encoder's dtype.
        Also computes (and memoises) the K/V projections of these embeddings in every cross-attention
        layer, so no text pass pays for them.
        """
        self.reset_image_cache()
        vis = self.model.vision_model
        out = vis(pixel_values=pixel_values.to(next(vis.parameters()).dtype)).last_hidden_state
        out = out.to(next(self.model.text_encoder.parameters()).dtype)
        # the image tokens' K/V projections of every cross-attention layer are per-image work: computed
        # here, once, so every IGRS round (the first included) and every expression reads them
        for proj in self._memo:
            proj(out)
        return out

    def itm_logits(self, image_embeds, input_ids, attention_mask, image_keep=None) -> torch.Tensor:
        """(1, 2) ITM logits [no-match, match] for one pair; image_keep (1, 1+P) masks image tokens."""
        if image_keep is None:
            image_keep = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        out = self.model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_keep,
        )
        return self.model.itm_head(out.last_hidden_state[:, 0, :])

    def __call__(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        patch_keep: torch.Tensor | None = None,
    ) -> CrossAttentionGrad:
        """One text pass + backward to the chosen layer's cross-attention.

        Args:
            image_embeds: (1, 1 + P, D) cached vision embeddings.
            input_ids, attention_mask: (1, L) tokenised prompt.
            patch_keep: (P,) bool, False = patch erased (IGRS); the image [CLS] is always kept.
        """
        keep = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        if patch_keep is not None:
            keep[0, 1:] = patch_keep.to(device=keep.device, dtype=keep.dtype)
        self._captured = None
        with torch.enable_grad():
            logits = self.itm_logits(image_embeds, input_ids, attention_mask, keep)
            attn = self._captured
            if attn is None:
                raise RuntimeError("cross-attention of the Grad-CAM layer was not captured")
            match = logits[0, 1]
            (grad,) = torch.autograd.grad(match, attn)
        self._captured = None
        prob = torch.softmax(logits.detach().float(), dim=-1)[0, 1]
        valid = attention_mask[0].bool()
        a = attn.detach()[0][:, valid, 1:].float()
        g = grad[0][:, valid, 1:].float()
        return CrossAttentionGrad(a, g, float(match.detach()), float(prob))
