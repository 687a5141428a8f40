"""The ITM input token (`SegmenterConfig.itm_first_token`): [ENC] (BLIP's trained condition) or [CLS]."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ros2_iterprime.grounding.gradcam import BlipGradCAM
from ros2_iterprime.grounding.segmenter import ReferringSegmenter, SegmenterConfig
from ros2_iterprime.models.loading import itm_first_token_id


class _Tok:
    """Tokenizer stand-in: `n` entries, optionally its own token -> id map."""

    def __init__(self, n, vocab=None):
        self.n, self.vocab = n, vocab or {}

    def __len__(self):
        return self.n

    def get_vocab(self):
        return self.vocab

    def convert_tokens_to_ids(self, token):
        return self.vocab[token]


def test_enc_id_rule_on_the_blip_vocabulary_layout(tiny_models):
    tok, text = tiny_models.tokenizer, tiny_models.blip.config.text_config
    n = len(tok)
    # tiny-random mirrors BLIP: tokenizer entries, then [DEC] = bos, then [ENC]; vocab = tokenizer + 2
    assert (text.vocab_size, text.bos_token_id) == (n + 2, n)
    assert itm_first_token_id(text, tok, "enc") == n + 1
    assert itm_first_token_id(text, tok, "cls") is None
    # BLIP base: bert-base-uncased 30522 entries, bos ([DEC]) 30522, vocab 30524 -> [ENC] 30523
    assert itm_first_token_id(SimpleNamespace(vocab_size=30524, bos_token_id=30522), _Tok(30522), "enc") == 30523
    # a tokenizer that has [ENC] itself is used as is
    assert itm_first_token_id(SimpleNamespace(vocab_size=100, bos_token_id=3), _Tok(90, {"[ENC]": 7}), "enc") == 7
    # no room for [ENC]: a clear error naming the numbers and the alternative
    with pytest.raises(ValueError, match="no room.*vocab_size 30523.*itm_first_token='cls'"):
        itm_first_token_id(SimpleNamespace(vocab_size=30523, bos_token_id=30522), _Tok(30522), "enc")
    with pytest.raises(ValueError, match="no room"):  # bos is not right after the tokenizer's entries
        itm_first_token_id(SimpleNamespace(vocab_size=30524, bos_token_id=101), _Tok(30522), "enc")
    with pytest.raises(ValueError, match="must be one of"):
        itm_first_token_id(text, tok, "sep")


def test_config_validates_the_choice():
    assert SegmenterConfig().itm_first_token == "enc"
    with pytest.raises(ValueError, match="itm_first_token"):
        SegmenterConfig(itm_first_token="ENC").validate()


def test_itm_pass_gets_enc_at_position_0_and_pwem_pieces_are_unchanged(tiny_models, rgb_image):
    tok = tiny_models.tokenizer
    seen = []
    h = tiny_models.blip.text_encoder.embeddings.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"][0].tolist()), with_kwargs=True)
    try:
        results, ids = {}, {}
        for choice in ("enc", "cls"):
            seg = ReferringSegmenter(tiny_models, SegmenterConfig(itm_first_token=choice, iterations=2,
                                                                  early_stop=False))
            seen.clear()
            results[choice] = seg.segment_image(rgb_image, "the man on the left holding a red cup")
            assert len(seen) == 2  # one text pass per IGRS round, all with the same ids
            assert seen[0] == seen[1]
            ids[choice] = seen[0]
    finally:
        h.remove()
    assert ids["enc"][0] == len(tok) + 1 and ids["cls"][0] == tok.cls_token_id
    assert ids["enc"][1:] == ids["cls"][1:]
    a, b = results["enc"], results["cls"]
    assert (a.kept_tokens, a.primary_word) == (b.kept_tokens, b.primary_word) == (
        ["man", "left", "holding", "red", "cup"], "man")
    # per-call override resolves the other token too
    seg = ReferringSegmenter(tiny_models)
    seen.clear()
    h = tiny_models.blip.text_encoder.embeddings.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"][0, 0].item()), with_kwargs=True)
    try:
        seg.segment_image(rgb_image, "the cup", itm_first_token="cls", iterations=1)
    finally:
        h.remove()
    assert seen == [tok.cls_token_id]


def test_cached_gradcam_matches_plain_forward_with_enc_ids(tiny_models):
    """Our cached Grad-CAM path vs BlipForImageTextRetrieval's plain text encoder + autograd, [ENC] fed to both."""
    blip, tok = tiny_models.blip, tiny_models.tokenizer
    gc = BlipGradCAM(blip)
    img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pv = tiny_models.blip_processor(images=img, return_tensors="pt", input_data_format="channels_last").pixel_values
    enc = tok("there is a red cup", return_tensors="pt")
    ids = enc.input_ids.clone()
    ids[0, 0] = itm_first_token_id(blip.config.text_config, tok, "enc")
    out = gc(gc.encode_image(pv), ids, enc.attention_mask)
    with torch.enable_grad():
        image_embeds = blip.vision_model(pixel_values=pv).last_hidden_state.detach()
        ref = blip.text_encoder(input_ids=ids, attention_mask=enc.attention_mask,
                                encoder_hidden_states=image_embeds, output_attentions=True)
        logit = blip.itm_head(ref.last_hidden_state[:, 0])[0, 1]
        attn = ref.cross_attentions[gc.layer]
        (g,) = torch.autograd.grad(logit, attn)
    assert abs(float(logit.detach()) - out.match_logit) < 1e-5
    assert torch.allclose(out.attn, attn.detach()[0][:, :, 1:], atol=1e-6)
    assert torch.allclose(out.grad, g[0][:, :, 1:], atol=1e-6)
    # and [ENC] really changes the pass (a different embedding row than [CLS])
    cls_out = gc(gc.encode_image(pv), enc.input_ids, enc.attention_mask)
    assert abs(cls_out.match_logit - out.match_logit) > 1e-6
