"""Selection filters (peak containment, component count), scoring and the deterministic fallback."""
import numpy as np
import torch

from ros2_iterprime.grounding.selection import count_components, heatmap_region, select


def _heat():
    h = torch.zeros(20, 20)
    h[5:10, 5:10] = 0.8
    h[7, 7] = 1.0  # the peak
    return h


def _mask(*slices):
    m = torch.zeros(20, 20, dtype=torch.bool)
    for s in slices:
        m[s] = True
    return m


def test_count_components_four_connected_as_scipy_label_default():
    m = np.zeros((5, 5), bool)
    m[0, 0] = m[1, 1] = True  # diagonal neighbours: two components in 4-connectivity
    m[4, 4] = True
    assert count_components(m) == 3
    m[0, 1] = True  # an edge neighbour joins them
    assert count_components(m) == 2
    # the official postproc calls scipy.ndimage.label(mask) with its default structure
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(20):
        r = rng.random((16, 16)) > 0.6
        assert count_components(r) == ndimage.label(r)[1]


def _staircase() -> torch.Tensor:
    """One piece in 8-connectivity, 13 pieces in 4-connectivity: a diagonal staircase of pixels."""
    m = torch.zeros(20, 20, dtype=torch.bool)
    for i in range(13):
        m[3 + i, 3 + i] = True  # each pixel touches the next only at a corner
    return m


def test_mask_one_piece_in_8_but_many_in_4_connectivity_is_rejected():
    stair = _staircase()
    from scipy import ndimage

    assert ndimage.label(stair.numpy(), structure=np.ones((3, 3)))[1] == 1  # 8-connected: one piece
    assert count_components(stair.numpy()) == 13  # 4-connected: 13 > 12 pieces
    heat = torch.zeros(20, 20)
    heat[3:16, 3:16] = 0.5
    heat[9, 9] = 1.0  # the peak lies on the staircase
    solid = _mask(np.s_[0:20, 0:20])
    sel = select(torch.stack([stair, solid]), heat, max_components=12)
    assert sel.found and sel.index == 1 and sel.candidates == 1  # the official rule rejects the staircase
    twelve = stair.clone()
    twelve[15, 15] = False  # 12 pieces: allowed, and its mean heat beats the solid mask's
    assert count_components(twelve.numpy()) == 12
    assert select(torch.stack([twelve, solid]), heat, max_components=12).index == 0


def test_peak_containment_and_highest_mean_wins():
    small = _mask(np.s_[6:9, 6:9])  # contains the peak, high mean heat
    big = _mask(np.s_[0:20, 0:20])  # contains the peak, low mean heat
    away = _mask(np.s_[15:20, 15:20])  # misses the peak
    sel = select(torch.stack([big, away, small]), _heat())
    assert sel.found and sel.index == 2 and sel.candidates == 2
    heat = _heat().numpy()
    assert np.isclose(sel.score, 1 + heat[6:9, 6:9].mean())


def test_component_filter():
    heat = torch.zeros(20, 20)
    heat[0:14, 0:14] = 0.8
    heat[7, 7] = 1.0
    frag = torch.zeros(20, 20, dtype=torch.bool)
    frag[0:14:2, 0:14:2] = True  # a 7x7 lattice of dots on the hot area...
    frag[7, 7] = True  # ...plus the peak: many pieces, mean heat ~0.8
    solid = _mask(np.s_[0:20, 0:20])  # one piece, mean heat ~0.39
    assert count_components(frag.numpy()) > 12
    sel = select(torch.stack([frag, solid]), heat, max_components=12)
    assert sel.found and sel.index == 1
    sel2 = select(torch.stack([frag, solid]), heat, max_components=1000)
    assert sel2.index == 0  # allowed now, and its mean heat is higher


def test_ties_go_to_lowest_index():
    a = _mask(np.s_[6:9, 6:9])
    sel = select(torch.stack([a, a.clone(), a.clone()]), _heat())
    assert sel.index == 0


def test_fallback_best_mean_heat_among_nonempty_proposals():
    away1 = _mask(np.s_[15:20, 15:20])
    away2 = _mask(np.s_[9:12, 9:12])  # touches the hot square -> higher mean heat
    sel = select(torch.stack([away1, away2]), _heat())
    assert not sel.found and sel.index == 1
    assert 0.0 <= sel.score < 1.0  # below any selected score (>= 1)


def test_fallback_heatmap_region_without_proposals():
    sel = select(torch.zeros(0, 20, 20, dtype=torch.bool), _heat())
    assert not sel.found and sel.index is None
    assert sel.mask.sum() == 25 and sel.mask[7, 7]
    assert np.isclose(sel.score, _heat().numpy()[5:10, 5:10].mean())
    region = heatmap_region(torch.zeros(4, 4), (1, 2))  # nothing above threshold: the peak pixel only
    assert region.sum() == 1 and region[1, 2]
