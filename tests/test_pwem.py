"""PWEM formulas against values computed by hand (1 head, [CLS] + 3 words, 2 patches)."""
import math

import pytest
import torch

from ros2_iterprime.pwem import fuse, local_emphasis

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


def test_local_emphasis_difference_normalised_across_context_words():
    e = local_emphasis(A, G, PRIMARY, CONTEXT)
    assert e.shape == (1, 2, 2)
    assert torch.allclose(e[0], torch.tensor([E1, E2]), atol=1e-6)


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
