"""``c4_quality``: the C4 line and page rules (Raffel et al. 2020), as datatrove's FineWeb runs them.

FineWeb runs C4 *without* the terminal-punctuation rule (``filter_no_terminal_punct=False``, the
default here). Lines are ``text.splitlines()``; for each line, in order:

1. ``strip()``; words = ``line.split()`` (taken before citations are removed);
2. a word longer than ``max_word_length`` (1000) → drop the line;
3. remove citations (``[12]``, ``[]``, ``[edit]``, ``[citation needed]``);
4. [optional] no terminal punctuation, or ends with "..." → drop the line;
5. fewer than ``min_words_per_line`` (3) words → drop the line;
6. "lorem ipsum" (any case) → drop the **document** (``lorem_ipsum``);
7. "javascript" (any case) → drop the line;
8. "{" → drop the **document** (``curly_bracket``);
9. a policy phrase ("terms of use", "privacy policy", "cookie policy", "uses cookies",
   "use of cookies", "use cookies") → drop the line;
10. else keep the line and count its sentences (spaCy sentencizer).

Fewer than ``min_num_sentences`` (5) sentences in the kept lines → ``too_few_sentences``.
Otherwise the document's text **is replaced** by the kept lines joined with newlines — this filter
edits text, as C4 does. ``explain`` never edits; it reports the text the filter would keep.
"""

from __future__ import annotations

import re
from typing import Any

from framework.core.registry import FILTERS
from framework.data import text as textlib
from plugins.filters.explaining import Report

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@FILTERS.register("c4_quality")
class C4QualityFilter:
    """C4's heuristics; keeps only the lines that pass and rewrites the document's text."""

    def __init__(
        self,
        split_paragraph: bool = True,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = False,
        min_num_sentences: int = 5,
        min_words_per_line: int = 3,
        max_word_length: int = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
    ):
        self.split_paragraph = split_paragraph
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.filter_curly_bracket = filter_curly_bracket
        self.filter_policy = filter_policy

    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        report, new_text, new_words = self._run(doc, full=False)
        if report.reason is not None:
            return False, report.reason
        textlib.replace_text(doc, new_text, new_words)
        return True

    def explain(self, doc: Any) -> dict:
        report, new_text, _ = self._run(doc, full=True)
        out = report.as_dict()
        out["info"]["text_after"] = new_text
        return out

    def _run(self, doc: Any, full: bool) -> tuple[Report, str, list[str] | None]:
        text = doc.text
        r = Report("c4_quality")
        drops = dict.fromkeys(
            ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy"), 0
        )
        if self.split_paragraph:
            analysis = textlib.analysis_of(doc) if self.min_num_sentences != -1 else None
            pieces = textlib.split_lines_with_offsets(text)
        else:
            analysis = None
            pieces = [(-1, s) for s in textlib.sentence_parts(text)]

        num_sentences = 0
        kept: list[str] = []
        kept_words: list[str] | None = [] if self.split_paragraph else None
        for offset, raw in pieces:
            line = raw.strip()
            words = line.split()
            if self.max_word_length != -1 and any(len(w) > self.max_word_length for w in words):
                drops["too_long_word"] += 1
                continue
            before = line
            if self.remove_citations:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (
                not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)
            ):
                drops["no_terminal_punct"] += 1
                continue
            if len(words) < self.min_words_per_line:
                drops["too_few_words"] += 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                r.drop("lorem_ipsum", "a kept line contains 'lorem ipsum'", line)
                if not full:
                    return r, text, None
                continue
            if self.filter_javascript and "javascript" in lower:
                drops["javascript"] += 1
                continue
            if self.filter_curly_bracket and "{" in line:
                r.drop("curly_bracket", "a kept line contains '{'", line)
                if not full:
                    return r, text, None
                continue
            if self.filter_policy and any(p in lower for p in POLICY_PHRASES):
                drops["policy"] += 1
                continue
            unchanged = analysis is not None and len(line) == len(before)
            if self.min_num_sentences != -1:
                if not self.split_paragraph:
                    num_sentences += 1
                elif unchanged:
                    start = offset + (len(raw) - len(raw.lstrip()))
                    num_sentences += analysis.sentence_count(start, start + len(line))
                else:
                    num_sentences += textlib.count_sentences(line)
            kept.append(line)
            if kept_words is not None:
                if unchanged:
                    start = offset + (len(raw) - len(raw.lstrip()))
                    kept_words.extend(analysis.words_between(start, start + len(line)))
                else:
                    kept_words.extend(textlib.words(line))

        r.info["lines_in"] = len(pieces)
        r.info["lines_kept"] = len(kept)
        r.info["lines_dropped"] = drops
        r.check(
            "too_few_sentences",
            "sentences in kept lines",
            num_sentences,
            "<",
            self.min_num_sentences,
        )
        new_text = ("\n" if self.split_paragraph else " ").join(kept).strip()
        return r, new_text, kept_words
