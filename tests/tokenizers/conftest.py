"""Shared fixtures for the tokenizer tests: small trained tokenizers of every plugin."""

from __future__ import annotations

import pytest

from tests.helpers import corpus


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return corpus("text", "tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_bpe(shakespeare):
    from plugins.tokenizers.bpe import BPETokenizer

    return BPETokenizer().train([shakespeare[:200_000]], vocab_size=1024)


@pytest.fixture(scope="session")
def small_spm(shakespeare):
    from plugins.tokenizers.sentencepiece import SentencePieceTokenizer

    return SentencePieceTokenizer(model_type="bpe").train([shakespeare[:200_000]], vocab_size=800)


@pytest.fixture(scope="session")
def small_unigram(shakespeare):
    from plugins.tokenizers.sentencepiece import SentencePieceTokenizer

    return SentencePieceTokenizer(model_type="unigram").train(
        [shakespeare[:200_000]], vocab_size=800
    )


@pytest.fixture(scope="session")
def byte_tok():
    from plugins.tokenizers.bytes import ByteTokenizer

    return ByteTokenizer()
