"""Grad-CAM on BLIP ITM cross-attention: formula by hand, and real gradients through the real class."""
import torch

from ros2_iterprime.grounding.gradcam import BlipGradCAM, gradcam_maps, to_patch_grid
from ros2_iterprime.grounding.pwem import fuse


def test_gradcam_formula_two_heads_two_by_two_patches():
    # 2 heads, 1 text token, 2x2 patches
    attn = torch.tensor([[[0.1, 0.2, 0.3, 0.4]], [[0.4, 0.3, 0.2, 0.1]]])
    grad = torch.tensor([[[1.0, -1.0, 2.0, 0.5]], [[-2.0, 1.0, 1.0, 3.0]]])
    cam = gradcam_maps(attn, grad)
    expected = torch.tensor([[[0.1, 0.0, 0.6, 0.2]], [[0.0, 0.3, 0.2, 0.3]]])
    assert torch.allclose(cam, expected)
    # heads averaged, reshaped to the 2x2 grid (mode 1 = plain Grad-CAM over all tokens)
    fused = to_patch_grid(fuse(attn, grad, kept=[], primary=[], context_words=[], mode=1))
    assert torch.allclose(fused, torch.tensor([[0.05, 0.15], [0.4, 0.25]]))


def test_to_patch_grid_rejects_non_square():
    import pytest

    with pytest.raises(ValueError):
        to_patch_grid(torch.zeros(3, 5))


def _inputs(tiny_models, text="there is a red cup"):
    import numpy as np

    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pv = tiny_models.blip_processor(images=img, return_tensors="pt", input_data_format="channels_last").pixel_values
    tok = tiny_models.tokenizer(text, return_tensors="pt")
    return pv, tok


def test_real_gradients_flow_through_blip_and_match_reference(tiny_models):
    gc = BlipGradCAM(tiny_models.blip)
    pv, tok = _inputs(tiny_models)
    emb = gc.encode_image(pv)
    out = gc(emb, tok.input_ids, tok.attention_mask)
    L = tok.input_ids.shape[1]
    heads = tiny_models.blip.config.text_config.num_attention_heads
    assert out.attn.shape == out.grad.shape == (heads, L, 64)
    assert torch.isfinite(out.cam).all() and out.cam.abs().sum() > 0 and out.grad.abs().sum() > 0
    assert 0.0 < out.match_prob < 1.0
    # no parameter gradient is ever kept
    assert all(p.grad is None and not p.requires_grad for p in tiny_models.blip.parameters())

    # Reference: the plain full forward of BlipForImageTextRetrieval (no caching, no hooks of ours
    # involved in the math), attention from output_attentions, gradient with autograd.
    blip = tiny_models.blip
    with torch.enable_grad():
        image_embeds = blip.vision_model(pixel_values=pv).last_hidden_state.detach().requires_grad_(True)
        ref = blip.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask,
                                encoder_hidden_states=image_embeds, output_attentions=True)
        logit = blip.itm_head(ref.last_hidden_state[:, 0])[0, 1]
        attn = ref.cross_attentions[gc.layer]
        (g,) = torch.autograd.grad(logit, attn)
    assert abs(float(logit.detach()) - out.match_logit) < 1e-5
    assert torch.allclose(out.attn, attn.detach()[0][:, :, 1:], atol=1e-6)
    assert torch.allclose(out.grad, g[0][:, :, 1:], atol=1e-6)


def test_erased_patches_get_no_attention(tiny_models):
    # Regression test: transformers 5.x drops the cross-attention mask unless we hand it over.
    gc = BlipGradCAM(tiny_models.blip)
    pv, tok = _inputs(tiny_models)
    emb = gc.encode_image(pv)
    keep = torch.ones(64, dtype=torch.bool)
    keep[:40] = False
    out = gc(emb, tok.input_ids, tok.attention_mask, keep)
    assert out.attn[:, :, :40].abs().max() == 0
    assert out.cam[:, :, :40].abs().max() == 0
    # the remaining patches (plus the always-kept image [CLS]) carry all the attention
    assert torch.all(out.attn[:, :, 40:].sum(-1) <= 1.0 + 1e-5) and out.attn[:, :, 40:].sum() > 0


def test_image_kv_projections_computed_once_per_image(tiny_models):
    gc = BlipGradCAM(tiny_models.blip)
    pv, tok = _inputs(tiny_models)
    calls = []
    lin = tiny_models.blip.text_encoder.encoder.layer[0].crossattention.self.key.linear
    h = lin.register_forward_hook(lambda *a: calls.append(1))
    try:
        emb = gc.encode_image(pv)
        for _ in range(3):
            gc(emb, tok.input_ids, tok.attention_mask)
        assert len(calls) == 1
        emb2 = gc.encode_image(pv)  # a new image: recomputed
        gc(emb2, tok.input_ids, tok.attention_mask)
        assert len(calls) == 2
    finally:
        h.remove()
