"""BLIP's vision LayerNorms use the eps BLIP was trained with (1e-6, the original salesforce/BLIP and LAVIS
ViT), not the 1e-5 of the published config and transformers' default (README, deviations)."""
import torch

from ros2_iterprime.models.loading import BLIP_VISION_LAYER_NORM_EPS, set_vision_layer_norm_eps


def test_loaded_blip_vision_layer_norms_use_the_trained_eps(tiny_models):
    norms = [m for m in tiny_models.blip.vision_model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == BLIP_VISION_LAYER_NORM_EPS == 1e-6 for m in norms)
    assert tiny_models.blip.config.vision_config.layer_norm_eps == 1e-6
    text_norms = [m for m in tiny_models.blip.text_encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert text_norms and all(m.eps == 1e-12 for m in text_norms)  # the BERT text encoder is untouched


def test_the_setter_changes_every_vision_layer_norm(tiny_models):
    blip = tiny_models.blip
    try:
        n = set_vision_layer_norm_eps(blip, 1e-5)
        assert n >= 3 and all(m.eps == 1e-5 for m in blip.vision_model.modules() if isinstance(m, torch.nn.LayerNorm))
    finally:
        set_vision_layer_norm_eps(blip, BLIP_VISION_LAYER_NORM_EPS)
