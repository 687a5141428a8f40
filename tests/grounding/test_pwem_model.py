"""PWEM through the real model: BlipForImageTextRetrieval (tiny-random), the default Grad-CAM layer,
the parser's word pieces and the five fusion modes, as the predictor runs them.

On a text encoder whose Grad-CAM layer is the last one, d(ITM logit)/dA is zero for every token but
[CLS] and all five modes collapse onto one map; these tests make sure that cannot happen unseen.
"""

import numpy as np
import pytest
import torch

from ros2_iterprime.grounding.gradcam import BlipGradCAM, default_layer
from ros2_iterprime.grounding.primary_word import ExpressionParser, select_pieces
from ros2_iterprime.grounding.pwem import MODES, fuse, local_emphasis
from ros2_iterprime.grounding.refinement import normalise

TEMPLATE = "there is a {}"
EXPRESSION = "the red cup behind the zebra"  # primary "cup"; context "red" and "zebra" (5 pieces)


@pytest.fixture(scope="module")
def setup(tiny_models):
    from transformers import BlipForImageTextRetrieval

    assert isinstance(tiny_models.blip, BlipForImageTextRetrieval)
    gc = BlipGradCAM(tiny_models.blip)
    img = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pv = tiny_models.blip_processor(images=img, return_tensors="pt", input_data_format="channels_last").pixel_values
    emb = gc.encode_image(pv)
    parsed = ExpressionParser().parse(EXPRESSION)
    enc = tiny_models.tokenizer(TEMPLATE.format(parsed.text), return_offsets_mapping=True, return_tensors="pt")
    pieces = select_pieces(parsed, enc["offset_mapping"][0].tolist(), TEMPLATE.index("{}"))
    return gc, emb, enc, parsed, pieces


def test_default_layer_is_relative_to_depth_and_never_the_last():
    assert default_layer(12) == 7  # LAVIS' BLIP ITM Grad-CAM layer
    assert [default_layer(n) for n in (1, 2, 3, 4, 6, 24)] == [0, 0, 1, 2, 3, 15]
    assert all(default_layer(n) < n - 1 for n in range(2, 49))
    with pytest.raises(ValueError):
        default_layer(0)


def test_tiny_profile_grad_reaches_every_token_at_the_default_layer(setup, tiny_models):
    gc, emb, enc, parsed, pieces = setup
    n = tiny_models.blip.config.text_config.num_hidden_layers
    assert gc.layer == default_layer(n) < n - 1
    out = gc(emb, enc.input_ids, enc.attention_mask)
    per_token = out.grad.abs().sum(dim=(0, 2))  # (tokens,)
    assert per_token.shape[0] == enc.input_ids.shape[1]
    assert torch.all(per_token > 0), per_token  # [CLS], every word piece and [SEP]
    # ... whereas at the last layer only [CLS] gets a gradient (why the last layer is never the default)
    last = BlipGradCAM(tiny_models.blip, layer=n - 1)(emb, enc.input_ids, enc.attention_mask)
    assert last.grad[:, 0].abs().sum() > 0 and last.grad[:, 1:].abs().max() == 0


def test_five_modes_give_pairwise_different_maps(setup):
    gc, emb, enc, parsed, pieces = setup
    assert parsed.primary_word == "cup" and parsed.kept_words == ["red", "cup", "zebra"]
    assert len(pieces.primary) == 1 and [len(w) for w in pieces.context_words] == [1, 5]
    out = gc(emb, enc.input_ids, enc.attention_mask)
    raw = {m: fuse(out.attn, out.grad, pieces.kept, pieces.primary, pieces.context_words, m, pieces.prompt_pieces)
           for m in MODES}
    maps = {m: normalise(raw[m]) for m in MODES}
    for m in MODES:
        assert torch.isfinite(maps[m]).all() and maps[m].max() == 1.0
    # Modes that use different tokens differ clearly (1 all pieces, 2 kept, 3 kept + primary repeats).
    for a, b in [(0, 1), (0, 2), (0, 4), (1, 2), (1, 3), (1, 4), (2, 3), (3, 4)]:
        assert (maps[a] - maps[b]).abs().max() > 1e-4, (a, b)
    # 0 vs 3 and 4 vs 2 differ only by the local-emphasis maps E_j = n_j * dA_m * (dA_m * A_m), which
    # are second order in the gradient while every other map is first order: with the tiny model's
    # |dA| ~ 1e-5 their share is ~1e-8, below float32 resolution of the fused map. So check, in
    # float64, that exactly the E_j (one per context piece: 6) make the difference and are not zero.
    a64, g64 = out.attn.double(), out.grad.double()
    raw64 = {m: fuse(a64, g64, pieces.kept, pieces.primary, pieces.context_words, m, pieces.prompt_pieces)
             for m in (0, 2, 3, 4)}
    k, j = len(pieces.kept), 6
    n3, n2 = 1 + k + k * len(pieces.primary), 1 + k
    e = local_emphasis(a64, g64.clamp(min=0), pieces.primary, [5, 9, 10, 11, 12, 13])
    assert e.shape[1] == j
    e_sum = e.sum(1).mean(0)  # (P,): summed over the context pieces, mean over heads
    assert (e_sum != 0).sum() > e_sum.numel() // 2 and torch.isfinite(e_sum).all()
    tol = 1e-6 * float(e_sum.abs().max())
    assert torch.allclose(raw64[0] * (j + n3) - raw64[3] * n3, e_sum, rtol=0, atol=tol)
    assert torch.allclose(raw64[4] * (j + n2) - raw64[2] * n2, e_sum, rtol=0, atol=tol)
    assert not torch.allclose(raw64[0] * (j + n3), raw64[3] * n3, rtol=0, atol=tol)


def test_erased_patches_get_exactly_zero_attention_and_zero_pwem(setup):
    gc, emb, enc, parsed, pieces = setup
    keep = torch.ones(emb.shape[1] - 1, dtype=torch.bool)
    keep[::3] = False
    out = gc(emb, enc.input_ids, enc.attention_mask, keep)
    assert out.attn[:, :, ~keep].abs().max() == 0  # every head, every token
    assert out.attn[:, :, keep].sum() > 0
    for m in MODES:
        fused = fuse(out.attn, out.grad, pieces.kept, pieces.primary, pieces.context_words, m, pieces.prompt_pieces)
        assert fused[~keep].abs().max() == 0, m  # local emphasis included: it is scaled by A_m
