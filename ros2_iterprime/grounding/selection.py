"""Selective mask proposals (IteRPrimE, AAAI 2025, Sec. "Mask proposal selection").

Among class-agnostic proposals, keep those that (1) contain the Grad-CAM peak and (2) have at most
`max_components` connected pieces (12 in the paper: fragmented masks are rarely one object; pieces are
4-connected, as `scipy.ndimage.label`'s default structure counts them in the official postproc,
VoyageWang/IteRPrimE demo/postproc.py), and score
each survivor by the mean over the mask of (1 + G), G the final heatmap in [0, 1]. The highest score
wins; ties go to the lowest proposal index (torch.argmax returns the first maximum).

Fallback when no proposal survives (documented, deterministic):
  1. among non-empty proposals containing the peak (component filter ignored) — or, if none contains
     it, among all non-empty proposals — take the one with the highest mean G (lowest index on ties);
  2. with no non-empty proposal at all, take the 8-connected region of G >= 0.5 that contains the peak.
  The fallback's score is the mean of G over its mask, in [0, 1]: always below any selected proposal's
  score (>= 1), so callers can threshold on `score >= 1` or read `found`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)
_FOUR = ndimage.generate_binary_structure(2, 1)  # the cross: scipy.ndimage.label's default in 2-D


def count_components(mask: np.ndarray) -> int:
    """Number of 4-connected components of a (H, W) bool mask (pixels touching only at a corner are apart)."""
    return int(ndimage.label(mask, structure=_FOUR)[1])


def peak_of(heatmap: torch.Tensor) -> tuple[int, int]:
    """(row, col) of the heatmap maximum (first in row-major order on ties)."""
    idx = int(torch.argmax(heatmap))
    return idx // heatmap.shape[1], idx % heatmap.shape[1]


@dataclass
class Selection:
    """Selected mask at selection resolution.

    Attributes:
        mask: (h, w) bool.
        index: proposal index, or None for the heatmap-region fallback.
        score: mean(1 + G) over the mask when found, mean(G) for a fallback.
        found: True when a proposal passed both filters.
        candidates: number of proposals that passed both filters.
    """

    mask: np.ndarray
    index: int | None
    score: float
    found: bool
    candidates: int


def select(masks: torch.Tensor, heatmap: torch.Tensor, peak: tuple[int, int] | None = None,
           max_components: int = 12, fallback_threshold: float = 0.5) -> Selection:
    """Pick the referred object's mask.

    Args:
        masks: (N, h, w) bool proposals (N may be 0).
        heatmap: (h, w) final Grad-CAM G in [0, 1].
        peak: (row, col) of the Grad-CAM peak; default: argmax of heatmap.
        max_components: upper bound on 4-connected pieces of a kept proposal.
    """
    heatmap = heatmap.float().cpu()
    masks = masks.bool().cpu()
    if peak is None:
        peak = peak_of(heatmap)
    y, x = peak
    n = masks.shape[0]
    area = masks.flatten(1).sum(1) if n else torch.zeros(0)
    contains = masks[:, y, x] if n else torch.zeros(0, dtype=torch.bool)
    keep = torch.zeros(n, dtype=torch.bool)
    for i in torch.nonzero(contains).flatten().tolist():
        keep[i] = count_components(masks[i].numpy()) <= max_components
    mean_g = _mask_sums(masks, heatmap) / area.clamp_min(1) if n else torch.zeros(0)
    if keep.any():
        scores = torch.where(keep, 1.0 + mean_g, torch.full_like(mean_g, -1.0))
        i = int(torch.argmax(scores))
        return Selection(masks[i].numpy(), i, float(scores[i]), True, int(keep.sum()))
    nonempty = area > 0
    pool = nonempty & contains if (nonempty & contains).any() else nonempty
    if pool.any():
        scores = torch.where(pool, mean_g, torch.full_like(mean_g, -1.0))
        i = int(torch.argmax(scores))
        return Selection(masks[i].numpy(), i, float(mean_g[i]), False, 0)
    region = heatmap_region(heatmap, (y, x), fallback_threshold)
    score = float(heatmap.numpy()[region].mean()) if region.any() else 0.0
    return Selection(region, None, score, False, 0)


def _mask_sums(masks: torch.Tensor, heatmap: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(N,) sum of the heatmap over each (h, w) mask, `chunk` masks at a time (N float copies of a
    full-size mask grid, e.g. 200 Mask2Former queries at the image's size, would cost N x h x w floats)."""
    out = torch.empty(masks.shape[0], dtype=torch.float32)
    for i in range(0, masks.shape[0], chunk):
        out[i:i + chunk] = (masks[i:i + chunk].float() * heatmap).flatten(1).sum(1)
    return out


def heatmap_region(heatmap: torch.Tensor, peak: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """The 8-connected region of heatmap >= threshold containing `peak` ((h, w) bool)."""
    hm = heatmap.float().cpu().numpy()
    labels, _ = ndimage.label(hm >= threshold, structure=_EIGHT)
    lab = labels[peak]
    if lab == 0:
        out = np.zeros_like(hm, dtype=bool)
        out[peak] = True
        return out
    return labels == lab
