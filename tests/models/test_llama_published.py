"""``deepdive convert hf_llama`` on folders laid out as Hugging Face publishes Llama 3.x:
sharded safetensors with an index, grouped-query attention, ``rope_type: "llama3"`` scaling,
tied or untied head, the tokenizer as ``tokenizer.json``. The converted run must reproduce
transformers' fp32 logits (1e-4) past ``original_max_position_embeddings``, where the scaled
frequencies matter, and ``deepdive sample`` transformers' greedy tokens and log-probabilities."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from framework.cli import app as cli
from framework.models import hf_import, layers
from tests.helpers import corpus
from tests.models.hf_reference import (
    LLAMA3_SPECIALS,
    hf_logits,
    random_llama,
    save_hf_tokenizer,
    train_byte_level_bpe,
)

ATOL = 1e-4
LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def _as_published(folder) -> None:
    """Rewrite config.json the way Meta's Llama 3.1 folders spell RoPE (``rope_theta`` at the
    top, ``rope_scaling`` beside it), instead of transformers 5's ``rope_parameters``."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    rope = dict(config.pop("rope_parameters"))
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = rope
    path.write_text(json.dumps(config, indent=2))


def _save_llama3(transformers, torch, folder, *, tie: bool, published: bool, seed: int, **config):
    """A random 2-layer Llama 3-style model (4 query / 2 kv heads), saved in ~50 KB shards."""
    model = random_llama(torch, transformers, seed, rope_theta=500000.0,
                         rope_scaling=dict(LLAMA3_SCALING), tie_word_embeddings=tie,
                         **config)  # fmt: skip
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="50KB")
    if published:
        _as_published(folder)
    return model


def _convert(hf_dir, ranks, output) -> int:
    """``deepdive convert hf_llama``; ``ranks=None``: the folder's own tokenizer."""
    tokenizer = [] if ranks is None else ["--tokenizer", str(ranks)]
    argv = ["convert", "hf_llama", "--from", str(hf_dir), *tokenizer, "--output", str(output)]
    return cli.main(argv)


@pytest.mark.parametrize(
    ("tie", "published"),
    [(False, True), (True, False)],
    ids=["untied-published-config", "tied-transformers5-config"],
)
def test_sharded_llama3_checkpoint_converts_to_transformers_logits(
    torch_transformers, byte_ranks, tmp_path, tie, published
):
    from framework.train.checkpoint import load_for_inference

    torch, transformers = torch_transformers
    hf_dir = tmp_path / "hf"
    reference = _save_llama3(transformers, torch, hf_dir, tie=tie, published=published, seed=7)
    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    assert (
        len(set(index["weight_map"].values())) > 1 and not (hf_dir / "model.safetensors").exists()
    )
    if not tie:
        assert "lm_head.weight" in index["weight_map"]

    output = tmp_path / "run"
    assert _convert(hf_dir, byte_ranks, output) == 0
    fields = json.loads((output / "model.json").read_text())["config"]
    assert fields["rope_scaling"] == "llama3" and fields["rope_theta"] == 500000.0
    assert (fields["rope_scaling_factor"], fields["rope_low_freq_factor"]) == (8.0, 1.0)
    assert (fields["rope_high_freq_factor"], fields["rope_original_max_seq_len"]) == (4.0, 32)
    assert (fields["num_kv_heads"], fields["tie_embeddings"]) == (2, tie)

    model, _, config, step = load_for_inference(output)
    assert step == 0 and config.rope_frequency_scaling is not None
    assert (model.lm_head is None) == tie
    tokens = np.random.default_rng(8).integers(0, 300, (2, 100)).astype(np.int32)  # > 32
    ours, _ = model(jnp.asarray(tokens))
    ref = hf_logits(reference, tokens)
    diff = float(np.max(np.abs(np.asarray(ours) - ref)))
    print(f"max |logit diff| vs transformers ({'tied' if tie else 'untied'}): {diff:.3e}")
    np.testing.assert_allclose(np.asarray(ours), ref, atol=ATOL, rtol=0)


def test_llama3_scaling_is_needed_for_parity(torch_transformers, tmp_path):
    """Guard on the test itself: loaded as plain RoPE, the same weights give other logits, so
    the parity above does exercise the scaled frequencies."""
    torch, transformers = torch_transformers
    reference = _save_llama3(transformers, torch, tmp_path, tie=False, published=True, seed=9)
    _, _, plain = hf_import.load(tmp_path, rope_scaling=None)
    tokens = np.random.default_rng(10).integers(0, 300, (1, 100)).astype(np.int32)
    diff = np.abs(np.asarray(plain(jnp.asarray(tokens))[0]) - hf_logits(reference, tokens))
    assert diff.max() > 10 * ATOL  # measured ~5e-3 (random init keeps logits small)


def test_llama3_inv_freq_matches_transformers(torch_transformers):
    torch, transformers = torch_transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for head_dim, original in ((16, 32), (128, 8192)):
        config = transformers.LlamaConfig(
            hidden_size=4 * head_dim,
            num_attention_heads=4,
            max_position_embeddings=4 * original,
            rope_theta=500000.0,
            rope_scaling=dict(LLAMA3_SCALING, original_max_position_embeddings=original),
        )
        expected, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
        scaling = layers.Llama3RopeScaling(8.0, 1.0, 4.0, original)
        ours = np.asarray(layers.rope_inv_freq(head_dim, 500000.0, scaling))
        plain = np.asarray(layers.rope_inv_freq(head_dim, 500000.0))
        assert attention_factor == 1.0
        np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-6, atol=0)
        assert ours[0] == plain[0] and ours[-1] == pytest.approx(plain[-1] / 8, rel=1e-6)


def test_rope_config_fields_round_trip_and_plain_rope_is_unchanged(tmp_path):
    from framework.core import registry
    from framework.train import checkpoint

    llama = registry.MODELS.get("llama")
    config = llama(vocab_size=64, num_layers=1, num_heads=2, d_model=16, num_kv_heads=1,
                   rope_scaling="llama3", rope_scaling_factor=4.0, rope_original_max_seq_len=16)  # fmt: skip
    checkpoint.write_model_json(tmp_path, "llama", config)
    assert checkpoint.read_model_config(tmp_path) == ("llama", config)
    assert config.rope_frequency_scaling == layers.Llama3RopeScaling(4.0, 1.0, 4.0, 16)
    assert llama().rope_frequency_scaling is None  # default: plain RoPE, no scaling applied


@pytest.mark.parametrize(
    ("rope", "message"),
    [
        ({"rope_type": "yarn", "factor": 4.0}, "rope_type 'yarn' is not supported"),
        ({"type": "linear", "factor": 2.0}, "rope_type 'linear' is not supported"),
        ({"rope_type": "llama3", "factor": 8.0}, "llama3 rope scaling lacks low_freq_factor"),
    ],
)
def test_unsupported_rope_scaling_is_refused(hf_llama_gqa, tmp_path, rope, message):
    import shutil

    from framework.core.errors import InputError

    folder = tmp_path / "hf"
    shutil.copytree(hf_llama_gqa[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_scaling"] = rope
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=message) as error:
        hf_import.load(folder)
    assert "\n" not in str(error.value)


def test_convert_cli_refuses_unknown_rope_type(hf_llama_gqa, byte_ranks, tmp_path, capsys):
    import shutil

    folder = tmp_path / "hf"
    shutil.copytree(hf_llama_gqa[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0}
    (folder / "config.json").write_text(json.dumps(config))
    assert _convert(folder, byte_ranks, tmp_path / "out") == 2
    assert "rope_type 'dynamic' is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists()


# -- the folder's own tokenizer --------------------------------------------------------------------


@pytest.fixture(scope="module")
def published_llama3(torch_transformers, tmp_path_factory):
    """(folder, torch model, transformers tokenizer): a Llama 3-style checkpoint folder as Hugging
    Face publishes it, tokenizer.json included (byte-level BPE with Llama 3's split regex and
    specials after 1000 byte-level tokens, trained on Shakespeare), vocab padded to 1024."""
    torch, transformers = torch_transformers
    text = corpus("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    tok = train_byte_level_bpe([text], 1000, LLAMA3_SPECIALS, "llama3")
    folder = tmp_path_factory.mktemp("hf_llama3_tok")
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    model = _save_llama3(transformers, torch, folder, tie=False, published=True, seed=11,
                         vocab_size=1024, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos)  # fmt: skip
    fast = save_hf_tokenizer(tok, folder, "<|begin_of_text|>", "<|end_of_text|>")
    return folder, model, fast


def test_published_folder_converts_with_its_own_tokenizer_and_samples_like_transformers(
    published_llama3, tmp_path, capsys
):
    """No --tokenizer: convert reads tokenizer.json; greedy ``deepdive sample --json`` on a prompt
    that spells the BOS gives transformers' ``generate`` tokens, and its log-probabilities are the
    log-softmax of transformers' logits at each step (fp32, 1e-4)."""
    import torch

    if not cli.command_available("sample"):
        pytest.skip("deepdive sample is not built")
    hf_dir, reference, fast = published_llama3
    output = tmp_path / "run"
    assert _convert(hf_dir, None, output) == 0
    assert "tokenizer.json" in capsys.readouterr().err
    meta = json.loads((output / "tokenizer" / "tokenizer.json").read_text())
    assert (meta["kind"], meta["eos_token"]) == ("hf_bpe", "<|end_of_text|>")

    text = "ROMEO: But soft, what light through yonder window breaks?"
    rc = cli.main(["sample", f"--gin.MODEL_DIR={json.dumps(str(output))}", "--prompt",
                   "<|begin_of_text|>" + text, "--max_new_tokens", "8", "--json", "-",
                   "--gin.sample.sampler=@samplers.greedy()"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    sample = json.loads(out)["samples"][0]
    prompt = fast(text).input_ids  # transformers puts <|begin_of_text|> first
    assert prompt[0] == fast.bos_token_id and sample["prompt_tokens"] == prompt

    with torch.no_grad():
        generated = reference.generate(
            torch.tensor([prompt]),
            max_new_tokens=8,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    tokens = generated.sequences[0, len(prompt) :].tolist()
    logprobs = [
        float(torch.log_softmax(step[0].double(), -1)[token])
        for step, token in zip(generated.logits, tokens, strict=True)
    ]
    print(f"greedy tokens {tokens}; deepdive log-probabilities {sample['logprobs']}")
    assert sample["tokens"] == tokens
    np.testing.assert_allclose(sample["logprobs"], logprobs, atol=ATOL, rtol=0)


def test_convert_without_tokenizer_files_names_the_folder(hf_llama_gqa, tmp_path, capsys):
    import shutil

    folder = tmp_path / "hf"
    shutil.copytree(hf_llama_gqa[0], folder)
    assert _convert(folder, None, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1 and f"{folder}: no tokenizer found: looked for tokenizer.json" in lines[0]
    )
    assert "--tokenizer" in lines[0] and not (tmp_path / "out").exists()
