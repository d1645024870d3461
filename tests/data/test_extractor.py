"""The trafilatura extractor: FineWeb's call, order-independent output, a time limit."""

from __future__ import annotations

import gzip

import pytest

from plugins.extractors.trafilatura import ExtractionTimeout, Trafilatura
from tests.helpers import corpus

SHARED = (
    "This paragraph is the same boilerplate notice on every page of the site and it is long "
    "enough that trafilatura's duplicate test looks at it, more than one hundred characters."
)


def page(i: int) -> str:
    article = " ".join(
        f"Sentence {j} of the unique article number {i} about topic {i}." for j in range(12)
    )
    return (
        f"<html><head><title>Page {i}</title></head><body><article><h1>Article {i}</h1>"
        f"<p>{article}</p><p>{SHARED}</p><p>More unique text for page {i}, written only here "
        f"so that the page has a main body worth extracting.</p></article></body></html>"
    )


def reference_extract(html: str) -> str:
    """trafilatura itself with FineWeb's options and its process-global dedup cache."""
    import trafilatura

    return (
        trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True)
        or ""
    )


def test_global_cache_trap_exists_and_deepdive_avoids_it():
    from trafilatura.deduplication import LRU_TEST

    LRU_TEST.clear()
    fresh = reference_extract(page(0))
    assert SHARED in fresh
    LRU_TEST.clear()
    for i in range(1, 5):  # the shared paragraph is now "seen" several times in this process
        reference_extract(page(i))
    late = reference_extract(page(0))
    assert SHARED not in late  # the reference's output depends on what it saw before
    LRU_TEST.clear()

    extractor = Trafilatura(timeout=None)
    for i in range(1, 5):
        extractor.extract(page(i))
    assert extractor.extract(page(0)) == fresh


def test_same_text_whatever_was_extracted_before_on_real_pages():
    files = sorted(corpus("web", "html").glob("*.html.gz"))[:8]
    htmls = [gzip.open(f).read().decode("utf-8", errors="replace") for f in files]
    forward = Trafilatura(timeout=None)
    a = [forward.extract(h) for h in htmls]
    backward = Trafilatura(timeout=None)
    b = [backward.extract(h) for h in reversed(htmls)][::-1]
    twice = [forward.extract(h) for h in htmls]  # and again, after everything was seen once
    assert a == b == twice
    assert sum(bool(t) for t in a) >= 6


def test_matches_the_library_call_on_a_fresh_process_state():
    from trafilatura.deduplication import LRU_TEST

    html = (
        gzip.open(sorted(corpus("web", "html").glob("*.html.gz"))[3])
        .read()
        .decode("utf-8", "replace")
    )
    LRU_TEST.clear()
    expected = reference_extract(html)
    LRU_TEST.clear()
    assert Trafilatura(timeout=None).extract(html) == expected


def test_sandboxed_extraction_times_out_and_recovers():
    extractor = Trafilatura(timeout=30)
    try:
        assert SHARED in extractor.extract(page(1))
        big = (
            "<html><body>"
            + "".join(
                f"<div class='c{i}'><p>paragraph {i} " + "word " * 40 + "</p></div>"
                for i in range(6000)
            )
            + "</body></html>"
        )
        extractor.timeout = 0.05
        with pytest.raises(ExtractionTimeout):
            extractor.extract(big)
        extractor.timeout = 30
        assert extractor.extract(page(2)) == Trafilatura(timeout=None).extract(page(2))
    finally:
        extractor.close()


def test_sandbox_returns_texts_larger_than_a_pipe_buffer():
    paragraphs = "".join(
        f"<p>Paragraph {i}: a unique sentence about item {i} with enough words to be kept.</p>"
        for i in range(3000)
    )
    html = f"<html><body><article>{paragraphs}</article></body></html>"
    extractor = Trafilatura(timeout=60)
    try:
        text = extractor.extract(html)
    finally:
        extractor.close()
    assert len(text.encode()) > 200_000  # several 64 KiB pipe buffers
    assert text == Trafilatura(timeout=None).extract(html)
