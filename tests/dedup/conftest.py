"""Shared fixtures for the dedup tests: real English page texts from ../shared/corpora/web."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from tests.helpers import corpus

_STOPWORDS = {"the", "and", "of", "to", "a", "in", "is", "that", "for", "with", "on", "are"}


def _looks_english(text: str) -> bool:
    words = re.findall(r"[a-z]+", text.lower())
    return len(words) >= 250 and sum(w in _STOPWORDS for w in words) / len(words) > 0.12


@pytest.fixture(scope="session")
def english_pages() -> list[tuple[str, str]]:
    """Up to 30 (page id, main text) pairs of English pages with at least 250 words.

    Text comes from trafilatura (an independent extractor) on the raw HTML; pages are taken in
    id order among English-looking URLs, so the set is the same on every run."""
    import trafilatura

    rows = [json.loads(line) for line in corpus("web", "pages.jsonl").read_text().splitlines()]
    tlds = (".com/", ".org/", ".net/", ".uk/", ".edu/", ".gov/", ".io/")
    pages = []
    for row in sorted(rows, key=lambda r: r["id"]):
        if not any(t in row["url"] + "/" for t in tlds):
            continue
        html = gzip.decompress(corpus("web", "html", f"{row['id']}.html.gz").read_bytes())
        text = trafilatura.extract(html.decode("utf-8", errors="replace"))
        if text and _looks_english(text):
            pages.append((row["id"], text))
        if len(pages) == 30:
            break
    if len(pages) < 20:
        pytest.skip("fewer than 20 English pages found in the corpus")
    return pages
