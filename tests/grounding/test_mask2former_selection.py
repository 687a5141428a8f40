"""Selection on Mask2Former proposals against the official post-processing (synthetic masks).

`official_post_process` below restates, in our own code, what VoyageWang/IteRPrimE `demo/postproc.py`
`post_process` does with the (1, N, H, W) binary masks and the (H, W) Grad-CAM map G of one image (its
first call, when no index has been taken yet):
  1. peak filter: keep a mask if it is non-zero at ANY pixel where G equals its maximum;
  2. piece filter: keep a mask with at most 12 pieces (`scipy.ndimage.label`, default 4-connectivity);
  3. masks failing either filter are zeroed; score = sum(mask + mask * G) / (sum(mask) + 1e-5);
  4. the highest score wins (descending sort, first index); its (zeroed or not) mask is returned.
`official_masks` restates the official mask geometry (`mask2former/maskformer_model.py`: bilinear to
the padded input, crop, `sem_seg_postprocess` to the original size, sigmoid > 0.35).

Ours must pick the same mask with the same score wherever a mask passes both filters. Where they differ
by design (README, deviations): with no survivor the official code returns an all-zero mask (the
zeroed "best" one), ours returns `found=False` with a fallback; on ties of the map's maximum the
official peak filter accepts any of the tied pixels, ours uses the first one (row-major).
"""
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from ros2_iterprime.grounding.selection import peak_of, select


def official_post_process(bin_mask: torch.Tensor, gradcam: torch.Tensor) -> tuple[torch.Tensor, int, float]:
    """(1, N, H, W) {0,1} float masks, (H, W) map -> (returned mask, index, its score)."""
    _, n, _, _ = bin_mask.shape
    peak_pixels = torch.nonzero(gradcam >= gradcam.max())
    at_peak = torch.zeros(1, n, dtype=torch.bool)
    for y, x in peak_pixels.tolist():
        at_peak |= bin_mask[:, :, y, x] != 0
    few_pieces = torch.tensor([[scipy.ndimage.label(m.numpy())[1] <= 12 for m in bin_mask[0]]])
    keep = (at_peak & few_pieces).float()
    kept = bin_mask * keep[..., None, None]
    scores = (kept + kept * gradcam[None, None]).sum((2, 3)) / (kept.sum((2, 3)) + 1e-5)
    idx = int(torch.sort(scores, descending=True, stable=True).indices[0, 0])
    return kept[0, idx], idx, float(scores[0, idx])


def official_masks(logits: torch.Tensor, resized: tuple[int, int], padded: tuple[int, int],
                   original: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) mask logits -> (N, H, W) {0, 1} float, as the official wrapper computes ``bin_mask``."""
    up = F.interpolate(logits[None], size=padded, mode="bilinear", align_corners=False)[0]
    crop = up[:, : resized[0], : resized[1]]
    full = F.interpolate(crop[None], size=original, mode="bilinear", align_corners=False)[0]
    return (full.sigmoid() > 0.35).float()


def _heatmap(h, w, rng) -> torch.Tensor:
    """A smooth random map in [0, 1] with one maximum (bicubic up-sampled noise, min-max normalised)."""
    g = torch.from_numpy(rng.random((6, 8))).float()[None, None]
    m = F.interpolate(g, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    m = (m - m.min()) / (m.max() - m.min())
    assert int((m == m.max()).sum()) == 1
    return m


def _synthetic_masks(h, w, n, rng) -> torch.Tensor:
    """Rectangles, ellipses, speckled (many-piece) masks, empty masks: (n, h, w) bool."""
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = i % 5
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        y1, x1 = y0 + rng.integers(6, h - y0 + 1), x0 + rng.integers(6, w - x0 + 1)
        if kind == 0:
            out[i, y0:y1, x0:x1] = True
        elif kind == 1:
            cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
            out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif kind == 2:  # speckles: usually more than 12 pieces
            out[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.25
        elif kind == 3:  # a few separate blocks (1..16 pieces)
            for _ in range(rng.integers(1, 17)):
                by, bx = rng.integers(0, h - 2), rng.integers(0, w - 2)
                out[i, by:by + 2, bx:bx + 2] = True
        # kind 4: empty
    return torch.from_numpy(out)


@pytest.mark.parametrize("seed", range(40))
def test_select_matches_the_official_post_process(seed):
    rng = np.random.default_rng(seed)
    h, w, n = 48, 64, 30
    masks = _synthetic_masks(h, w, n, rng)
    heat = _heatmap(h, w, rng)
    # make sure some masks contain the peak (as real proposals do), at various piece counts
    py, px = peak_of(heat)
    for i in rng.choice(n, size=6, replace=False):
        masks[i, max(0, py - 5):py + 5, max(0, px - 7):px + 7] |= bool(rng.random() < 0.8)
    off_mask, off_idx, off_score = official_post_process(masks.float()[None], heat)
    ours = select(masks, heat, peak_of(heat), max_components=12)
    if off_mask.any():  # a proposal passed both filters
        assert ours.found and ours.index == off_idx, (ours.index, off_idx)
        assert ours.score == pytest.approx(off_score, rel=1e-4)
        assert np.array_equal(ours.mask, off_mask.bool().numpy())
    else:  # the official answer is an empty mask; ours says "not found" and falls back
        assert not ours.found and ours.score < 1.0


def test_no_survivor_official_gives_an_empty_mask_ours_a_flagged_fallback():
    h, w = 32, 32
    heat = _heatmap(h, w, np.random.default_rng(3))
    py, px = peak_of(heat)
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, :4, :4] = True  # misses the peak
    masks[1] = torch.from_numpy(np.indices((h, w)).sum(0) % 2 == 0)  # checkerboard: hundreds of pieces
    off_mask, _, off_score = official_post_process(masks.float()[None], heat)
    ours = select(masks, heat, (py, px))
    assert not off_mask.any() and off_score == 0.0
    assert not ours.found and ours.index is not None and ours.score < 1.0 and ours.candidates == 0


def test_peak_ties_official_accepts_any_tied_pixel_ours_the_first():
    h, w = 16, 16
    heat = torch.zeros(h, w)
    heat[2, 2] = heat[12, 12] = 1.0  # two equal maxima
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 10:15, 10:15] = True  # contains only the second maximum
    masks[1, 0:6, 0:6] = True  # contains the first (row-major) maximum
    _, off_idx, _ = official_post_process(masks.float()[None], heat)
    ours = select(masks, heat, peak_of(heat))
    assert peak_of(heat) == (2, 2)
    # official: both pass the peak filter and the smaller-mean one loses; ours: only mask 1 contains (2, 2)
    assert ours.found and ours.index == 1 and ours.candidates == 1
    assert off_idx in (0, 1)


def test_official_mask_geometry_and_our_proposals_agree_on_the_tiny_model():
    """The tiny Mask2Former's own logits: our cached masks are the official ``bin_mask``, and the
    selection on them with a Grad-CAM-like map is the official pick."""
    from ros2_iterprime.grounding.mask2former_proposals import Mask2FormerProposer
    from ros2_iterprime.models.mask2former import load_mask2former

    rgb = np.random.default_rng(0).integers(60, 120, (90, 130, 3), dtype=np.uint8)
    rgb[20:60, 30:80] = (210, 30, 30)
    prop = Mask2FormerProposer(load_mask2former("tiny-random-mask2former", device="cpu"))
    img = prop.encode(rgb)
    fr = img.frame
    ref = official_masks(img.proposals.logits, fr.resized_size, fr.padded_size, fr.original_size)
    assert img.lowres_size == (90, 130) and torch.equal(img.proposals.masks, ref.bool())
    rng = np.random.default_rng(1)
    for _ in range(5):
        heat = _heatmap(90, 130, rng)
        off_mask, off_idx, off_score = official_post_process(ref[None], heat)
        ours = select(img.proposals.masks, heat, peak_of(heat))
        if off_mask.any():
            assert ours.found and ours.index == off_idx and ours.score == pytest.approx(off_score, rel=1e-4)
            assert np.array_equal(prop.mask_for(img, ours.index), off_mask.bool().numpy())
        else:
            assert not ours.found
