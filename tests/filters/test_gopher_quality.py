"""gopher_quality: each rule with hand-counted spaCy tokens, at and around its threshold."""

import pytest

from plugins.filters.gopher_quality import GopherQualityFilter

OFF = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None,
           max_avg_word_length=None, max_symbol_word_ratio=None, max_bullet_lines_ratio=None,
           max_ellipsis_lines_ratio=None, max_non_alpha_words_ratio=None, min_stop_words=None)  # fmt: skip


def only(**kw):
    return GopherQualityFilter(**{**OFF, **kw})


@pytest.mark.parametrize(("n", "expected"), [(49, False), (50, True)])
def test_short_doc_counts_non_symbol_words(doc, n, expected):
    # n words + 30 punctuation tokens ("--" and "," are symbols, not words)
    text = " ".join(["word"] * n) + " -- ," * 15
    result = only(min_doc_words=50).filter(doc(text))
    assert result == (True if expected else (False, "gopher_short_doc"))


def test_long_doc(doc):
    assert only(max_doc_words=5).filter(doc("a b c d e")) is True
    assert only(max_doc_words=5).filter(doc("a b c d e f")) == (False, "gopher_long_doc")


def test_average_word_length_bounds(doc):
    f = only(min_avg_word_length=3, max_avg_word_length=10)
    assert f.filter(doc("abc abc abc")) is True  # mean 3
    assert f.filter(doc("abc abc ab")) == (False, "gopher_below_avg_threshold")  # 8/3
    assert f.filter(doc("abcdefghij abcdefghij")) is True  # mean 10
    assert f.filter(doc("abcdefghij abcdefghijk")) == (False, "gopher_above_avg_threshold")
    # symbol tokens are left out of the mean: "..." would pull it down
    assert f.filter(doc("abc ... abc")) is True


def test_hash_ratio_over_all_tokens(doc):
    f = only(max_symbol_word_ratio=0.1)
    text = " ".join(["word"] * 90 + ["#"] * 10)  # 10 / 100 tokens
    assert f.filter(doc(text)) is True
    text = " ".join(["word"] * 89 + ["#"] * 11)  # 11 / 100
    assert f.filter(doc(text)) == (False, "gopher_too_many_hashes")


def test_ellipsis_ratio_counts_three_dots_and_the_ellipsis_char(doc):
    f = only(max_symbol_word_ratio=0.1)
    # "......" counts as two "..."; "…" counts once. Tokens: 17 words + "......" + "…" + "..."
    text = " ".join(["word"] * 17) + " ...... … ..."
    ex = f.explain(doc(text))
    ell = next(c for c in ex["checks"] if c["name"] == "gopher_too_many_ellipsis")
    n_tokens = ex["info"]["tokens"]
    assert ell["value"] == 4 / n_tokens
    assert f.filter(doc(text)) == (
        (False, "gopher_too_many_ellipsis") if 4 / n_tokens > 0.1 else True
    )


def test_bullet_lines(doc):
    f = only(max_bullet_lines_ratio=0.9)
    nine = "\n".join(["- item"] * 8 + ["  • item"] + ["plain"])
    assert f.filter(doc(nine)) is True  # 9/10
    ten = "\n".join(["- item"] * 9 + ["  • item"])
    assert f.filter(doc(ten)) == (False, "gopher_too_many_bullets")


def test_end_ellipsis_lines(doc):
    f = only(max_ellipsis_lines_ratio=0.3)
    three = "\n".join(["more..."] * 2 + ["more… "] + ["done"] * 7)
    assert f.filter(doc(three)) is True  # 3/10
    four = "\n".join(["more..."] * 4 + ["done"] * 6)
    assert f.filter(doc(four)) == (False, "gopher_too_many_end_ellipsis")


def test_alpha_ratio_counts_punctuation_tokens(doc):
    f = only(max_non_alpha_words_ratio=0.8)
    # the recipe's verified example: 10 of 16 tokens have a letter (62.5 %)
    text = "Hello, world. It's 3.5% of U.S. GDP -- e.g. don't!"
    ex = f.explain(doc(text))
    assert ex["checks"][0]["value"] == 10 / 16
    assert f.filter(doc(text)) == (False, "gopher_below_alpha_threshold")
    assert f.filter(doc("one two three four 5")) is True  # 4/5 = 0.8 exactly


def test_stop_words_are_distinct_and_case_sensitive(doc):
    f = only(min_stop_words=2)
    assert f.filter(doc("the cat and the dog")) is True
    assert f.filter(doc("the the the cat")) == (False, "gopher_enough_stop_words")
    assert f.filter(doc("The cat And dog")) == (False, "gopher_enough_stop_words")


def test_defaults(doc):
    f = GopherQualityFilter()
    assert (f.min_doc_words, f.max_doc_words, f.min_avg_word_length, f.max_avg_word_length) == (
        50, 100000, 3, 10,
    )  # fmt: skip
    assert f.stop_words == {"the", "be", "to", "of", "and", "that", "have", "with"}
    good = ("The cat sat on the mat and looked at the birds with interest. " * 6).strip()
    assert f.filter(doc(good)) is True
    ex = f.explain(doc("short text"))
    assert ex["reason"] == "gopher_short_doc" and not ex["keep"]
    assert {c["name"] for c in ex["checks"]} >= {"gopher_short_doc", "gopher_enough_stop_words"}
