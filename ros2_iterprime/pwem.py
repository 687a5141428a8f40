"""PWEM — Primary Word Emphasis Module (IteRPrimE, AAAI 2025, Sec. "Primary Word Emphasis").

Input: per-head attention A and rectified gradient dA of one cross-attention layer, (heads, tokens, P),
plus which word pieces are kept (NOUN, VERB, ADJ, PROPN, NUM; see `primary_word`) and which are the
primary (head) noun. Output: one fused (P,) saliency map.

Full PWEM (mode 0), as in the paper and the official code (VoyageWang/IteRPrimE, models/albef/engine.py):
- token filter: only [CLS] and the kept pieces contribute (template words, function words and [SEP] do not);
- global emphasis: the primary word's piece maps are appended once per kept piece, so the primary word
  weighs as much as all other kept words together;
- local emphasis: for each context word j (kept words other than the primary word)
      E_j = normalise_j(A_m - A_j) * dA_m * (dA_m * A_m)
  where A_m, dA_m are the primary word's maps (mean over its pieces) and normalise_j divides by the L2
  norm taken across context words (per head and patch); with no context word, A_j = 0;
- fusion: mean over {[CLS] map, E_j ..., kept-token maps incl. the global repeats}, then over heads.

Ablation modes (paper, Table "ablation of PWEM"):
    0 full PWEM | 1 all tokens (plain Grad-CAM) | 2 kept tokens + [CLS] |
    3 = 2 + global emphasis | 4 = 2 + local emphasis.
Fallback: without a primary noun, modes 0/3/4 behave as mode 2; without any kept word, as mode 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

MODES = (0, 1, 2, 3, 4)
CLS = 0  # position of [CLS] in the tokenised prompt


def local_emphasis(attn: torch.Tensor, grad: torch.Tensor, primary: Sequence[int],
                   context_words: Sequence[Sequence[int]], eps: float = 1e-8) -> torch.Tensor:
    """E_j for every context word.

    Args:
        attn: (heads, tokens, P) attention A.
        grad: (heads, tokens, P) rectified gradient ReLU(dA).
        primary: piece positions of the primary word (non-empty).
        context_words: piece positions of each context word.
    Returns:
        (heads, J, P) with J = max(1, number of context words).
    """
    a_m = attn[:, list(primary)].mean(1, keepdim=True)  # (h, 1, P)
    g_m = grad[:, list(primary)].mean(1, keepdim=True)
    if context_words:
        a_ctx = torch.stack([attn[:, list(w)].mean(1) for w in context_words], dim=1)  # (h, J, P)
    else:
        a_ctx = torch.zeros_like(a_m)
    diff = a_m - a_ctx
    norm = diff.norm(p=2, dim=1, keepdim=True)
    diff = diff / torch.where(norm == 0, torch.full_like(norm, eps), norm)
    return diff * g_m * (g_m * a_m)


def fuse(attn: torch.Tensor, grad: torch.Tensor, kept: Sequence[int], primary: Sequence[int],
         context_words: Sequence[Sequence[int]], mode: int = 0) -> torch.Tensor:
    """Fused PWEM map.

    Args:
        attn: (heads, tokens, P) attention probabilities (padding tokens already removed).
        grad: (heads, tokens, P) raw gradients d(match)/dA; rectified here.
        kept: kept piece positions (never 0).
        primary: the primary word's piece positions (subset of kept) or empty.
        context_words: piece positions of each kept word other than the primary.
        mode: 0-4, see module docstring.
    Returns:
        (P,) map (not normalised; may be negative where local emphasis contrasts).
    """
    if mode not in MODES:
        raise ValueError(f"PWEM mode must be one of {MODES}, got {mode}")
    grad = grad.clamp(min=0)
    cam = attn * grad  # (h, T, P) Grad-CAM per head and token
    kept = [k for k in kept if k != CLS]
    if not kept:
        mode = 1
    elif not primary and mode in (0, 3, 4):
        mode = 2
    if mode == 1:
        return cam.mean(1).mean(0)
    tokens = [CLS] + kept
    if mode in (0, 3):  # global emphasis: the primary word weighs as much as all kept words together
        tokens += list(primary) * len(kept)
    parts = [cam[:, tokens]]
    if mode in (0, 4):
        parts.insert(0, local_emphasis(attn, grad, primary, context_words))
    return torch.cat(parts, dim=1).mean(1).mean(0)
