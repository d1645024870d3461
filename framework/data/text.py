"""Text statistics shared by the quality filters (and MinHash): word/sentence splitting, punctuation.

Why one module: FineWeb's filters all split the same text into words with spaCy's blank English
tokenizer, and that tokenization dominates their cost. The analysis travels with the document:
:func:`analysis_of` tokenizes a document's text once and keeps the result on the document, so
``gopher_repetition`` and ``gopher_quality`` share one pass, and ``c4_quality`` derives its
per-line sentence counts from the same tokens instead of re-running spaCy on every line. When
``c4_quality`` rewrites a document it attaches the words of the new text (:func:`replace_text`),
so ``fineweb_quality`` does not tokenize again either. Nothing is shared between documents, so
filters do not depend on each other's order or on what ran before in the process.

Facts this module reproduces (datatrove, ``utils/text.py`` and ``utils/word_tokenizers.py``):

* words = the ``.text`` of every spaCy token, stripped, empty ones dropped (whitespace tokens);
* a sentence count comes from spaCy's ``sentencizer`` rule: a sentence starts at the first token,
  and again at the first token that is neither punctuation nor a sentence-final character after a
  sentence-final character has been seen;
* ``PUNCTUATION`` = ASCII punctuation, common CJK / typographic punctuation and the C0/C1 control
  characters except tab and newline; ``TERMINAL_PUNCTUATION`` = Unicode's ``Sentence_Terminal``
  characters of Unicode 15.0 plus three Khmer signs (U+17D6, U+17D9, U+17DA).

spaCy splits text into runs at whitespace and tokenizes each non-whitespace run on its own, so the
tokens of a line are the tokens of the whole text that fall inside that line; every line break
that ``str.splitlines`` knows is whitespace to spaCy too. That is what makes the reuse exact.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any

# -- punctuation sets ------------------------------------------------------------------------------

_CONTROL = "".join(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0D, 0x20)])
_C1 = "".join(chr(c) for c in range(0x7F, 0xA0))
_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_TYPOGRAPHIC = "«´»–—’“”„…∶━►"
_CJK_AND_FULLWIDTH = "、。〈〉《》「」【】！％（），．１：；？～"

PUNCTUATION: str = _CONTROL + _ASCII_PUNCT + _C1 + _TYPOGRAPHIC + _CJK_AND_FULLWIDTH
"""Characters that on their own make a token a 'symbol' (Gopher) and that MinHash blanks out."""

# Unicode Sentence_Terminal (as of Unicode 15.0) + Khmer U+17D6, U+17D9, U+17DA, as code point
# ranges (inclusive).
_TERMINAL_RANGES: tuple[tuple[int, int], ...] = (
    (0x0021, 0x0021), (0x002E, 0x002E), (0x003F, 0x003F), (0x0589, 0x0589), (0x061D, 0x061F),
    (0x06D4, 0x06D4), (0x0700, 0x0702), (0x07F9, 0x07F9), (0x0837, 0x0837), (0x0839, 0x0839),
    (0x083D, 0x083E), (0x0964, 0x0965), (0x104A, 0x104B), (0x1362, 0x1362), (0x1367, 0x1368),
    (0x166E, 0x166E), (0x1735, 0x1736), (0x17D4, 0x17D6), (0x17D9, 0x17DA), (0x1803, 0x1803),
    (0x1809, 0x1809), (0x1944, 0x1945), (0x1AA8, 0x1AAB), (0x1B5A, 0x1B5B), (0x1B5E, 0x1B5F),
    (0x1B7D, 0x1B7E), (0x1C3B, 0x1C3C), (0x1C7E, 0x1C7F), (0x203C, 0x203D), (0x2047, 0x2049),
    (0x2E2E, 0x2E2E), (0x2E3C, 0x2E3C), (0x2E53, 0x2E54), (0x3002, 0x3002), (0xA4FF, 0xA4FF),
    (0xA60E, 0xA60F), (0xA6F3, 0xA6F3), (0xA6F7, 0xA6F7), (0xA876, 0xA877), (0xA8CE, 0xA8CF),
    (0xA92F, 0xA92F), (0xA9C8, 0xA9C9), (0xAA5D, 0xAA5F), (0xAAF0, 0xAAF1), (0xABEB, 0xABEB),
    (0xFE52, 0xFE52), (0xFE56, 0xFE57), (0xFF01, 0xFF01), (0xFF0E, 0xFF0E), (0xFF1F, 0xFF1F),
    (0xFF61, 0xFF61), (0x10A56, 0x10A57), (0x10F55, 0x10F59), (0x10F86, 0x10F89),
    (0x11047, 0x11048), (0x110BE, 0x110C1), (0x11141, 0x11143), (0x111C5, 0x111C6),
    (0x111CD, 0x111CD), (0x111DE, 0x111DF), (0x11238, 0x11239), (0x1123B, 0x1123C),
    (0x112A9, 0x112A9), (0x1144B, 0x1144C), (0x115C2, 0x115C3), (0x115C9, 0x115D7),
    (0x11641, 0x11642), (0x1173C, 0x1173E), (0x11944, 0x11944), (0x11946, 0x11946),
    (0x11A42, 0x11A43), (0x11A9B, 0x11A9C), (0x11C41, 0x11C42), (0x11EF7, 0x11EF8),
    (0x11F43, 0x11F44), (0x16A6E, 0x16A6F), (0x16AF5, 0x16AF5), (0x16B37, 0x16B38),
    (0x16B44, 0x16B44), (0x16E98, 0x16E98), (0x1BC9F, 0x1BC9F), (0x1DA88, 0x1DA88),
)  # fmt: skip

TERMINAL_PUNCTUATION: frozenset[str] = frozenset(
    chr(c) for lo, hi in _TERMINAL_RANGES for c in range(lo, hi + 1)
)
"""Sentence-final characters (159): '.', '!', '?', '。', '！', '？', '।', ... — no quotes."""

PUNCTUATION_SET: frozenset[str] = frozenset(PUNCTUATION) | TERMINAL_PUNCTUATION


def is_symbol_word(word: str) -> bool:
    """True when every character of ``word`` is punctuation (Gopher's 'symbol' tokens)."""
    return all(ch in PUNCTUATION_SET for ch in word)


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number, total characters) of elements already seen earlier in ``items``.

    First occurrences are not counted: ``["a", "b", "a", "a"]`` → ``(2, 2)``.
    """
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


# -- spaCy ---------------------------------------------------------------------------------------

_NLP: Any = None
_NLP_LOCK = threading.Lock()
_SENT_CHARS: frozenset[str] = frozenset()


def import_spacy():
    """Import spaCy without letting thinc import torch/tensorflow (seconds per worker process,
    and the blank tokenizer needs neither). Processes that already imported them are unchanged."""
    import sys

    blocked = [m for m in ("torch", "tensorflow", "mxnet", "cupy") if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # makes `import name` raise ImportError inside thinc.compat
    try:
        import spacy
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return spacy


def _nlp() -> Any:
    """spaCy's blank English pipeline (tokenizer only; no model download). Loaded once."""
    global _NLP, _SENT_CHARS
    if _NLP is None:
        with _NLP_LOCK:
            if _NLP is None:
                spacy = import_spacy()
                from spacy.pipeline.sentencizer import Sentencizer

                nlp = spacy.blank("en")
                _SENT_CHARS = frozenset(Sentencizer.default_punct_chars)
                _NLP = nlp
    return _NLP


@dataclass
class Analysis:
    """One tokenization of ``text``: token strings, their start offsets and punctuation flags."""

    text: str
    tokens: list[str]
    starts: list[int]
    punct: list[bool]
    _words: list[str] | None = field(default=None, repr=False)

    @property
    def words(self) -> list[str]:
        """Non-whitespace tokens, stripped (datatrove's ``split_into_words``)."""
        if self._words is None:
            self._words = [t.strip() for t in self.tokens if not t.isspace() and t]
        return self._words

    def sentence_count(self, start: int, end: int) -> int:
        """Sentences spaCy's sentencizer finds in ``text[start:end]`` taken on its own.

        ``text[start:end]`` must not begin or end with whitespace and must not cut a
        non-whitespace run (a stripped line satisfies both).
        """
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_left(self.starts, end, lo)
        return _count_sentences(self.tokens[lo:hi], self.punct[lo:hi])

    def words_between(self, start: int, end: int) -> list[str]:
        """The words of ``text[start:end]`` (same preconditions as :meth:`sentence_count`)."""
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_left(self.starts, end, lo)
        return [t.strip() for t in self.tokens[lo:hi] if not t.isspace() and t]


def _count_sentences(tokens: list[str], punct: list[bool]) -> int:
    """spaCy's sentencizer rule over a token sequence; at least 1 (datatrove counts 1 for '')."""
    _nlp()
    count = 1
    seen_final = False
    for tok, is_punct in zip(tokens, punct, strict=True):
        in_final = tok in _SENT_CHARS
        if seen_final and not is_punct and not in_final:
            count += 1
            seen_final = False
        elif in_final:
            seen_final = True
    return count


def _tokenize(text: str) -> Analysis:
    nlp = _nlp()
    with nlp.memory_zone():
        try:
            doc = nlp.make_doc(text)
        except Exception:
            # spaCy cannot tokenize a text that contains the attribute name "IS_ALPHA"; the
            # reference retries without it, and so do we.
            if "IS_ALPHA" not in text:
                raise
            doc = nlp.make_doc(text.replace("IS_ALPHA", ""))
        tokens = [t.text for t in doc]
        starts = [t.idx for t in doc]
        punct = [t.is_punct for t in doc]
    return Analysis(text, tokens, starts, punct)


def analyze(text: str) -> Analysis:
    """The tokenization of ``text`` (computed afresh; see :func:`analysis_of` for documents)."""
    return _tokenize(text)


def words(text: str) -> list[str]:
    """spaCy blank-English word tokens of ``text`` (whitespace dropped, each token stripped)."""
    return _tokenize(text).words


class _WordsOnly(Analysis):
    """An analysis that knows only the words of a text built from already tokenized pieces
    (enough for word-based filters); sentence counts tokenize the piece asked for."""

    def __init__(self, text: str, text_words: list[str]):
        super().__init__(text, [], [], [], text_words)

    def sentence_count(self, start: int, end: int) -> int:
        return analyze(self.text[start:end]).sentence_count(0, end - start)


ANALYSIS_ATTRIBUTE = "analysis"  # where a document keeps the analysis of its current text


def analysis_of(doc: Any) -> Analysis:
    """The analysis of ``doc.text``, computed once per text and kept on the document."""
    kept = getattr(doc, ANALYSIS_ATTRIBUTE, None)
    if kept is not None and (kept.text is doc.text or kept.text == doc.text):
        if not isinstance(kept, _WordsOnly):
            return kept
    result = _tokenize(doc.text)
    _attach(doc, result)
    return result


def words_of(doc: Any) -> list[str]:
    """The words of ``doc.text`` (from the analysis kept on the document when there is one)."""
    kept = getattr(doc, ANALYSIS_ATTRIBUTE, None)
    if kept is not None and (kept.text is doc.text or kept.text == doc.text):
        return kept.words
    return analysis_of(doc).words


def replace_text(doc: Any, new_text: str, new_words: list[str] | None = None) -> None:
    """Set ``doc.text``; ``new_words`` (the words of ``new_text``, when the caller built it from
    tokenized pieces) saves the next filter a tokenization."""
    doc.text = new_text
    _attach(doc, None if new_words is None else _WordsOnly(new_text, new_words))


def _attach(doc: Any, analysis: Analysis | None) -> None:
    try:
        setattr(doc, ANALYSIS_ATTRIBUTE, analysis)
    except AttributeError:  # a document type without room for it: nothing is kept
        pass


def count_sentences(text: str) -> int:
    """Sentences in ``text`` by spaCy's sentencizer (datatrove's ``len(split_into_sentences)``)."""
    analysis = _tokenize(text)
    return _count_sentences(analysis.tokens, analysis.punct)


def split_lines_with_offsets(text: str) -> list[tuple[int, str]]:
    """``text.splitlines()`` with each line's start offset in ``text``."""
    out = []
    pos = 0
    for raw in text.splitlines(keepends=True):
        line = raw.splitlines()[0] if raw else raw
        out.append((pos, line))
        pos += len(raw)
    return out


def sentence_parts(text: str) -> list[str]:
    """``text`` cut after each spaCy sentence (datatrove's ``split_into_sentences``).

    The pieces cover the whole text: piece i runs from the end of sentence i-1 to the end of
    sentence i, and the last piece runs to the end of the text.
    """
    analysis = analyze(text)
    ends: list[int] = []
    seen_final = False
    last_end = 0
    for tok, start, is_punct in zip(analysis.tokens, analysis.starts, analysis.punct, strict=True):
        in_final = tok in _SENT_CHARS
        if seen_final and not is_punct and not in_final:
            ends.append(last_end)
            seen_final = False
        elif in_final:
            seen_final = True
        last_end = start + len(tok)
    if analysis.tokens:
        ends.append(last_end)
    if not ends:
        return [text]
    bounds = [0, *ends[:-1]]
    return [text[a:b] for a, b in zip(bounds, [*ends[:-1], len(text)], strict=True)]
