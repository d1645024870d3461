"""``deepdive explain``'s table: a third-party filter's plain ``explain`` dict (the README's example
plugin) and a built-in filter's report give the same rows, checked against hand-computed values."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from framework.core.registry import FILTERS
from framework.data.document import Document
from framework.data.explain import (
    DROP,
    KEEP,
    UNKNOWN,
    Row,
    explanation_rows,
    format_explanation,
    format_step,
    keep_verdict,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "example_plugin"


@pytest.fixture()
def min_characters(monkeypatch):
    """The example plugin's filter class (imported from its folder when it is not installed)."""
    try:
        module = importlib.import_module("deepdive_example_plugin")
    except ImportError:
        monkeypatch.syspath_prepend(str(EXAMPLE))
        module = importlib.import_module("deepdive_example_plugin")
    return module.MinCharacters


def _verdicts_aligned(lines: list[str]) -> bool:
    """Whether every row's verdict (its last cell) starts under the header's ``verdict``."""
    header, *rows = lines
    return all(len(r) - len(r.split()[-1]) == header.index("verdict") for r in rows)


def test_example_plugin_rows_get_a_computed_verdict(min_characters):
    doc = Document("d", "x" * 42)
    stats = min_characters(min_chars=100).explain(doc)
    # 42 characters, kept if >= 100: dropped; the rule is shown as its opposite, "drops if <".
    assert explanation_rows(stats) == [Row("characters", "", 42, "<", 100, DROP)]
    long_doc = Document("d", "x" * 150)
    assert explanation_rows(min_characters(min_chars=100).explain(long_doc)) == [
        Row("characters", "", 150, "<", 100, KEEP)
    ]
    lines = format_explanation(stats)
    assert lines[0].split() == ["check", "value", "drops", "if", "threshold", "verdict"]
    assert lines[1].split() == ["characters", "42", "<", "100", "DROPS"]
    assert lines[1].index("100") == lines[0].index("threshold")
    assert _verdicts_aligned(lines)


def test_builtin_report_rows_match_hand_counts():
    # "the cat and the dog #": 6 spaCy tokens, 5 non-symbol words of 3 letters, one "#", 5 tokens
    # with a letter, stop words {the, and}.
    doc = Document("d", "the cat and the dog #")
    rows = {r.name: r for r in explanation_rows(FILTERS.build("gopher_quality").explain(doc))}
    expected = {
        "gopher_short_doc": (5, "<", 50, DROP),
        "gopher_long_doc": (5, ">", 100000, KEEP),
        "gopher_below_avg_threshold": (3.0, "<", 3, KEEP),
        "gopher_above_avg_threshold": (3.0, ">", 10, KEEP),
        "gopher_too_many_hashes": (pytest.approx(1 / 6), ">", 0.1, DROP),
        "gopher_too_many_ellipsis": (0.0, ">", 0.1, KEEP),
        "gopher_too_many_bullets": (0.0, ">", 0.9, KEEP),
        "gopher_too_many_end_ellipsis": (0.0, ">", 0.3, KEEP),
        "gopher_below_alpha_threshold": (pytest.approx(5 / 6), "<", 0.8, KEEP),
        "gopher_enough_stop_words": (2, "<", 2, KEEP),
    }
    assert list(rows) == list(expected)
    for name, (value, drops_if, threshold, verdict) in expected.items():
        row = rows[name]
        assert (row.value, row.drops_if, row.threshold, row.verdict) == (
            value,
            drops_if,
            threshold,
            verdict,
        ), name

    lines = format_explanation(FILTERS.build("gopher_quality").explain(doc))
    hashes = next(line for line in lines if "gopher_too_many_hashes" in line)
    assert hashes.split()[-4:] == ["0.1667", ">", "0.1", "DROPS"]
    assert _verdicts_aligned(lines[: len(expected) + 1])
    assert "    tokens: 6" in lines
    assert '    stop_words_present: ["and", "the"]' in lines


def test_one_table_for_both_shapes_in_a_trace_step(min_characters):
    entry = {
        "step": "min_characters",
        "verdict": "drop",
        "reason": "too_short",
        "explain": min_characters(min_chars=10).explain(Document("d", "short")),
    }
    assert format_step(entry) == [
        "[min_characters] DROP (too_short)",
        "    check       value  drops if  threshold  verdict",
        "    characters      5  <         10         DROPS",
    ]


@pytest.mark.parametrize(
    ("value", "keep_if", "threshold", "verdict"),
    [
        (5, ">=", 5, KEEP),
        (5, ">", 5, DROP),
        (5, "<=", 4, DROP),
        (3, "<", 4, KEEP),
        ("en", "==", "en", KEEP),
        ("en", "!=", "en", DROP),
        ("de", "in", ["en", "de"], KEEP),
        ("fr", "in", ["en", "de"], DROP),
        (5, "~", 5, UNKNOWN),  # an operator the protocol does not know
        ("a", "<", 5, UNKNOWN),  # not comparable
    ],
)
def test_keep_if_verdicts(value, keep_if, threshold, verdict):
    assert keep_verdict(value, keep_if, threshold) == verdict


def test_plain_protocol_verdict_of_the_filters_own_wins_and_extras_are_listed():
    stats = {
        "ratio": {"value": 0.5, "threshold": 0.4, "keep_if": "<", "keep": True, "statistic": "r"},
        "words": {"value": 7},
        "note": "free text",
    }
    assert explanation_rows(stats) == [
        Row("ratio", "r", 0.5, ">=", 0.4, KEEP),
        Row("words", "", 7, "", "", ""),
    ]
    assert format_explanation(stats)[-1] == '    note: "free text"'
