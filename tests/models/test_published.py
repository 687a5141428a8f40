"""The published configs (ros2_iterprime.models.published) and the benchmark's full-size models built from them."""
import torch

from ros2_iterprime.models.published import blip_itm_base_config, sam_vit_base_config


def test_published_configs_load_with_the_real_values():
    b = blip_itm_base_config()
    t, v = b.text_config, b.vision_config
    assert (t.num_attention_heads, t.num_hidden_layers, t.hidden_size) == (12, 12, 768)  # BlipConfig() has 8 heads
    assert (t.vocab_size, t.bos_token_id, t.sep_token_id, t.pad_token_id, t.is_decoder) == (30524, 30522, 102, 0, True)
    assert (v.image_size, v.patch_size, v.hidden_size, v.layer_norm_eps) == (384, 16, 768, 1e-5)
    assert b.image_text_hidden_size == 256
    s = sam_vit_base_config()
    assert (s.vision_config.hidden_size, s.vision_config.num_hidden_layers) == (768, 12)
    assert list(s.vision_config.global_attn_indexes) == [2, 5, 8, 11] and s.vision_config.image_size == 1024
    assert (s.mask_decoder_config.hidden_size, s.prompt_encoder_config.hidden_size) == (256, 256)


def test_bench_builds_the_published_architectures():
    from ros2_iterprime.benchmark.run import build_full_size_random
    from ros2_iterprime.models.loading import itm_first_token_id

    with torch.device("meta"):  # shapes only: no 300M random parameters on these CPUs
        m = build_full_size_random(device="meta")
    t = m.blip.config.text_config
    cross = m.blip.text_encoder.encoder.layer[0].crossattention.self
    assert t.num_attention_heads == 12 and cross.num_attention_heads == 12
    assert m.blip.vision_model.embeddings.position_embedding.shape == (1, 577, 768)
    assert m.sam.config.vision_config.global_attn_indexes == [2, 5, 8, 11]
    assert m.blip_processor.size == {"height": 384, "width": 384} and m.sam_processor.size == {"longest_edge": 1024}
    assert len(m.tokenizer) == 30522 and itm_first_token_id(t, m.tokenizer, "enc") == 30523


def test_mask2former_published_config_is_the_papers_swin_l_coco_panoptic():
    """facebook/mask2former-swin-large-coco-panoptic: the official config's values, 215.5 M parameters
    (866 MB as fp32, the size of the hub's pytorch_model.bin)."""
    from transformers import Mask2FormerForUniversalSegmentation

    from ros2_iterprime.models.published import mask2former_swin_large_coco_panoptic_config

    c = mask2former_swin_large_coco_panoptic_config()
    b = c.backbone_config
    assert (c.num_queries, c.num_labels, c.decoder_layers, c.encoder_layers, c.hidden_dim) == (200, 133, 10, 6, 256)
    assert (c.num_attention_heads, c.dim_feedforward, c.encoder_feedforward_dim, c.common_stride) == (8, 2048, 1024, 4)
    assert (b.model_type, b.embed_dim, list(b.depths), list(b.num_heads), b.window_size) == (
        "swin", 192, [2, 2, 18, 2], [6, 12, 24, 48], 12)
    assert (b.image_size, b.patch_size, b.drop_path_rate, list(b.out_features)) == (
        384, 4, 0.3, ["stage1", "stage2", "stage3", "stage4"])
    with torch.device("meta"):
        m = Mask2FormerForUniversalSegmentation(c)
    n = sum(p.numel() for p in m.parameters())
    assert 215.4e6 < n < 215.6e6 and abs(4 * n / 1e6 - 866) < 10
