"""`tiny-random`: the SAME BLIP ITM / SAM / Mask2Former classes with tiny, seeded, randomly initialised configs.

Built in-process with no files and no network, the way `transformers` tests its models. Outputs are
meaningless: these models check shapes, gradients, plumbing and logic, never accuracy. The BLIP text
encoder is deep enough that the Grad-CAM layer is not its last (so PWEM is reached), and its tokenizer
has the published BERT-uncased layout (`build_bert_layout_tokenizer`) so `[DEC]`/`[ENC]` ids follow the
real rule.
"""
from __future__ import annotations

import string

import torch

from .published import BERT_UNCASED_SPECIALS, BERT_UNCASED_VOCAB_SIZE

TINY_WORDS = (
    "there is a an the of on in at to with and by near behind next front left right middle center top "
    "bottom side far closest man woman guy girl boy person people kid child cup laptop table chair dog cat "
    "car bike red blue green white black yellow holding wearing sitting standing shirt one two"
).split()


def build_tiny_tokenizer():
    """A BERT-uncased-style WordPiece fast tokenizer with a small in-memory vocabulary.

    Every ASCII word tokenises (single letters/digits and their '##' continuations are in the vocab),
    so offsets and word-piece mapping behave as with the real 30k vocabulary.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    punct = list(string.punctuation)
    vocab_list = specials + chars + ["##" + c for c in chars] + punct + [w for w in TINY_WORDS if w not in chars]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return BertTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=64,
    )


def bert_layout_vocab(words=TINY_WORDS) -> list[str]:
    """30522 WordPiece entries laid out as bert-base-uncased's: its special tokens at their ids, single
    characters and their '##' continuations, punctuation and `words`, the rest [unusedN] fillers.

    With it, BLIP's text vocabulary (tokenizer + [DEC] 30522 + [ENC] 30523 = 30524) has its real
    layout, and every ASCII word tokenises (into words or characters).
    """
    vocab: list[str | None] = [None] * BERT_UNCASED_VOCAB_SIZE
    for tok, i in BERT_UNCASED_SPECIALS.items():
        vocab[i] = tok
    chars = list(string.ascii_lowercase + string.digits)
    free = iter(range(max(BERT_UNCASED_SPECIALS.values()) + 1, BERT_UNCASED_VOCAB_SIZE))
    for w in dict.fromkeys(chars + ["##" + c for c in chars] + list(string.punctuation) + list(words)):
        vocab[next(free)] = w
    unused = (f"[unused{i}]" for i in range(BERT_UNCASED_VOCAB_SIZE))
    return [v if v is not None else next(unused) for v in vocab]


def bert_uncased_backend(vocab: list[str]):
    """A `tokenizers.Tokenizer` with bert-base-uncased's pipeline (normaliser, pre-tokeniser, [CLS] $A [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(vocab)}
    tk = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                               lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tk.decoder = decoders.WordPiece(prefix="##")
    tk.add_special_tokens([t for t in BERT_UNCASED_SPECIALS if t in ids])
    return tk


def build_bert_layout_tokenizer(words=TINY_WORDS):
    """A fast tokenizer with bert-base-uncased's layout (`bert_layout_vocab`), for full-size random BLIP."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(tokenizer_object=bert_uncased_backend(bert_layout_vocab(words)), unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                             model_max_length=512)


def build_tiny_blip(seed: int = 0):
    """Tiny BlipForImageTextRetrieval (4 text + 2 vision layers, 4 heads, 64x64 input, 8x8 patch grid).

    Four text layers put the default Grad-CAM layer (`gradcam.default_layer`: 2) before the last one,
    where the ITM gradient reaches every token, so the tiny model exercises PWEM as the real one does.

    The text vocabulary is laid out as BLIP's: the tokenizer's entries, then [DEC] (= bos_token_id),
    then [ENC], neither of them in the tokenizer (see `itm_first_token_id`).
    """
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessorPil

    tok = build_tiny_tokenizer()
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tok) + 2, hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
            num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=64,
            pad_token_id=tok.pad_token_id, bos_token_id=len(tok), sep_token_id=tok.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=64, patch_size=8,
            # BlipVisionConfig defaults to initializer_range=1e-10: activations of ~1e-7 would underflow
            # fp16 and make every map degenerate. 0.02 gives O(1) activations like trained weights.
            initializer_range=0.02,
        ),
        projection_dim=16,
        image_text_hidden_size=32,
    )
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForImageTextRetrieval(config)
    proc = BlipImageProcessorPil(size={"height": 64, "width": 64})
    return model, proc, tok


def build_tiny_sam(seed: int = 0):
    """Tiny SamModel (2-layer ViT, 128x128 input, 8x8 embedding, 32x32 low-res masks)."""
    from transformers import SamConfig, SamImageProcessorPil, SamModel

    config = SamConfig(
        vision_config=dict(
            hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
            image_size=128, patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=4,
            num_pos_feats=8,
        ),
        prompt_encoder_config=dict(hidden_size=16, image_size=128, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = SamModel(config)
    proc = SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    return model, proc


#: tiny Mask2Former: its test-time input (short edge 64, long edge <= 128, padded to 32) and query count
TINY_MASK2FORMER_SHORT_EDGE = 64
TINY_MASK2FORMER_MAX_SIZE = 128
TINY_MASK2FORMER_QUERIES = 16


def tiny_mask2former_config():
    """Config of a tiny `Mask2FormerForUniversalSegmentation` with a tiny Swin backbone.

    Swin: embed 16, one block per stage, heads [1, 1, 2, 2], window 4 (stage widths 16..128, strides
    4..32). Pixel decoder: 32 wide, one deformable-attention encoder layer. Transformer decoder: 32
    wide, 2 heads, 3 layers (2 masked-attention layers + the learnable-query prediction), 16 queries,
    5 classes. Masks at 1/4 of the padded input, as the real model's.
    """
    from transformers import Mask2FormerConfig

    backbone = dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                    image_size=64, drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(
        backbone_config=backbone, num_queries=TINY_MASK2FORMER_QUERIES, num_labels=5, feature_size=32,
        mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=3,
        num_attention_heads=2, dim_feedforward=64)


def build_tiny_mask2former(seed: int = 0):
    """Tiny randomly initialised Mask2FormerForUniversalSegmentation (seeded, no files), eval mode, and its
    `Mask2FormerInput` (images resized to a 64-pixel short side, at most 128, padded to multiples of 32)."""
    from transformers import Mask2FormerForUniversalSegmentation

    from .mask2former_preprocess import Mask2FormerInput

    config = tiny_mask2former_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 3)
        model = Mask2FormerForUniversalSegmentation(config)
        # transformers' init gives mask logits of about +-0.2: at the official threshold (sigmoid > 0.35,
        # logit > -0.62) every query's mask would be the whole image. N(0, 1) query features and mask
        # embedder give logits of trained-like scale and query masks that differ (sizes, piece counts).
        with torch.no_grad():
            for name, p in model.model.transformer_module.named_parameters():
                if "mask_embedder" in name or "queries_features" in name:
                    p.normal_(0.0, 1.0)
    return model.eval(), Mask2FormerInput(TINY_MASK2FORMER_SHORT_EDGE, TINY_MASK2FORMER_MAX_SIZE, 32)
