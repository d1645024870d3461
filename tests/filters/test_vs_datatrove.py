"""Agreement with datatrove itself on hand-built edge cases (skipped when datatrove is unavailable).

datatrove is not a deepdive dependency. This test runs when ``DEEPDIVE_DATATROVE_PYTHON`` names a
Python interpreter that has ``datatrove[processing]`` and spaCy installed, or when the benchmarks'
environment exists in deepdive's cache directory (``tests.helpers.datatrove_python``); the full
corpus comparison is ``benchmarks/filters_vs_datatrove.py``.
"""

from benchmarks.filters_vs_datatrove import FILTERS, compare, run_datatrove, run_deepdive
from tests.helpers import datatrove_python

S = "This is a sentence."
CASES = [
    "\n".join([S] * 5),
    "\n".join([S] * 4),
    "Hello, world. It's 3.5% of U.S. GDP -- e.g. don't!",
    "\n\n".join(["unique paragraph number one", "again", "again", "again", "other text"]),
    "\n".join([S] * 5 + ["some Lorem Ipsum here"]),
    "\n".join([S] * 5 + ["function f() { x }"]),
    "\n".join([S + "[1]", "a b [edit]", S, S, S, "Enable JavaScript now please."]),
    "\n".join(["- item one here"] * 9 + ["plain line"]),
    "\n".join(["more words follow..."] * 4 + ["done"] * 6),
    " ".join(["word"] * 89 + ["#"] * 11),
    "the cat and the dog " * 20,
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Der schnelle braune Fuchs springt über den faulen Hund. " * 8,
    "Write John.Doe@Example.COM or 8.8.8.8, 192.168.1.1, v1234.5.6.789, 1.2.3.4.5",
    "a b c\nd e f\ng h i j",
    "",
]
URLS = [
    "https://www.pornhub.com/x",
    "https://example.com/xxx/page",
    "https://example.com/free-sex-videos",
    "https://example.com/Hot-Girls",
    "https://en.wikipedia.org/wiki/Essex",
    "https://forums.bbc.co.uk/news",
]


def test_filters_agree_with_datatrove():
    dt_python = datatrove_python("spacy")
    rows = [{"id": f"c{i}", "text": t, "url": URLS[i % len(URLS)]} for i, t in enumerate(CASES)] + [
        {"id": f"u{i}", "text": "x", "url": u} for i, u in enumerate(URLS)
    ]
    ours, _ = run_deepdive(rows)
    theirs, _ = run_datatrove(rows, dt_python)
    report = compare(ours, theirs)
    for name in [*FILTERS, "pii"]:
        assert report[name]["rate"] == 1.0, (name, report[name]["disagreements"])
