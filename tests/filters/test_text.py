"""framework.data.text: spaCy word/sentence splitting, punctuation sets, duplicates (hand-checked facts)."""

from framework.data import text


def test_words_match_spacy_blank_english_verified_example():
    # The recipe's verified example: 16 spaCy tokens, 10 of them with a letter.
    words = text.words("Hello, world. It's 3.5% of U.S. GDP -- e.g. don't!")
    assert words == [
        "Hello", ",", "world", ".", "It", "'s", "3.5", "%", "of", "U.S.", "GDP", "--",
        "e.g.", "do", "n't", "!",
    ]  # fmt: skip
    assert sum(any(c.isalpha() for c in w) for w in words) == 10


def test_whitespace_tokens_are_dropped():
    assert text.words("a  b\n\n c\t d \n") == ["a", "b", "c", "d"]
    assert text.words("") == []


def test_punctuation_sets():
    assert len(text.TERMINAL_PUNCTUATION) == 159
    for ch in ".!?。！？।":
        assert ch in text.TERMINAL_PUNCTUATION
    for ch in "\"'”»,;:":
        assert ch not in text.TERMINAL_PUNCTUATION
    assert len(set(text.PUNCTUATION)) == 129
    assert "\t" not in text.PUNCTUATION and "\n" not in text.PUNCTUATION
    assert (
        "\x00" in text.PUNCTUATION and "\x9f" in text.PUNCTUATION and "\xa0" not in text.PUNCTUATION
    )
    assert text.is_symbol_word("--") and text.is_symbol_word("...") and text.is_symbol_word("।")
    assert not text.is_symbol_word("3.5") and not text.is_symbol_word("U.S.")


def test_find_duplicates_counts_repeats_only():
    assert text.find_duplicates(["a", "b", "a", "a"]) == (2, 2)
    assert text.find_duplicates(["abc", "abc", "x"]) == (1, 3)
    assert text.find_duplicates([]) == (0, 0)


def test_sentence_counts_follow_the_sentencizer_rule():
    assert text.count_sentences("One two three.") == 1
    assert text.count_sentences("One two. Three four! Five six? seven") == 4
    # Quotes and repeated marks after a terminator stay in the sentence.
    assert text.count_sentences('He said "yes." Then left.') == 2
    assert text.count_sentences("Wait?! Really.") == 2
    assert text.count_sentences("No terminator at all") == 1
    assert text.count_sentences("") == 1  # datatrove counts one (empty) piece


def test_line_reuse_equals_fresh_tokenization():
    doc = "First line here. Second one!\n  indented (line) ... with e.g. abbreviations.\r\nx\u2028y z."
    analysis = text.analyze(doc)
    for offset, line in text.split_lines_with_offsets(doc):
        stripped = line.strip()
        if not stripped:
            continue
        start = offset + len(line) - len(line.lstrip())
        assert analysis.words_between(start, start + len(stripped)) == text.words(stripped)
        assert analysis.sentence_count(start, start + len(stripped)) == text.count_sentences(
            stripped
        )


def test_split_lines_with_offsets_matches_splitlines():
    doc = "a\r\nb\rc\n\nd\x0be\u2029"
    pieces = text.split_lines_with_offsets(doc)
    assert [line for _, line in pieces] == doc.splitlines()
    for offset, line in pieces:
        assert doc[offset : offset + len(line)] == line


def test_sentence_parts_cover_the_text():
    doc = "One two. Three four!  Five"
    parts = text.sentence_parts(doc)
    assert "".join(parts) == doc
    assert parts == ["One two.", " Three four!", "  Five"]


def test_the_analysis_travels_with_the_document_not_the_process():
    """Two documents with the same text each get their own analysis; changing one's text drops
    its analysis (nothing keyed by text is shared between documents or filters)."""
    from framework.data.document import Document

    a, b = Document("a", "Same text here."), Document("b", "Same text here.")
    first = text.analysis_of(a)
    assert text.analysis_of(a) is first  # computed once per document text
    assert text.analysis_of(b) is not first and text.words_of(b) == first.words
    a.text = "Other words now."
    assert text.words_of(a) == ["Other", "words", "now", "."]
    assert text.analysis_of(a).text == "Other words now."
