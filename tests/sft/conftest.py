"""Fixtures for post-training tests: a byte-level BPE tokenizer with the chatml special tokens
added, and a tiny GPT-2 base run (model.json, tokenizer/, checkpoint 0) to fine-tune."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def chat_tokenizer_dir(byte_ranks, tmp_path_factory):
    from plugins.tokenizers.bpe import BPETokenizer

    tok = BPETokenizer.from_tiktoken_file(byte_ranks)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return tok.save(tmp_path_factory.mktemp("chat_tok") / "tokenizer")


@pytest.fixture(scope="session")
def plain_tokenizer_dir(byte_ranks, tmp_path_factory):
    from plugins.tokenizers.bpe import BPETokenizer

    return BPETokenizer.from_tiktoken_file(byte_ranks).save(
        tmp_path_factory.mktemp("plain_tok") / "tokenizer"
    )


@pytest.fixture(scope="session")
def base_run(plain_tokenizer_dir, tmp_path_factory):
    """A randomly initialised tiny GPT-2 saved as a run directory (vocab 320 > 259 ids)."""
    from flax import nnx

    from framework.models import layers
    from framework.train import checkpoint
    from plugins.models.gpt2 import GPT2Config

    config = GPT2Config(vocab_size=320, max_seq_len=128, num_layers=2, num_heads=2, d_model=32)
    model = layers.build_unsharded(config, nnx.Rngs(0))
    run = tmp_path_factory.mktemp("base") / "run"
    checkpoint.write_inference_run(run, "gpt2", config, model, plain_tokenizer_dir)
    return run
