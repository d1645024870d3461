"""The tokenizer plugins' contract: files, loading, specials, decoding, bad input."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.core.errors import InputError
from framework.core.registry import TOKENIZERS
from framework.tokenize.files import load_tokenizer
from plugins.tokenizers import bpe_reference, rankfile
from plugins.tokenizers.bpe import BPETokenizer


def test_registered_and_follow_the_protocol(small_bpe, small_spm, byte_tok):
    assert {"bpe", "sentencepiece", "bytes"} <= set(TOKENIZERS.names())
    for tok in (small_bpe, small_spm, byte_tok):
        TOKENIZERS.check(tok.kind, tok)
        assert tok.decode(tok.encode("hi")) == "hi"


def test_bytes_ids_are_bytes_and_eot_is_256(byte_tok):
    assert byte_tok.encode("hé") == [104, 0xC3, 0xA9]
    assert byte_tok.eot_id == 256
    assert byte_tok.vocab_size == 257
    assert byte_tok.encode("a<|endoftext|>", allowed_special="all") == [97, 256]


def test_bpe_encoding_equals_textbook_encoder(small_bpe, shakespeare):
    """tiktoken's rank-of-concatenation engine and minbpe-style pair merging agree on our vocab."""
    text = shakespeare[200_000:230_000]
    assert small_bpe.encode_ordinary(text) == bpe_reference.encode_reference(
        text, small_bpe.merges, small_bpe.pattern
    )


def test_bpe_save_load_and_tiktoken_reads_the_file(small_bpe, tmp_path):
    import tiktoken.load

    small_bpe.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert meta["kind"] == "bpe" and meta["special_tokens"] == {"<|endoftext|>": 1024}
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.ranks == small_bpe.ranks and loaded.eot_id == 1024 and loaded.vocab_size == 1025
    ranks = tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tok" / "bpe.tiktoken"))
    assert ranks == small_bpe.ranks
    # A bare rank file loads too (GPT-4 pattern, <|endoftext|> after the last rank).
    bare = load_tokenizer(tmp_path / "tok" / "bpe.tiktoken")
    assert bare.encode("To be, or not") == small_bpe.encode("To be, or not")
    assert bare.eot_id == 1024


def test_special_token_semantics_follow_tiktoken(small_bpe, small_spm, byte_tok):
    text = "end<|endoftext|>start"
    for tok in (small_bpe, small_spm, byte_tok):
        with pytest.raises(ValueError, match="endoftext"):
            tok.encode(text)
        ids = tok.encode(text, allowed_special={"<|endoftext|>"})
        assert ids.count(tok.eot_id) == 1
        plain = tok.encode(text, disallowed_special=())
        assert tok.eot_id not in plain
        assert tok.decode(plain) == text


def test_decode_errors_choice(small_bpe, byte_tok):
    for tok in (small_bpe, byte_tok):
        ids = tok.encode("é")[:1] if len(tok.encode("é")) > 1 else [0xC3]
        assert tok.decode(ids) == "\ufffd"
        with pytest.raises(UnicodeDecodeError):
            tok.decode(ids, errors="strict")
        assert tok.decode_bytes(ids) == b"\xc3"
        with pytest.raises(ValueError):
            tok.decode([tok.vocab_size + 5])
        with pytest.raises(ValueError):
            tok.decode([-1])


def _write_ranks(path, ranks):
    path.write_bytes(rankfile.format_tiktoken(ranks))
    return path


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: r.pop(bytes([7])), "single bytes have no token"),
        (lambda r: r.update({b"zz": 300}), "without gaps"),
    ],
)
def test_loader_rejects_bad_rank_files(tmp_path, damage, message):
    ranks = {bytes([i]): i for i in range(256)}
    damage(ranks)
    with pytest.raises(InputError, match=message):
        load_tokenizer(_write_ranks(tmp_path / "bad.tiktoken", ranks))


def test_loader_rejects_malformed_lines_and_collisions(tmp_path):
    good = rankfile.format_tiktoken({bytes([i]): i for i in range(256)})
    (tmp_path / "a.tiktoken").write_bytes(good + b"!!notbase64 256\n")
    with pytest.raises(InputError, match="not base64"):
        load_tokenizer(tmp_path / "a.tiktoken")
    (tmp_path / "b.tiktoken").write_bytes(good + base64.b64encode(b"ab") + b" 12\n")
    with pytest.raises(InputError, match="rank 12 also used"):
        load_tokenizer(tmp_path / "b.tiktoken")
    ranks = {bytes([i]): i for i in range(256)}
    with pytest.raises(InputError, match="collides"):
        BPETokenizer.from_ranks(ranks, {"<|endoftext|>": 255}, "gpt4")
    with pytest.raises(InputError, match="does not compile"):
        BPETokenizer.from_ranks(ranks, {}, "(unclosed")


def test_load_tokenizer_errors_name_the_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "tokenizer.json").write_text('{"kind": "nope"}')
    with pytest.raises(InputError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path / "x")


def test_sentencepiece_save_load_and_literal_space_marker(small_spm, small_unigram, tmp_path):
    for tok in (small_spm, small_unigram):
        tok.save(tmp_path / tok.model_type)
        loaded = load_tokenizer(tmp_path / tok.model_type)
        text = "Hello  there \u2581 world\n\n"
        assert loaded.encode(text) == tok.encode(text)
        assert loaded.decode(loaded.encode(text)) == text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=200))
def test_round_trip_every_plugin(small_bpe, small_spm, small_unigram, byte_tok, text):
    for tok in (small_bpe, small_spm, small_unigram, byte_tok):
        assert tok.decode(tok.encode(text, disallowed_special=())) == text
        assert tok.decode_bytes(tok.encode_ordinary(text)) == text.encode("utf-8")


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=64))
def test_bpe_decode_bytes_covers_every_byte_sequence(small_bpe, data):
    ids = [small_bpe.ranks[bytes([b])] for b in data]
    assert small_bpe.decode_bytes(ids) == data
    assert (
        small_bpe.decode(ids, errors="surrogateescape").encode("utf-8", errors="surrogateescape")
        == data
    )
