"""PWEM formulas against values computed by hand (1 head, [CLS] + 3 pieces, 2 patches)."""
import math

import pytest
import torch

from ros2_iterprime.grounding.pwem import context_pieces, fuse, local_emphasis

# tokens: 0 [CLS], 1 primary word, 2 and 3 context words
A = torch.tensor([[[0.5, 0.5], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]])
G = torch.tensor([[[1.0, 1.0], [2.0, 1.0], [1.0, 2.0], [1.0, 1.0]]])
# A*G per token: [CLS] (0.5, 0.5); 1 (1.6, 0.2); 2 (0.3, 1.4); 3 (0.6, 0.4)
KEPT, PRIMARY, CONTEXT = [1, 2, 3], [1], [[2], [3]]
n = math.sqrt(0.5**2 + 0.2**2)  # L2 norm across context words of (A_m - A_j), same for both patches
E1 = (0.5 / n * 2 * 1.6, -0.5 / n * 1 * 0.2)  # normalise(A_m - A_j) * dA_m * (dA_m * A_m)
E2 = (0.2 / n * 2 * 1.6, -0.2 / n * 1 * 0.2)


def test_mode2_kept_tokens_and_cls():
    assert torch.allclose(fuse(A, G, KEPT, PRIMARY, CONTEXT, 2), torch.tensor([3.0 / 4, 2.5 / 4]))


def test_mode3_global_emphasis_repeats_primary_once_per_kept_token():
    # tokens [CLS, 1, 2, 3] + primary repeated 3x: the primary weighs as much as all kept words
    expected = torch.tensor([(3.0 + 3 * 1.6) / 7, (2.5 + 3 * 0.2) / 7])
    assert torch.allclose(fuse(A, G, KEPT, PRIMARY, CONTEXT, 3), expected)


def test_local_emphasis_difference_normalised_across_context_pieces():
    e = local_emphasis(A, G, PRIMARY, [2, 3])
    assert e.shape == (1, 2, 2)
    assert torch.allclose(e[0], torch.tensor([E1, E2]), atol=1e-6)


def test_local_emphasis_one_map_per_context_piece_not_per_word():
    # The official code (engine.py, `oth_focus_ids`) contrasts the primary word with every context
    # PIECE: a context word split into pieces 2 and 3 gives E_2 and E_3, exactly as two one-piece
    # words would, not one map of their mean (which would be sign(A_m - mean(A_2, A_3)) * 3.2/0.2).
    assert context_pieces(PRIMARY, [[2, 3]]) == [2, 3] == context_pieces(PRIMARY, CONTEXT)
    assert context_pieces([2], [[2, 3], [1]]) == [1, 3]  # a piece shared with the primary is left out
    per_word = fuse(A, G, KEPT, PRIMARY, CONTEXT, 0)
    one_word = fuse(A, G, KEPT, PRIMARY, [[2, 3]], 0)
    assert torch.allclose(one_word, per_word)
    averaged = torch.tensor([(3.2 + 3.0 + 4.8) / 8, (-0.2 + 2.5 + 0.6) / 8])  # the old per-word mean
    assert not torch.allclose(one_word, averaged, atol=1e-3)


def test_mode4_and_full_mode0():
    m4 = fuse(A, G, KEPT, PRIMARY, CONTEXT, 4)
    assert torch.allclose(m4, torch.tensor([(E1[0] + E2[0] + 3.0) / 6, (E1[1] + E2[1] + 2.5) / 6]), atol=1e-6)
    m0 = fuse(A, G, KEPT, PRIMARY, CONTEXT, 0)
    expected = torch.tensor([(E1[0] + E2[0] + 3.0 + 4.8) / 9, (E1[1] + E2[1] + 2.5 + 0.6) / 9])
    assert torch.allclose(m0, expected, atol=1e-6)


def test_mode1_all_tokens_and_negative_gradients_rectified():
    g = G.clone()
    g[0, 2, 0] = -5.0  # rectified to 0
    expected = torch.tensor([(0.5 + 1.6 + 0.0 + 0.6) / 4, 2.5 / 4])
    assert torch.allclose(fuse(A, g, KEPT, PRIMARY, CONTEXT, 1), expected)


def test_mode1_leaves_sep_out_when_given_the_prompt_pieces():
    # [CLS], 3 word pieces, [SEP] (position 4) with a large map that must not count
    a = torch.cat([A, torch.tensor([[[0.9, 0.1]]])], dim=1)
    g = torch.cat([G, torch.tensor([[[10.0, 10.0]]])], dim=1)
    m1 = fuse(a, g, KEPT, PRIMARY, CONTEXT, 1, prompt_pieces=[1, 2, 3])
    assert torch.allclose(m1, torch.tensor([(0.5 + 1.6 + 0.3 + 0.6) / 4, (0.5 + 0.2 + 1.4 + 0.4) / 4]))
    everything = fuse(a, g, KEPT, PRIMARY, CONTEXT, 1)  # without prompt_pieces: all tokens, [SEP] too
    assert torch.allclose(everything, torch.tensor([(3.0 + 9.0) / 5, (2.5 + 1.0) / 5]))
    # the no-kept-word fallback is mode 1 too, and also leaves [SEP] out
    assert torch.allclose(fuse(a, g, [], [], [], 0, prompt_pieces=[1, 2, 3]), m1)


def test_multi_piece_primary_is_averaged_and_no_context_uses_zero():
    a = torch.tensor([[[0.0, 0.0], [0.6, 0.2], [0.2, 0.6]]])
    g = torch.tensor([[[1.0, 1.0], [1.0, 3.0], [3.0, 1.0]]])
    e = local_emphasis(a, g, [1, 2], [])
    a_m, g_m = torch.tensor([0.4, 0.4]), torch.tensor([2.0, 2.0])
    assert torch.allclose(e[0, 0], torch.sign(a_m) * g_m * g_m * a_m)


def test_fallbacks_without_primary_or_kept_words():
    assert torch.allclose(fuse(A, G, KEPT, [], [], 0), fuse(A, G, KEPT, [], [], 2))
    assert torch.allclose(fuse(A, G, [], [], [], 0), fuse(A, G, [], [], [], 1))
    with pytest.raises(ValueError):
        fuse(A, G, KEPT, PRIMARY, CONTEXT, 7)
