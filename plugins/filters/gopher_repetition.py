"""``gopher_repetition``: Gopher's repetition rules (Rae et al. 2021, Table A1), as datatrove runs them.

In order, each dropping when its statistic is strictly greater than the threshold:

1. ``dup_para_frac`` — duplicated paragraphs / paragraphs, paragraphs = ``text.strip()`` split on
   two or more newlines;
2. ``dup_para_char_frac`` — characters of duplicated paragraphs / ``len(text)``;
3. ``dup_line_frac`` / 4. ``dup_line_char_frac`` — the same over lines = ``text`` split on runs of
   newlines;
5. ``top_{n}_gram`` for n = 2, 3, 4 — (length of the most common word n-gram, words joined by one
   space) × (its count) / ``len(text)``;
6. ``duplicated_{n}_n_grams`` for n = 5..10 — characters of repeated n-grams / ``len(text)``, where
   an n-gram is its words concatenated without spaces and the scan jumps past a repeat.

"Duplicated" counts repeats only (first occurrences are free). Words are spaCy blank-English tokens.
An empty text is dropped as ``empty``. A threshold of ``None`` (or 0) turns its rule off.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from framework.core.registry import FILTERS
from framework.data import text as textlib
from plugins.filters.explaining import Report, verdict

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


def top_ngram_chars(words: list[str], n: int) -> int | None:
    """len × count of the most common space-joined n-gram (first seen wins ties); None if < n words."""
    if len(words) < n:
        return None
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    # Tokens never contain spaces, so a tuple of words stands for its space-joined string.
    return (sum(map(len, gram)) + n - 1) * count


def duplicated_ngram_chars(words: list[str], n: int) -> int:
    """Characters of repeated n-grams (words concatenated), jumping n words past each repeat."""
    seen: set[str] = set()
    chars = 0
    i = 0
    last = len(words) - n
    while i <= last:
        gram = "".join(words[i : i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


@FILTERS.register("gopher_repetition")
class GopherRepetitionFilter:
    """Drops documents with repeated paragraphs, lines or word n-grams (Gopher, strict ``>``)."""

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: Any = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Any = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
    ):
        self.dup_line_frac = dup_line_frac
        self.dup_para_frac = dup_para_frac
        self.dup_line_char_frac = dup_line_char_frac
        self.dup_para_char_frac = dup_para_char_frac
        self.top_n_grams = tuple((int(n), float(f)) for n, f in top_n_grams)
        self.dup_n_grams = tuple((int(n), float(f)) for n, f in dup_n_grams)

    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        return verdict(self._run(doc, full=False))

    def explain(self, doc: Any) -> dict:
        return self._run(doc, full=True).as_dict()

    def _run(self, doc: Any, full: bool) -> Report:
        text = doc.text
        r = Report("gopher_repetition")
        if not text:
            r.drop("empty", "len(text)", 0)
            return r
        n_chars = len(text)

        paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
        dup, dup_chars = textlib.find_duplicates(paragraphs)
        r.info["paragraphs"] = len(paragraphs)
        if self.dup_para_frac:
            if (
                r.check(
                    "dup_para_frac",
                    "duplicated paragraphs / paragraphs",
                    dup / len(paragraphs),
                    ">",
                    self.dup_para_frac,
                )
                and not full
            ):
                return r
        if self.dup_para_char_frac:
            if (
                r.check(
                    "dup_para_char_frac",
                    "duplicated paragraph chars / len(text)",
                    dup_chars / n_chars,
                    ">",
                    self.dup_para_char_frac,
                )
                and not full
            ):
                return r

        lines = _LINE_SPLIT.split(text)
        dup, dup_chars = textlib.find_duplicates(lines)
        r.info["lines"] = len(lines)
        if self.dup_line_frac:
            if (
                r.check(
                    "dup_line_frac",
                    "duplicated lines / lines",
                    dup / len(lines),
                    ">",
                    self.dup_line_frac,
                )
                and not full
            ):
                return r
        if self.dup_line_char_frac:
            if (
                r.check(
                    "dup_line_char_frac",
                    "duplicated line chars / len(text)",
                    dup_chars / n_chars,
                    ">",
                    self.dup_line_char_frac,
                )
                and not full
            ):
                return r

        words = textlib.words_of(doc)
        r.info["words"] = len(words)
        for n, frac in self.top_n_grams:
            chars = top_ngram_chars(words, n)
            if chars is None:
                continue
            if (
                r.check(
                    f"top_{n}_gram", f"top {n}-gram chars / len(text)", chars / n_chars, ">", frac
                )
                and not full
            ):
                return r
        for n, frac in self.dup_n_grams:
            chars = duplicated_ngram_chars(words, n)
            if (
                r.check(
                    f"duplicated_{n}_n_grams",
                    f"duplicated {n}-gram chars / len(text)",
                    chars / n_chars,
                    ">",
                    frac,
                )
                and not full
            ):
                return r
        return r
