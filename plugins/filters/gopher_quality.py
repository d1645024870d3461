"""``gopher_quality``: Gopher's quality rules (Rae et al. 2021), decision-for-decision with datatrove.

Words are spaCy blank-English tokens; "non-symbol" words have at least one character outside
:data:`framework.text.PUNCTUATION_SET`. In order (reason names are datatrove's):

1. non-symbol words < ``min_doc_words`` (50) → ``gopher_short_doc``; > ``max_doc_words`` (100000)
   → ``gopher_long_doc``;
2. mean non-symbol word length < 3 → ``gopher_below_avg_threshold``; > 10 →
   ``gopher_above_avg_threshold``;
3. ``text.count("#")`` / all tokens > 0.1 → ``gopher_too_many_hashes``; ("..." + "…" counts) / all
   tokens > 0.1 → ``gopher_too_many_ellipsis``;
4. lines (``splitlines``) starting with "•" or "-" (after ``lstrip``) / lines > 0.9 →
   ``gopher_too_many_bullets``; lines ending with "..." or "…" (after ``rstrip``) / lines > 0.3 →
   ``gopher_too_many_end_ellipsis``;
5. tokens (punctuation tokens included) with an alphabetic character / all tokens < 0.8 →
   ``gopher_below_alpha_threshold`` (datatrove calls this parameter ``max_non_alpha_words_ratio``;
   it is a minimum);
6. distinct stop words present (case-sensitive) < 2 → ``gopher_enough_stop_words``.

A threshold of ``None`` (or 0) turns its rule off, as in datatrove.
"""

from __future__ import annotations

import math
from typing import Any

from framework.core.registry import FILTERS
from framework.data import text as textlib
from plugins.filters.explaining import Report, verdict

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


def _ratio(count: float, total: int) -> float:
    # datatrove divides by zero here (only reachable with min_doc_words off); we report 0.
    return count / total if total else 0.0


@FILTERS.register("gopher_quality")
class GopherQualityFilter:
    """Drops documents that are too short/long, symbol-heavy, list-like or lack stop words."""

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Any = None,
    ):
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.max_non_alpha_words_ratio = max_non_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(STOP_WORDS if stop_words is None else stop_words)

    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        return verdict(self._run(doc, full=False))

    def explain(self, doc: Any) -> dict:
        return self._run(doc, full=True).as_dict()

    def _run(self, doc: Any, full: bool) -> Report:
        text = doc.text
        r = Report("gopher_quality")
        words = textlib.words_of(doc)
        n_words = len(words)
        non_symbol = [w for w in words if not textlib.is_symbol_word(w)]
        n_non_symbol = len(non_symbol)
        r.info["tokens"] = n_words

        if self.min_doc_words:
            if (
                r.check(
                    "gopher_short_doc", "non-symbol words", n_non_symbol, "<", self.min_doc_words
                )
                and not full
            ):
                return r
        if self.max_doc_words:
            if (
                r.check(
                    "gopher_long_doc", "non-symbol words", n_non_symbol, ">", self.max_doc_words
                )
                and not full
            ):
                return r

        avg = sum(map(len, non_symbol)) / n_non_symbol if n_non_symbol else math.nan
        if self.min_avg_word_length:
            if (
                r.check(
                    "gopher_below_avg_threshold",
                    "mean non-symbol word length",
                    avg,
                    "<",
                    self.min_avg_word_length,
                )
                and not full
            ):
                return r
        if self.max_avg_word_length:
            if (
                r.check(
                    "gopher_above_avg_threshold",
                    "mean non-symbol word length",
                    avg,
                    ">",
                    self.max_avg_word_length,
                )
                and not full
            ):
                return r

        if self.max_symbol_word_ratio:
            hashes = _ratio(text.count("#"), n_words)
            if (
                r.check(
                    "gopher_too_many_hashes",
                    "'#' count / tokens",
                    hashes,
                    ">",
                    self.max_symbol_word_ratio,
                )
                and not full
            ):
                return r
            ellipsis = _ratio(text.count("...") + text.count("…"), n_words)
            if (
                r.check(
                    "gopher_too_many_ellipsis",
                    "('...' + '…') count / tokens",
                    ellipsis,
                    ">",
                    self.max_symbol_word_ratio,
                )
                and not full
            ):
                return r

        lines = text.splitlines()
        if self.max_bullet_lines_ratio:
            bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            if (
                r.check(
                    "gopher_too_many_bullets",
                    "bullet lines / lines",
                    _ratio(bullets, len(lines)),
                    ">",
                    self.max_bullet_lines_ratio,
                )
                and not full
            ):
                return r
        if self.max_ellipsis_lines_ratio:
            ends = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
            if (
                r.check(
                    "gopher_too_many_end_ellipsis",
                    "lines ending in an ellipsis / lines",
                    _ratio(ends, len(lines)),
                    ">",
                    self.max_ellipsis_lines_ratio,
                )
                and not full
            ):
                return r

        if self.max_non_alpha_words_ratio:
            alpha = sum(1 for w in words if _has_alpha(w))
            if (
                r.check(
                    "gopher_below_alpha_threshold",
                    "tokens with a letter / tokens",
                    _ratio(alpha, n_words),
                    "<",
                    self.max_non_alpha_words_ratio,
                )
                and not full
            ):
                return r

        if self.min_stop_words:
            present = self.stop_words.intersection(words)
            r.info["stop_words_present"] = sorted(present)
            if (
                r.check(
                    "gopher_enough_stop_words",
                    "distinct stop words present",
                    len(present),
                    "<",
                    self.min_stop_words,
                )
                and not full
            ):
                return r
        return r


def _has_alpha(word: str) -> bool:
    if word.isalpha():
        return True
    return any(c.isalpha() for c in word)
