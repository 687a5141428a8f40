"""The published configuration files of the default checkpoints, as plain dicts.

Two users: the benchmark (`bench --random-weights` builds the exact default architectures from them)
and the hub-faithful test fixture (`tests/hub_fixture.py` writes them, shrunk, into a model cache laid
out like the hub's). No weights, no network.

Where the values come from (no copy of the hub files is available on these machines; the opt-in test
`tests/models/test_real_weights.py::test_hub_fixture_matches_real_cache` compares every key below with the
real files once they are in the local cache):

- `Salesforce/blip-itm-base-coco` `config.json`: written by `save_pretrained` of transformers
  4.26.0.dev0 (Dec 2022; the converter `convert_blip_original_pytorch_to_hf.py` builds every BLIP
  checkpoint from `BlipConfig(projection_dim=512, text_config={}, vision_config={})`), so each nested
  config is the full `PretrainedConfig.to_dict()` of that release (generation keys included) and the
  top level its diff. Key set and values follow the published file of the sibling checkpoint made by
  the same converter, `Salesforce/blip-image-captioning-base` (only "architectures" differs), after
  the hub fix of April 2023 (transformers issue #22625 / PR #22632, hub PR
  `Salesforce/blip-itm-base-coco` #3) that changed the text `num_attention_heads` from 8 to 12.
  Text: BERT-base (12 layers, 768 wide, 12 heads), vocab 30524 = bert-base-uncased's 30522 + [DEC]
  (30522 = `bos_token_id`) + [ENC] (30523), `sep_token_id` 102, `is_decoder` true. Vision: ViT-B/16
  at 384 px with `layer_norm_eps` 1e-5 (the hub value; the original BLIP code uses 1e-6, LAVIS issue
  #106) and `initializer_range` 0.02.
- its `preprocessor_config.json`: `BlipImageProcessor` of 4.26 (384x384 bicubic, OpenAI CLIP
  mean/std, rescale 1/255, RGB conversion), saved by `BlipProcessor`.
- its tokenizer files: the bert-base-uncased fast tokenizer saved by `BlipProcessor` (only BERT's five
  special tokens: [DEC] and [ENC] are NOT in the tokenizer files; they exist only in the text
  embedding matrix).
- `facebook/sam-vit-base` `config.json`: `save_pretrained` of transformers 4.29.0.dev0 (April 2023) of
  the converter's (`convert_sam_to_hf.py`) ViT-B config: 12 layers, 768 wide, 12 heads, global
  attention in blocks 2, 5, 8, 11, window 14, 1024 px, 256-channel neck; prompt encoder and mask
  decoder at the SAM defaults (256 wide, 2-layer two-way transformer, 8 heads, 3 multimask outputs).
- its `preprocessor_config.json`: `SamImageProcessor` of 4.29 (longest edge 1024, bilinear, ImageNet
  mean/std, padded to 1024x1024).
"""
from __future__ import annotations

import copy
from typing import Any

#: `PretrainedConfig.to_dict()` keys of transformers 4.26-4.29 that every nested config of the files
#: above carries (defaults; model-specific values are set per config below).
_LEGACY_PRETRAINED_KEYS: dict[str, Any] = {
    "_name_or_path": "", "add_cross_attention": False, "architectures": None, "bad_words_ids": None,
    "begin_suppress_tokens": None, "bos_token_id": None, "chunk_size_feed_forward": 0,
    "cross_attention_hidden_size": None, "decoder_start_token_id": None, "diversity_penalty": 0.0,
    "do_sample": False, "early_stopping": False, "encoder_no_repeat_ngram_size": 0, "eos_token_id": None,
    "exponential_decay_length_penalty": None, "finetuning_task": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "is_decoder": False,
    "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "length_penalty": 1.0,
    "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0, "num_beam_groups": 1, "num_beams": 1,
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False,
    "output_scores": False, "pad_token_id": None, "prefix": None, "problem_type": None, "pruned_heads": {},
    "remove_invalid_values": False, "repetition_penalty": 1.0, "return_dict": True,
    "return_dict_in_generate": False, "sep_token_id": None, "suppress_tokens": None,
    "task_specific_params": None, "temperature": 1.0, "tf_legacy_loss": False, "tie_encoder_decoder": False,
    "tie_word_embeddings": True, "tokenizer_class": None, "top_k": 50, "top_p": 1.0, "torch_dtype": None,
    "torchscript": False, "typical_p": 1.0, "use_bfloat16": False,
}


def _nested(version: str, **values) -> dict[str, Any]:
    d = copy.deepcopy(_LEGACY_PRETRAINED_KEYS)
    d["transformers_version"] = version
    d.update(values)
    return dict(sorted(d.items()))


BLIP_ITM_BASE_COCO_CONFIG: dict[str, Any] = {
    "_commit_hash": None,
    "architectures": ["BlipForImageTextRetrieval"],
    "image_text_hidden_size": 256,
    "initializer_factor": 1.0,
    "logit_scale_init_value": 2.6592,
    "model_type": "blip",
    "projection_dim": 512,
    "text_config": _nested(
        "4.26.0.dev0",
        attention_probs_dropout_prob=0.0, bos_token_id=30522, eos_token_id=2, hidden_act="gelu",
        hidden_dropout_prob=0.0, hidden_size=768, initializer_factor=1.0, initializer_range=0.02,
        intermediate_size=3072, is_decoder=True, layer_norm_eps=1e-12, max_position_embeddings=512,
        model_type="blip_text_model", num_attention_heads=12, num_hidden_layers=12, pad_token_id=0,
        projection_dim=768, sep_token_id=102, use_cache=True, vocab_size=30524,
    ),
    "torch_dtype": "float32",
    "transformers_version": None,
    "vision_config": _nested(
        "4.26.0.dev0",
        attention_dropout=0.0, dropout=0.0, hidden_act="gelu", hidden_size=768, image_size=384,
        initializer_factor=1.0, initializer_range=0.02, intermediate_size=3072, layer_norm_eps=1e-05,
        model_type="blip_vision_model", num_attention_heads=12, num_channels=3, num_hidden_layers=12,
        patch_size=16, projection_dim=512,
    ),
}

#: OpenAI CLIP normalisation (BLIP's `transform_test`, and transformers' OPENAI_CLIP_MEAN/STD)
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

BLIP_ITM_BASE_COCO_PREPROCESSOR: dict[str, Any] = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_processor_type": "BlipImageProcessor",
    "image_std": OPENAI_CLIP_STD,
    "processor_class": "BlipProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 384, "width": 384},
}

#: bert-base-uncased special tokens and their ids in its 30522-entry vocab.txt
BERT_UNCASED_SPECIALS: dict[str, int] = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BERT_UNCASED_VOCAB_SIZE = 30522

BLIP_TOKENIZER_CONFIG: dict[str, Any] = {
    "cls_token": "[CLS]",
    "do_basic_tokenize": True,
    "do_lower_case": True,
    "mask_token": "[MASK]",
    "model_max_length": 512,
    "name_or_path": "bert-base-uncased",
    "never_split": None,
    "pad_token": "[PAD]",
    "processor_class": "BlipProcessor",
    "sep_token": "[SEP]",
    "special_tokens_map_file": None,
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "tokenizer_class": "BertTokenizer",
    "unk_token": "[UNK]",
}

BLIP_SPECIAL_TOKENS_MAP: dict[str, str] = {
    "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}

SAM_VIT_BASE_CONFIG: dict[str, Any] = {
    "_commit_hash": None,
    "architectures": ["SamModel"],
    "initializer_range": 0.02,
    "mask_decoder_config": _nested(
        "4.29.0.dev0",
        attention_downsample_rate=2, hidden_act="relu", hidden_size=256, iou_head_depth=3,
        iou_head_hidden_dim=256, layer_norm_eps=1e-06, mlp_dim=2048, model_type="", num_attention_heads=8,
        num_hidden_layers=2, num_multimask_outputs=3,
    ),
    "model_type": "sam",
    "prompt_encoder_config": _nested(
        "4.29.0.dev0",
        hidden_act="gelu", hidden_size=256, image_embedding_size=64, image_size=1024, layer_norm_eps=1e-06,
        mask_input_channels=16, model_type="", num_point_embeddings=4, patch_size=16,
    ),
    "torch_dtype": "float32",
    "transformers_version": None,
    "vision_config": _nested(
        "4.29.0.dev0",
        attention_dropout=0.0, dropout=0.0, global_attn_indexes=[2, 5, 8, 11], hidden_act="gelu",
        hidden_size=768, image_size=1024, initializer_factor=1.0, initializer_range=1e-10,
        layer_norm_eps=1e-06, mlp_dim=3072, mlp_ratio=4.0, model_type="", num_attention_heads=12,
        num_channels=3, num_hidden_layers=12, num_pos_feats=128, output_channels=256, patch_size=16,
        qkv_bias=True, rel_pos_zero_init=False, use_abs_pos=True, use_rel_pos=True, window_size=14,
    ),
}

SAM_VIT_BASE_PREPROCESSOR: dict[str, Any] = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "SamImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "pad_size": {"height": 1024, "width": 1024},
    "processor_class": "SamProcessor",
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": 1024},
}


def published(name: str) -> dict[str, Any]:
    """A deep copy of one of the dicts above (callers may shrink it freely)."""
    return copy.deepcopy(globals()[name])


def blip_itm_base_config():
    """`transformers.BlipConfig` of `Salesforce/blip-itm-base-coco` (12 text heads, not BlipConfig()'s 8)."""
    from transformers import BlipConfig

    return BlipConfig.from_dict(published("BLIP_ITM_BASE_COCO_CONFIG"))


def sam_vit_base_config():
    """`transformers.SamConfig` of `facebook/sam-vit-base`."""
    from transformers import SamConfig

    return SamConfig.from_dict(published("SAM_VIT_BASE_CONFIG"))
