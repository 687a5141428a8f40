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
- `facebook/mask2former-swin-large-coco-panoptic` (the official IteRPrimE proposal network), `config.json`:
  written by `save_pretrained` of transformers 4.26.0.dev0 ("Upload Mask2FormerForUniversalSegmentation",
  Jan 2023; 82.2 kB) from the converter (`convert_mask2former_original_pytorch_checkpoint_to_pytorch.py`):
  `Mask2FormerConfig` with the original config's values (Swin-L backbone from
  `microsoft/swin-large-patch4-window12-384`'s config: embed 192, depths [2, 2, 18, 2], heads
  [6, 12, 24, 48], window 12, 384 px, drop path 0.3, out_features stage1-4; 200 queries, 133 COCO
  panoptic classes, 10 decoder layers, 6 pixel-decoder encoder layers, 256 wide, 8 heads, FFN 2048,
  encoder FFN 1024). The top level is the diff against `PretrainedConfig()` (every Mask2Former key, plus
  `num_hidden_layers` = `decoder_layers` that 4.26 set, plus `enforce_input_proj`, the name the converter
  passes and the config does not define, which 4.26 stored as an extra attribute); the backbone is the full
  `SwinConfig.to_dict()` of 4.26 (`path_norm`, `stage_names`, no `out_indices` yet). Label NAMES are not
  reproduced (only their number matters to loading): the backbone's 1000 ImageNet labels, which make up
  most of the file's 82 kB, are shrunk to transformers' two defaults, the 133 COCO panoptic names are
  placeholders.
- its `preprocessor_config.json` (538 bytes on main since "change image_processor_type (#1)"): the
  converter's processor after the hub edit "Update preprocessor_config.json" (size 800 -> 384 x 384);
  key set and values as the sibling `facebook/mask2former-swin-base-coco-panoptic` (same uploader, same
  day, same size); serialised as `save_pretrained` does (indent 2, sorted keys) it is exactly 538 bytes,
  537 with the earlier "MaskFormerImageProcessor". Our preprocessing does not read it (it follows the
  official detectron2 test-time input instead: `mask2former_preprocess`).
- that repository's weights: `pytorch_model.bin` ONLY on main (866 MB; a safetensors conversion exists
  only on the unmerged hub PR #3 by SFconvertbot), state-dict names of transformers 4.26 (the Swin
  backbone's `attention.self.query/key/value`, `attention.output.dense`, `intermediate.dense`,
  `output.dense`, and its then persistent `attention.self.relative_position_index` buffers).
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


#: 133 COCO panoptic classes (80 things + 53 stuff); names are placeholders (see the module docstring)
COCO_PANOPTIC_NUM_LABELS = 133
_COCO_PANOPTIC_ID2LABEL = {str(i): f"coco_panoptic_{i}" for i in range(COCO_PANOPTIC_NUM_LABELS)}

MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_CONFIG: dict[str, Any] = {
    "_commit_hash": None,
    "activation_function": "relu",
    "architectures": ["Mask2FormerForUniversalSegmentation"],
    "backbone_config": _nested(
        "4.26.0.dev0",
        _name_or_path="microsoft/swin-large-patch4-window12-384", architectures=["SwinForImageClassification"],
        attention_probs_dropout_prob=0.0, depths=[2, 2, 18, 2], drop_path_rate=0.3, embed_dim=192,
        encoder_stride=32, hidden_act="gelu", hidden_dropout_prob=0.0, hidden_size=1536, image_size=384,
        initializer_range=0.02, layer_norm_eps=1e-05, mlp_ratio=4.0, model_type="swin", num_channels=3,
        num_heads=[6, 12, 24, 48], num_layers=4, out_features=["stage1", "stage2", "stage3", "stage4"],
        patch_size=4, path_norm=True, qkv_bias=True, stage_names=["stem", "stage1", "stage2", "stage3", "stage4"],
        torch_dtype="float32", use_absolute_embeddings=False, window_size=12,
    ),
    "class_weight": 2.0,
    "common_stride": 4,
    "decoder_layers": 10,
    "dice_weight": 5.0,
    "dim_feedforward": 2048,
    "dropout": 0.0,
    "encoder_feedforward_dim": 1024,
    "encoder_layers": 6,
    "enforce_input_proj": False,
    "enforce_input_projection": False,
    "feature_size": 256,
    "feature_strides": [4, 8, 16, 32],
    "hidden_dim": 256,
    "id2label": _COCO_PANOPTIC_ID2LABEL,
    "ignore_value": 255,
    "importance_sample_ratio": 0.75,
    "init_std": 0.02,
    "init_xavier_std": 1.0,
    "label2id": {v: int(k) for k, v in _COCO_PANOPTIC_ID2LABEL.items()},
    "mask_feature_size": 256,
    "mask_weight": 5.0,
    "model_type": "mask2former",
    "no_object_weight": 0.1,
    "num_attention_heads": 8,
    "num_hidden_layers": 10,
    "num_queries": 200,
    "output_auxiliary_logits": None,
    "oversample_ratio": 3.0,
    "pre_norm": False,
    "torch_dtype": "float32",
    "train_num_points": 12544,
    "transformers_version": "4.26.0.dev0",
    "use_auxiliary_loss": True,
}

MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_PREPROCESSOR: dict[str, Any] = {
    "_max_size": 1333,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "ignore_index": 255,
    "image_mean": [0.48500001430511475, 0.4560000002384186, 0.4059999883174896],
    "image_processor_type": "Mask2FormerImageProcessor",
    "image_std": [0.2290000021457672, 0.2239999920129776, 0.22499999403953552],
    "num_labels": 133,
    "reduce_labels": False,
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 384, "width": 384},
    "size_divisor": 32,
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


def mask2former_swin_large_coco_panoptic_config():
    """`transformers.Mask2FormerConfig` of `facebook/mask2former-swin-large-coco-panoptic` (Swin-L, 200 queries)."""
    from transformers import Mask2FormerConfig

    return Mask2FormerConfig.from_dict(published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_CONFIG"))
