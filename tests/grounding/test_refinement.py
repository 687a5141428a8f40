"""IGRS: erase mask, blending and the stop rule, driven by scripted rounds."""
import pytest
import torch
import torch.nn.functional as F

from ros2_iterprime.grounding.refinement import RoundOutput, finalise, refine, salient_patches, steep_sigmoid
from ros2_iterprime.grounding.segmenter import _resize_map


def test_steep_sigmoid_and_erase_threshold():
    g = torch.tensor([[0.0, 0.45], [0.55, 1.0]])
    s = steep_sigmoid(g)
    assert torch.isclose(s.max(), torch.tensor(1.0))
    expected_raw = torch.sigmoid(20 * (g - 0.5))
    assert torch.allclose(s, expected_raw / expected_raw.max())
    # s(0.55)/s(1.0) = 0.7311/0.99995 >= 0.5 -> erased; s(0.45) = 0.269 -> kept
    assert salient_patches(g).tolist() == [[False, False], [True, True]]


class Script:
    """A fake Grad-CAM round: returns scripted maps/probabilities and records the keep masks it got."""

    def __init__(self, maps, probs):
        self.maps, self.probs, self.keeps = maps, probs, []

    def __call__(self, keep):
        i = len(self.keeps)
        self.keeps.append(keep.clone())
        return RoundOutput(self.maps[i], self.probs[i])


M1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
M2 = torch.tensor([[0.0, 1.0], [0.2, 0.0]])
M3 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])


def test_three_rounds_cumulative_erase_and_blend():
    s = Script([M1, M2, M3], [0.5, 0.6, 0.7])
    r = refine(s, grid=2, iterations=3, alpha=0.2)
    assert r.rounds == 3 and r.match_probs == [0.5, 0.6, 0.7]
    assert s.keeps[0].tolist() == [True, True, True, True]
    assert s.keeps[1].tolist() == [False, True, True, True]  # round 1's peak erased
    assert s.keeps[2].tolist() == [False, False, True, True]  # cumulative
    g2 = 0.8 * M1 + 0.2 * M2
    assert torch.allclose(r.heatmap, 0.8 * g2 + 0.2 * M3)
    assert r.erased.tolist() == [[True, True], [True, False]]


def test_stop_when_match_probability_drops_can_discard_that_round():
    s = Script([M1, M2, M3], [0.7, 0.6, 0.9])
    r = refine(s, grid=2, iterations=3, alpha=0.2, keep_stop_round=False)
    assert r.rounds == 1 and len(s.keeps) == 2  # round 2 ran, dropped, and was not used
    assert r.match_probs == [0.7, 0.6]
    assert torch.equal(r.heatmap, M1)


def test_without_stop_rule_all_rounds_are_blended():
    s = Script([M1, M2, M3], [0.7, 0.6, 0.9])
    r = refine(s, grid=2, iterations=3, alpha=0.2, early_stop=False)
    assert r.rounds == 3 and len(s.keeps) == 3
    assert torch.allclose(r.heatmap, 0.8 * (0.8 * M1 + 0.2 * M2) + 0.2 * M3)


def test_equal_probability_continues_and_t1_runs_once():
    s = Script([M1, M2, M3], [0.5, 0.5, 0.4])
    assert refine(s, grid=2, iterations=3, keep_stop_round=False).rounds == 2
    s = Script([M1, M2, M3], [0.5, 0.5, 0.4])
    assert refine(s, grid=2, iterations=3).rounds == 3  # default: the round that dropped is blended
    s1 = Script([M1], [0.5])
    r1 = refine(s1, grid=2, iterations=1)
    assert r1.rounds == 1 and len(s1.keeps) == 1


def test_bad_parameters():
    with pytest.raises(ValueError):
        refine(Script([M1], [0.5]), grid=2, iterations=0)
    with pytest.raises(ValueError):
        refine(Script([M1], [0.5]), grid=2, alpha=1.5)


def test_by_default_the_round_that_dropped_is_blended_then_the_loop_stops():
    s = Script([M1, M2, M3], [0.7, 0.6, 0.9])
    r = refine(s, grid=2, iterations=3, alpha=0.2)  # keep_stop_round=True: the official code
    assert r.rounds == 2 and len(s.keeps) == 2 and r.match_probs == [0.7, 0.6]
    assert torch.allclose(r.heatmap, 0.8 * M1 + 0.2 * M2)
    assert r.erased.tolist() == [[True, False], [False, False]]  # the stop round's patches are not added


# --------------------------------------------------------------------- against the official code
# A transcription, for these tests only, of what the official code does with the same per-round
# patch maps g_t (already min-max normalised) and match probabilities p_t: models/albef/engine.py
# (`process_gradcam`, the `epoch` branch of `visualize_groundvlp`) and demo/itergradcam.py
# (`IterGradCAM`, `mySig`), VoyageWang/IteRPrimE.


def _my_sig(x, a=20.0, b=0.5):
    s = 1 / (1 + torch.exp(a * (-x + b)))
    return s / s.max()


def _up(x, size):  # F.interpolate(bicubic, align_corners=False), then -= min, /= max
    y = F.interpolate(x[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
    y = y - y.min()
    return y / y.max() if y.max() > 0 else y


def _official(maps, probs, iterations, alpha, size):
    keeps, scores = [], []
    keep = ori = pre = None
    grad_rev_sum = None
    out = None
    for i in range(iterations):
        g, p = maps[i], probs[i]
        keeps.append(None if keep is None else keep.flatten().clone())  # the mask round i ran with
        if i == 0:  # engine, epoch 0
            keep = (_my_sig(g.flatten()) < 0.5).reshape(g.shape)
            ori = g
            out = _up(ori, size)
            out = _my_sig(out)  # IterGradCAM: gradcam = mySig(gradcam) for round 0
            pre = torch.zeros_like(out)
        else:  # engine, epoch i: erase mask and blend are updated before IterGradCAM's stop test
            keep = keep & (_my_sig(g.flatten()) < 0.5).reshape(g.shape)
            ori = ori * (1 - alpha) + g * alpha
            out = _up(ori, size)
            if grad_rev_sum * p < scores[-1]:
                break
        grad_rev_sum = float((torch.ones_like(pre) - pre).sum() / pre.numel())
        scores.append(p * grad_rev_sum)
        pre = out
    return out, keeps


def _ours(maps, probs, iterations, alpha, size, keep_stop_round):
    s = Script(maps, probs)
    r = refine(s, grid=maps[0].shape[0], iterations=iterations, alpha=alpha, keep_stop_round=keep_stop_round)
    return finalise(_resize_map(r.heatmap, size), r.rounds), s.keeps


def _maps(seed, n=3, p=6):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        m = torch.rand(p, p, generator=gen) ** 3
        out.append((m - m.min()) / (m.max() - m.min()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_t1_round0_passes_through_the_steep_sigmoid_as_officially(seed):
    maps = _maps(seed, n=1)
    ours, _ = _ours(maps, [0.5], 1, 0.2, (20, 14), keep_stop_round=False)
    official, _ = _official(maps, [0.5], 1, 0.2, (20, 14))
    assert torch.allclose(ours, official, atol=1e-6)
    plain = _resize_map(maps[0], (20, 14))  # what T = 1 returned before: up to 0.30 away
    assert (plain - official).abs().max() > 0.05


@pytest.mark.parametrize("probs", [[0.5, 0.6, 0.7], [0.5, 0.6, 0.55], [0.5, 0.4, 0.9]],
                         ids=["no-stop", "stop-at-2", "stop-at-1"])
@pytest.mark.parametrize("seed", range(3))
def test_t3_matches_the_official_blend_erase_and_stop(seed, probs):
    maps = _maps(10 + seed)
    official, official_keeps = _official(maps, probs, 3, 0.2, (20, 14))
    ours, keeps = _ours(maps, probs, 3, 0.2, (20, 14), keep_stop_round=True)
    assert torch.allclose(ours, official, atol=1e-6)  # blended maps are not sigmoid-stretched
    for mine, theirs in zip(keeps[1:], official_keeps[1:]):
        assert torch.equal(mine, theirs)  # the same cumulative erase masks, round by round
    discard, _ = _ours(maps, probs, 3, 0.2, (20, 14), keep_stop_round=False)
    if probs == [0.5, 0.6, 0.7]:
        assert torch.allclose(discard, official, atol=1e-6)  # no stop: nothing to discard
    else:
        assert not torch.allclose(discard, official, atol=1e-3)  # the option's documented difference


def test_predictor_stretches_only_a_single_round_map(tiny_segmenter, rgb_image, monkeypatch):
    import numpy as np

    import ros2_iterprime.grounding.segmenter as predictor

    seg = tiny_segmenter
    seg.set_image(rgb_image)
    t1 = seg.segment("the red cup", iterations=1)
    monkeypatch.setattr(predictor, "finalise", lambda heat, rounds, gain=20.0, center=0.5: heat)
    plain = seg.segment("the red cup", iterations=1)
    t3_plain = seg.segment("the red cup", iterations=3, early_stop=False)
    monkeypatch.undo()
    t3 = seg.segment("the red cup", iterations=3, early_stop=False)
    assert t1.rounds == 1 and t3.rounds == 3
    expected = steep_sigmoid(torch.from_numpy(plain.heatmap)).numpy()
    assert np.allclose(t1.heatmap, expected, atol=1e-6)  # T = 1: the official mySig on the upsampled map
    assert np.array_equal(t3.heatmap, t3_plain.heatmap)  # a blend is used as it is
    assert t3.heatmap.min() == 0.0 and t1.heatmap.min() > 0.0
