"""gopher_repetition: every rule at, just below and just above its threshold (strict '>')."""

import pytest

from plugins.filters.gopher_repetition import (
    GopherRepetitionFilter,
    duplicated_ngram_chars,
    top_ngram_chars,
)

OFF = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None,
           dup_para_char_frac=None, top_n_grams=(), dup_n_grams=())  # fmt: skip


def only(**kw):
    return GopherRepetitionFilter(**{**OFF, **kw})


def paragraphs(n_unique: int, repeats: int) -> str:
    unique = [f"unique paragraph number {chr(97 + i)}" for i in range(n_unique)]
    return "\n\n".join(unique + ["again"] * repeats)


def test_empty_text_is_dropped():
    f = GopherRepetitionFilter()
    assert f.filter(type("D", (), {"text": ""})()) == (False, "empty")


@pytest.mark.parametrize(("n_unique", "repeats", "expected"), [(6, 4, True), (5, 4, False)])
def test_dup_para_frac_boundary(doc, n_unique, repeats, expected):
    # 3 duplicates of 10 paragraphs = 0.3 exactly: kept; 3 of 9 = 0.33: dropped.
    f = only(dup_para_frac=0.3)
    result = f.filter(doc(paragraphs(n_unique, repeats)))
    assert result == (True if expected else (False, "dup_para_frac"))


def test_dup_para_char_frac_boundary(doc):
    a = "x" * 19  # duplicated paragraph: 19 chars
    for filler_len, expected in [(47, True), (46, False)]:
        text = "\n\n".join([a, a, "b" * filler_len, "c", "d"])
        f = only(dup_para_char_frac=0.2)
        assert f.explain(doc(text))["checks"][0]["value"] == 19 / len(text)
        # len = 19*2 + filler + 2 + 8 separators; 47 → 95 chars → 0.2 exactly
        assert (len(text) == 95) is expected
        assert f.filter(doc(text)) == (True if expected else (False, "dup_para_char_frac"))


def test_paragraphs_split_on_two_or_more_newlines_after_strip(doc):
    f = only(dup_para_frac=0.3)
    ex = f.explain(doc("\n\na\n\n\n\nb\n\nc\n\n"))
    assert ex["info"]["paragraphs"] == 3
    assert ex["checks"][0]["value"] == 0


def test_lines_split_on_newline_runs_without_strip(doc):
    f = only(dup_line_frac=0.3)
    ex = f.explain(doc("\na\n\n\nb\n"))
    # re.split("\n+", "\na\n\n\nb\n") == ["", "a", "b", ""] — the two empty strings are a duplicate
    assert ex["info"]["lines"] == 4
    assert ex["checks"][0]["value"] == 1 / 4


def test_dup_line_frac_and_char_frac(doc):
    text = "\n".join(["l1 aaaa", "l2 bbbb", "l3 cccc", "same", "same", "same", "same", "l4",
                      "l5", "l6"])  # fmt: skip
    assert only(dup_line_frac=0.3).filter(doc(text)) is True  # 3/10
    assert only(dup_line_frac=0.29).filter(doc(text)) == (False, "dup_line_frac")
    # duplicated chars: 3 * 4 = 12 over len(text)
    ex = only(dup_line_char_frac=0.2).explain(doc(text))
    assert ex["checks"][0]["value"] == 12 / len(text)
    assert only(dup_line_char_frac=12 / len(text)).filter(doc(text)) is True
    assert only(dup_line_char_frac=11.99 / len(text)).filter(doc(text)) == (
        False,
        "dup_line_char_frac",
    )


def test_top_ngram_boundary(doc):
    # "ab cd" (5 chars) twice = 10 chars; text of 50 chars → 0.2 exactly (kept), 49 → dropped.
    for filler, expected in [("qwertyuiopasdfghjklzxcvbnmqwertyuiopas", True),
                             ("qwertyuiopasdfghjklzxcvbnmqwertyuiopa", False)]:  # fmt: skip
        text = f"ab cd ab cd {filler}"
        assert len(text) == (50 if expected else 49)
        f = only(top_n_grams=((2, 0.2),))
        assert f.filter(doc(text)) == (True if expected else (False, "top_2_gram"))


def test_top_ngram_ties_go_to_the_first_seen():
    words = ["a", "b", "a", "b", "cccc", "dddd", "cccc", "dddd"]
    # ("a","b") and ("cccc","dddd") both occur twice; the first seen wins: len("a b") * 2.
    assert top_ngram_chars(words, 2) == 6
    assert top_ngram_chars(["x"], 2) is None


def test_top_ngram_skipped_when_too_few_words(doc):
    f = only(top_n_grams=((2, 0.0), (3, 0.0)))
    ex = f.explain(doc("word"))
    assert ex["checks"] == [] and ex["keep"]


def test_duplicated_ngrams_jump_and_concatenate():
    # 12 identical words, n=5: new at 0, repeat at 1 (+5, jump to 6), repeat at 6 (+5, jump to 11).
    assert duplicated_ngram_chars(["a"] * 12, 5) == 10
    assert duplicated_ngram_chars(list("abcdeabcde"), 5) == 5
    # keys are concatenated without spaces: ("ab","c") and ("a","bc") collide
    assert duplicated_ngram_chars(["ab", "c", "a", "bc"], 2) == 3


def test_duplicated_ngram_reason_and_order(doc):
    text = "a b c d e a b c d e"
    f = only(dup_n_grams=((5, 0.15), (6, 0.14)))
    ex = f.explain(doc(text))
    assert ex["checks"][0]["value"] == 5 / len(text)
    assert f.filter(doc(text)) == (False, "duplicated_5_n_grams")


def test_defaults_and_reason_order(doc):
    f = GopherRepetitionFilter()
    assert f.dup_para_frac == 0.3 and f.dup_line_char_frac == 0.2
    assert f.top_n_grams == ((2, 0.2), (3, 0.18), (4, 0.16))
    assert [n for n, _ in f.dup_n_grams] == [5, 6, 7, 8, 9, 10]
    text = "\n\n".join(["same para"] * 4)
    ex = f.explain(doc(text))
    assert ex["reason"] == "dup_para_frac"
    names = [c["name"] for c in ex["checks"]]
    assert names[:4] == ["dup_para_frac", "dup_para_char_frac", "dup_line_frac",
                         "dup_line_char_frac"]  # fmt: skip
    assert all(c["drops_if"] == ">" for c in ex["checks"])
