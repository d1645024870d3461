"""``fineweb_quality``: FineWeb's own line rules (Penedo et al. 2024), as today's datatrove runs them.

Lines = ``text.split("\\n")`` without blank ones (``strip() == ""``). In order:

1. no lines → ``empty``;
2. lines ending with a sentence terminator (:data:`framework.text.TERMINAL_PUNCTUATION`, no
   quotes) / lines **<** 0.12 → ``line_punct_ratio`` (unless the ratio is 0 and
   ``line_punct_exclude_zero``);
3. lines of at most 30 characters / lines **>** 0.67 → ``short_line_ratio``;
4. characters of duplicated lines / ``len(text)`` without newlines **>** 0.01 → ``char_dup_ratio``;
5. newlines / spaCy words **>** 0.3 → ``list_ratio``.

(The 2024 FineWeb release used non-strict comparisons, quotes as terminators and kept empty lines;
datatrove made them strict in December 2024 and that is the default here.)
"""

from __future__ import annotations

from typing import Any

from framework.core.registry import FILTERS
from framework.data import text as textlib
from plugins.filters.explaining import Report, verdict


@FILTERS.register("fineweb_quality")
class FineWebQualityFilter:
    """Drops list-like, unpunctuated or line-duplicated documents."""

    def __init__(
        self,
        line_punct_thr: float = 0.12,
        line_punct_exclude_zero: bool = False,
        stop_chars: Any = None,
        short_line_thr: float = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float = 0.01,
        new_line_ratio: float = 0.3,
    ):
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self.stop_chars = tuple(
            sorted(textlib.TERMINAL_PUNCTUATION) if stop_chars is None else stop_chars
        )
        self._stop_set = frozenset(self.stop_chars)
        self._single_chars = all(len(c) == 1 for c in self.stop_chars)
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio

    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        return verdict(self._run(doc, full=False))

    def explain(self, doc: Any) -> dict:
        return self._run(doc, full=True).as_dict()

    def _ends_with_stop(self, line: str) -> bool:
        if self._single_chars:
            return line[-1] in self._stop_set
        return line.endswith(self.stop_chars)

    def _run(self, doc: Any, full: bool) -> Report:
        text = doc.text
        r = Report("fineweb_quality")
        lines = [line for line in text.split("\n") if line.strip()]
        n = len(lines)
        r.info["lines"] = n
        if n == 0:
            r.drop("empty", "non-blank lines", 0)
            return r

        ratio = sum(1 for line in lines if self._ends_with_stop(line)) / n
        drops = r.check(
            "line_punct_ratio",
            "lines ending in terminal punctuation / lines",
            ratio,
            "<",
            self.line_punct_thr,
        )
        if drops and ratio == 0 and self.line_punct_exclude_zero:
            r.checks[-1]["drops"] = False
            r.checks[-1]["note"] = "ratio 0 exempt (line_punct_exclude_zero)"
            r.reason = None if r.reason == "line_punct_ratio" else r.reason
            drops = False
        if drops and not full:
            return r

        ratio = sum(1 for line in lines if len(line) <= self.short_line_length) / n
        if (
            r.check(
                "short_line_ratio",
                f"lines of <= {self.short_line_length} chars / lines",
                ratio,
                ">",
                self.short_line_thr,
            )
            and not full
        ):
            return r

        denom = len(text) - text.count("\n")
        dup_chars = textlib.find_duplicates(lines)[1]
        ratio = dup_chars / denom if denom else 0.0
        if (
            r.check(
                "char_dup_ratio",
                "duplicated line chars / chars without newlines",
                ratio,
                ">",
                self.char_duplicates_ratio,
            )
            and not full
        ):
            return r

        n_words = len(textlib.words_of(doc))
        newlines = text.count("\n")
        ratio = newlines / n_words if n_words else (float("inf") if newlines else 0.0)
        r.info["words"] = n_words
        if r.check("list_ratio", "newlines / words", ratio, ">", self.new_line_ratio) and not full:
            return r
        return r
