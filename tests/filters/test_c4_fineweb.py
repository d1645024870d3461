"""c4_quality and fineweb_quality: line rules, document drops, text rewriting, strict boundaries."""

import pytest

from plugins.filters.c4_quality import C4QualityFilter
from plugins.filters.fineweb_quality import FineWebQualityFilter

S = "This is a sentence."  # 4 words, 1 sentence


def c4(**kw):
    return C4QualityFilter(**kw)


@pytest.mark.parametrize(("n", "expected"), [(4, False), (5, True)])
def test_c4_min_sentences_boundary(doc, n, expected):
    d = doc("\n".join([S] * n))
    assert c4().filter(d) == (True if expected else (False, "too_few_sentences"))


def test_c4_counts_sentences_inside_a_line(doc):
    d = doc("One two three. Four five six! Seven eight nine? Ten eleven twelve. Go on now.")
    assert c4().filter(d) is True


def test_c4_line_rules_and_rewrite(doc):
    text = "\n".join([
        "  " + S + "  ",
        "too short",                         # < 3 words: line dropped
        "Enable JavaScript to see this.",    # javascript: line dropped
        "Read our Privacy Policy today.",    # policy: line dropped
        "x" * 1001 + " long word line",      # word > 1000 chars: line dropped
        "y" * 1000 + " long word ok.",       # exactly 1000: kept
        S + "[1]",                           # citation removed
        "a b [edit]",                        # 3 words before citation removal: kept as "a b "
        S, S,
    ])  # fmt: skip
    d = doc(text)
    assert c4().filter(d) is True
    assert d.text.split("\n") == [S, "y" * 1000 + " long word ok.", S, "a b ", S, S]


def test_c4_document_drops_only_from_surviving_lines(doc):
    body = "\n".join([S] * 5)
    assert c4().filter(doc(body + "\nsome Lorem Ipsum here")) == (False, "lorem_ipsum")
    assert c4().filter(doc(body + "\nlorem ipsum")) is True  # 2 words: line gone first
    assert c4().filter(doc(body + "\nfunction f() { x }")) == (False, "curly_bracket")
    assert c4().filter(doc(body + "\n{ a")) is True  # 2 words: line gone first
    # lorem ipsum is checked before javascript; '{' after javascript
    assert c4().filter(doc(body + "\nlorem ipsum javascript")) == (False, "lorem_ipsum")
    assert c4().filter(doc(body + "\njavascript { here")) is True


def test_c4_terminal_punct_option(doc):
    text = "\n".join([S] * 5 + ["no terminal punctuation here", "ends with dots..."])
    d = doc(text)
    assert c4(filter_no_terminal_punct=True).filter(d) is True
    assert d.text == "\n".join([S] * 5)
    d = doc(text)
    assert c4().filter(d) is True  # FineWeb's setting keeps both lines
    assert d.text.endswith("ends with dots...")


def test_c4_explain_does_not_edit(doc):
    d = doc("\n".join([S] * 5 + ["x y"]))
    ex = c4().explain(d)
    assert ex["keep"] and ex["info"]["text_after"] == "\n".join([S] * 5)
    assert d.text.endswith("x y")
    assert ex["checks"][-1] == {"name": "too_few_sentences", "statistic": "sentences in kept lines",
                                "value": 5, "threshold": 5, "drops_if": "<", "drops": False}  # fmt: skip


# -- fineweb_quality ---------------------------------------------------------------------------

OFF = dict(line_punct_thr=0, short_line_thr=1, char_duplicates_ratio=1, new_line_ratio=1e9)


def fw(**kw):
    return FineWebQualityFilter(**{**OFF, **kw})


def test_fineweb_empty(doc):
    assert FineWebQualityFilter().filter(doc(" \n\t\n")) == (False, "empty")


def test_fineweb_line_punct_boundary_and_quotes(doc):
    lines = [f"line {i} ends with a period." for i in range(3)] + [f"plain {i}" for i in range(22)]
    assert fw(line_punct_thr=0.12).filter(doc("\n".join(lines))) is True  # 3/25 = 0.12
    lines[0] = 'line 0 ends with a quote."'  # a closing quote is not terminal punctuation
    assert fw(line_punct_thr=0.12).filter(doc("\n".join(lines))) == (False, "line_punct_ratio")
    zero = "\n".join(["no stop"] * 3)
    assert fw(line_punct_thr=0.12, line_punct_exclude_zero=True).filter(doc(zero)) is True


def test_fineweb_blank_lines_do_not_count(doc):
    text = "A full stop.\n\n\n   \nnone"
    ex = fw(line_punct_thr=0.12).explain(doc(text))
    assert ex["info"]["lines"] == 2 and ex["checks"][0]["value"] == 0.5


def test_fineweb_short_lines_boundary(doc):
    short = "s" * 30  # exactly 30 chars counts as short
    long = "l" * 31
    text = "\n".join([short] * 67 + [long + str(i) for i in range(33)])
    assert fw(short_line_thr=0.67).filter(doc(text)) is True  # 0.67
    text = "\n".join([short] * 68 + [long + str(i) for i in range(32)])
    assert fw(short_line_thr=0.67).filter(doc(text)) == (False, "short_line_ratio")


def test_fineweb_char_dup_ratio(doc):
    lines = ["x" * 10, "x" * 10] + [chr(65 + i) * 99 for i in range(10)]
    text = "\n".join(lines)
    ex = fw(char_duplicates_ratio=0.01).explain(doc(text))
    assert ex["checks"][2]["value"] == 10 / (len(text) - text.count("\n"))  # 10 / 1010
    assert fw(char_duplicates_ratio=0.01).filter(doc(text)) is True  # 10/1010 < 0.01
    lines.append("x" * 10)
    text = "\n".join(lines)  # 20 / 1020
    assert fw(char_duplicates_ratio=0.01).filter(doc(text)) == (False, "char_dup_ratio")


def test_fineweb_list_ratio(doc):
    text = "a b c\nd e f\ng h i j"  # 2 newlines / 10 words = 0.2
    assert fw(new_line_ratio=0.2).filter(doc(text)) is True
    assert fw(new_line_ratio=0.19).filter(doc(text)) == (False, "list_ratio")


def test_fineweb_defaults():
    f = FineWebQualityFilter()
    assert (f.line_punct_thr, f.short_line_thr, f.short_line_length) == (0.12, 0.67, 30)
    assert (f.char_duplicates_ratio, f.new_line_ratio) == (0.01, 0.3)
    assert len(f.stop_chars) == 159


def test_c4_rewrite_feeds_fineweb_the_same_words(doc):
    from framework.data import text as textlib

    d = doc("\n".join([S + " [2]Extra words here.", "x y", S, S, S, S + "  More  (text)!"]))
    assert c4().filter(d) is True
    carried = textlib.words_of(d)  # the words c4 attached to the rewritten document
    assert d.analysis is not None and d.analysis.text == d.text
    assert carried == textlib.words(d.text)  # equal to tokenizing the new text afresh
