"""Each lossless change gives the numbers of the path it replaced (tiny models, fp32: rounding only)."""
import numpy as np
import pytest
import torch

from ros2_iterprime.benchmark import lossless
from ros2_iterprime.models import fast_attention as fa
from ros2_iterprime.models.fast_attention import (
    attention_report,
    blip_vision_uses_sdpa,
    restore_eager,
    use_sdpa_for_blip_vision,
)
from ros2_iterprime.models.loading import load_models


@pytest.fixture(scope="module")
def fp32_models():
    return load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")


def _pixels(models, seed=0):
    s = models.blip.config.vision_config.image_size
    return torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(seed))


def test_blip_vision_runs_sdpa_by_default_and_matches_eager(fp32_models):
    blip = fp32_models.blip
    assert blip_vision_uses_sdpa(blip)
    assert attention_report(blip, fp32_models.sam) == {
        "blip_vision": "sdpa", "blip_text": "eager (Grad-CAM reads attention probabilities and their gradient)",
        "sam_image_encoder": "sdpa", "sam_rel_pos_bias": "one buffer per encoder pass"}
    pv = _pixels(fp32_models)
    with torch.no_grad():
        fused = blip.vision_model(pixel_values=pv).last_hidden_state
        restore_eager(blip)
        assert not blip_vision_uses_sdpa(blip)
        eager = blip.vision_model(pixel_values=pv).last_hidden_state
        use_sdpa_for_blip_vision(blip)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    assert use_sdpa_for_blip_vision(blip) == 0  # idempotent
    # the text encoder (Grad-CAM) is untouched: its attention still returns the probabilities
    assert all(not hasattr(layer.attention.self, "_iterprime_eager_forward") for layer in blip.text_encoder.encoder.layer)


def test_lossless_entries_on_the_tiny_models(fp32_models):
    from ros2_iterprime.grounding.gradcam import BlipGradCAM
    from ros2_iterprime.models.trackers import load_tracker

    m = fp32_models
    pv = _pixels(m)
    e = lossless.blip_vision_sdpa(m.blip, pv, reps=1)
    assert e["max_abs_diff"] < 1e-5 and e["before_ms"] > 0 and e["after_ms"] > 0 and blip_vision_uses_sdpa(m.blip)
    s = m.sam.config.vision_config.image_size
    e = lossless.sam_encoder_sdpa(m.sam, torch.randn(1, 3, s, s))
    assert e["max_abs_diff"] < 1e-4 and type(m.sam.vision_encoder.layers[0].attn).__name__ == "SamVisionSdpaAttention"
    assert fa.sam_uses_rel_pos_workspace(m.sam)  # the eager/SDPA comparison put the workspace back
    e = lossless.sam_rel_pos_workspace(m.sam, torch.randn(1, 3, s, s))
    assert e["identical"] is True and e["max_abs_diff"] == 0 and fa.sam_uses_rel_pos_workspace(m.sam)
    tm = load_tracker("tiny-random", device="cpu", dtype="fp32")
    e = lossless.tracker_memory_attention_sdpa(tm.model, tm.num_maskmem)
    assert e["max_abs_diff"] < 1e-4 and tm.model.config._attn_implementation == "sdpa"
    assert e["shapes"]["memories"] == 3 and e["shapes"]["image_tokens"] == 16
    gc = BlipGradCAM(m.blip)
    tok = m.tokenizer("there is a left guy", return_tensors="pt")
    e = lossless.image_kv_at_set_image(gc, pv, tok["input_ids"], tok["attention_mask"])
    assert e["max_abs_diff"] == 0.0


def test_image_kv_projections_are_computed_in_set_image(fp32_models, rgb_image):
    """The cross-attention K/V of the image tokens belong to the per-image work: no text pass computes them."""
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter

    seg = ReferringSegmenter(fp32_models)
    seg.set_image(rgb_image)
    memo = seg.gradcam._memo
    assert memo and all(p._src is seg._image.blip_embeds for p in memo)
    calls = []
    for p in memo:
        p.linear.register_forward_hook(lambda *a: calls.append(1))
    res = seg.segment("the red cup")
    res2 = seg.segment("blue bar at the bottom")
    assert calls == [] and res.rounds >= 1 and res2.rounds >= 1
    # and the result is the one of the lazy path
    ref = ReferringSegmenter(fp32_models)
    ref.set_image(rgb_image)
    ref.gradcam.reset_image_cache()
    again = ref.segment("the red cup")
    np.testing.assert_array_equal(again.heatmap, res.heatmap)
