"""Special tokens added to an existing vocabulary (chat templates need them), for every plugin.

References: tiktoken's own encoder with the same special tokens (BPE), the sentencepiece
library's ids for ordinary text (SentencePiece), UTF-8 (bytes).
"""

from __future__ import annotations

import copy

import pytest

from framework.core.errors import ConfigError
from framework.tokenize.files import load_tokenizer

CHAT = ["<|im_start|>", "<|im_end|>"]
TEXT = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nFour.<|im_end|>\n"


@pytest.fixture(params=["small_bpe", "small_spm", "byte_tok"])
def tokenizer(request):
    return copy.deepcopy(request.getfixturevalue(request.param))


def test_added_specials_are_atomic_new_ids_and_keep_the_old_ones(tokenizer, shakespeare, tmp_path):
    before_size = tokenizer.vocab_size
    before = tokenizer.encode_ordinary(shakespeare[:5000])
    ids = tokenizer.add_special_tokens(CHAT)
    assert sorted(ids.values()) == [before_size, before_size + 1]
    assert tokenizer.vocab_size == before_size + 2
    assert tokenizer.encode_ordinary(shakespeare[:5000]) == before  # nothing else moved
    encoded = tokenizer.encode(TEXT, allowed_special=set(CHAT))
    assert encoded.count(ids["<|im_start|>"]) == 2 and encoded.count(ids["<|im_end|>"]) == 2
    assert tokenizer.decode(encoded) == TEXT
    # never produced from ordinary text, and disallowed by default (tiktoken's semantics)
    assert not set(ids.values()) & set(tokenizer.encode(TEXT, disallowed_special=()))
    with pytest.raises(ValueError, match="disallowed"):
        tokenizer.encode(TEXT)
    # idempotent, and kept by save / load
    assert tokenizer.add_special_tokens(CHAT) == ids
    tokenizer.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.encode(TEXT, allowed_special=set(CHAT)) == encoded
    assert loaded.vocab_size == before_size + 2


def test_bpe_with_added_specials_encodes_as_tiktoken_does(small_bpe, shakespeare):
    import tiktoken

    tok = copy.deepcopy(small_bpe)
    tok.add_special_tokens(CHAT)
    reference = tiktoken.Encoding(
        name="reference", pat_str=tok.pattern, mergeable_ranks=tok.ranks,
        special_tokens=dict(tok.special_tokens),
    )  # fmt: skip
    text = TEXT + shakespeare[:3000] + TEXT
    assert tok.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")


def test_sentencepiece_added_specials_are_control_pieces_for_the_library(small_spm):
    import sentencepiece as spm

    tok = copy.deepcopy(small_spm)
    ids = tok.add_special_tokens(CHAT)
    sp = spm.SentencePieceProcessor()
    sp.load_from_serialized_proto(tok._model_proto())
    for name, sid in ids.items():
        assert sp.id_to_piece(sid) == name and sp.is_control(sid)
    assert sp.encode("plain text, no specials") == small_spm.processor.encode(
        "plain text, no specials"
    )


def test_bad_special_names_are_refused(small_bpe):
    tok = copy.deepcopy(small_bpe)
    with pytest.raises(ConfigError, match="repeat"):
        tok.add_special_tokens(["<|a|>", "<|a|>"])
    with pytest.raises(ConfigError, match="non-empty"):
        tok.add_special_tokens([""])
