"""IGRS: erase mask, blending and the stop rule, driven by scripted rounds."""
import pytest
import torch

from ros2_iterprime.refinement import RoundOutput, refine, salient_patches, steep_sigmoid


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


def test_stop_when_match_probability_drops_discards_that_round():
    s = Script([M1, M2, M3], [0.7, 0.6, 0.9])
    r = refine(s, grid=2, iterations=3, alpha=0.2)
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
    assert refine(s, grid=2, iterations=3).rounds == 2
    s1 = Script([M1], [0.5])
    r1 = refine(s1, grid=2, iterations=1)
    assert r1.rounds == 1 and len(s1.keeps) == 1


def test_bad_parameters():
    with pytest.raises(ValueError):
        refine(Script([M1], [0.5]), grid=2, iterations=0)
    with pytest.raises(ValueError):
        refine(Script([M1], [0.5]), grid=2, alpha=1.5)
