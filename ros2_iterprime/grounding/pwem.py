"""PWEM — Primary Word Emphasis Module (IteRPrimE, AAAI 2025, Sec. "Primary Word Emphasis").

Input: per-head attention A and rectified gradient dA of one cross-attention layer, (heads, tokens, P),
plus which word pieces are kept (NOUN, VERB, ADJ, PROPN, NUM; see `primary_word`) and which are the
primary (head) word's. Output: one fused (P,) saliency map.

Full PWEM (mode 0), step by step as the official code computes it (VoyageWang/IteRPrimE,
models/albef/engine.py `visualize_groundvlp`, mode 0):
- token filter: only [CLS] and the kept pieces contribute (template words, function words and [SEP] do not);
- global emphasis: the primary word's pieces are appended once per kept piece, so the primary word
  weighs as much as all other kept words together;
- local emphasis: one map per context PIECE j (`oth_focus_ids`: the kept pieces minus the primary
  word's pieces, each piece of a multi-piece context word on its own)
      E_j = normalise_j(A_m - A_j) * dA_m * (dA_m * A_m)
  where A_m, dA_m are the primary word's maps (mean over its pieces) and normalise_j divides by the L2
  norm taken across the context pieces (per head and patch); with no context piece, A_j = 0;
- fusion: mean over {[CLS] map, E_j ..., kept-piece maps incl. the global repeats}, then over heads.
E_j is second order in the gradient, every other map first order, so local emphasis weighs more as
|dA| grows (on the tiny random test model, |dA| ~ 1e-5, its share is ~1e-8).

Ablation modes (paper, Table "ablation of PWEM"; official `mode` 0-4):
    0 full PWEM | 1 all tokens (plain Grad-CAM) | 2 kept tokens + [CLS] |
    3 = 2 + global emphasis | 4 = 2 + local emphasis.
Mode 1 averages [CLS] and every word piece of the prompt but not [SEP]: the official ALBEF tokenizer
adds no [SEP] (its `build_inputs_with_special_tokens` returns [CLS] X), and LAVIS' BLIP
`compute_gradcam` leaves [SEP] (and [ENC]) out of its averaged map; BLIP's tokenizer does append
[SEP], so the caller passes the prompt's word pieces (`PieceSelection.prompt_pieces`).
Fallback: without a primary word, modes 0/3/4 behave as mode 2; without any kept word, as mode 1.
(The official mode 0/4 without a primary word takes a differently weighted average, through an
inverted `find_words` test, which reads as a slip; we use mode 2 there.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

MODES = (0, 1, 2, 3, 4)
CLS = 0  # position of [CLS] in the tokenised prompt


def local_emphasis(attn: torch.Tensor, grad: torch.Tensor, primary: Sequence[int],
                   context: Sequence[int], eps: float = 1e-8) -> torch.Tensor:
    """E_j for every context piece j.

    Args:
        attn: (heads, tokens, P) attention A.
        grad: (heads, tokens, P) rectified gradient ReLU(dA).
        primary: piece positions of the primary word (non-empty).
        context: context piece positions (kept pieces other than the primary word's), each its own j.
    Returns:
        (heads, J, P) with J = max(1, number of context pieces).
    """
    a_m = attn[:, list(primary)].mean(1, keepdim=True)  # (h, 1, P)
    g_m = grad[:, list(primary)].mean(1, keepdim=True)
    a_ctx = attn[:, list(context)] if len(context) else torch.zeros_like(a_m)  # (h, J, P)
    diff = a_m - a_ctx
    norm = diff.norm(p=2, dim=1, keepdim=True)
    diff = diff / torch.where(norm == 0, torch.full_like(norm, eps), norm)
    return diff * g_m * (g_m * a_m)


def context_pieces(primary: Sequence[int], context_words: Sequence[Sequence[int]]) -> list[int]:
    """The official `oth_focus_ids`: every context word's pieces, ascending, without the primary's."""
    prim = set(primary)
    return sorted({p for w in context_words for p in w} - prim)


def fuse(attn: torch.Tensor, grad: torch.Tensor, kept: Sequence[int], primary: Sequence[int],
         context_words: Sequence[Sequence[int]], mode: int = 0,
         prompt_pieces: Sequence[int] | None = None) -> torch.Tensor:
    """Fused PWEM map.

    Args:
        attn: (heads, tokens, P) attention probabilities (padding tokens already removed).
        grad: (heads, tokens, P) raw gradients d(match)/dA; rectified here.
        kept: kept piece positions (never 0).
        primary: the primary word's piece positions (subset of kept) or empty.
        context_words: piece positions of each kept word other than the primary; local emphasis
            uses each of their pieces on its own (see `context_pieces`).
        mode: 0-4, see module docstring.
        prompt_pieces: the word pieces averaged with [CLS] in mode 1 (all prompt pieces, no [SEP]);
            None = every token given.
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
        if prompt_pieces is None:
            return cam.mean(1).mean(0)
        return cam[:, [CLS] + [p for p in prompt_pieces if p != CLS]].mean(1).mean(0)
    tokens = [CLS] + kept
    if mode in (0, 3):  # global emphasis: the primary word weighs as much as all kept words together
        tokens += list(primary) * len(kept)
    parts = [cam[:, tokens]]
    if mode in (0, 4):
        parts.insert(0, local_emphasis(attn, grad, primary, context_pieces(primary, context_words)))
    return torch.cat(parts, dim=1).mean(1).mean(0)
