"""``deepdive convert hf_gpt2``: a HF folder becomes a run directory that loads like any run."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from framework.cli import app as cli
from tests import gcs_emulator
from tests.models.hf_reference import hf_logits


def _convert(hf_dir, ranks, output, *extra):
    return cli.main(
        [
            "convert",
            "hf_gpt2",
            "--from",
            str(hf_dir),
            "--tokenizer",
            str(ranks),
            "--output",
            str(output),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def converted(hf_gpt2, byte_ranks, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "gpt2"
    assert _convert(hf_gpt2[0], byte_ranks, output) == 0
    return output


def test_convert_writes_a_run_directory_that_reproduces_transformers(converted, hf_gpt2):
    from framework.train.checkpoint import load_for_inference

    body = json.loads((converted / "model.json").read_text())
    assert body["plugin"] == "gpt2"
    assert body["config"]["num_layers"] == 3 and body["config"]["vocab_size"] == 300
    assert (converted / "COMPLETED").is_file() and (converted / "tokenizer").is_dir()
    model, tokenizer, config, step = load_for_inference(converted)
    assert step == 0 and tokenizer.vocab_size == 257
    tokens = np.asarray([tokenizer.encode("Hello, world! The quick brown fox.")], np.int32)
    ours, _ = model(jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(ours), hf_logits(hf_gpt2[1], tokens), atol=1e-4, rtol=0)


def test_sample_json_logprobs_match_transformers(converted, hf_gpt2, capsys):
    """Greedy ``deepdive sample --json`` on the converted run: tokens are transformers' argmax and
    log-probabilities its log-softmax, position by position."""
    import torch

    if not cli.command_available("sample"):
        pytest.skip("deepdive sample is not built")
    prompt = "Once upon a time"
    rc = cli.main(
        [
            "sample",
            f"--gin.MODEL_DIR={json.dumps(str(converted))}",
            "--prompt",
            prompt,
            "--max_new_tokens",
            "6",
            "--json",
            "-",
            "--gin.sample.sampler=@samplers.greedy()",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    sample = json.loads(out)["samples"][0]
    ids = list(prompt.encode())  # byte tokenizer: ids are the bytes
    reference = hf_gpt2[1]
    for token, logprob in zip(sample["tokens"], sample["logprobs"], strict=True):
        with torch.no_grad():
            logits = reference(torch.tensor([ids])).logits[0, -1]
        logp = torch.log_softmax(logits.double(), -1)
        assert token == int(torch.argmax(logits))
        assert logprob == pytest.approx(float(logp[token]), abs=1e-4)
        ids.append(token)


def test_convert_refuses_bad_input(converted, hf_gpt2, byte_ranks, tmp_path, capsys):
    assert _convert(hf_gpt2[0], byte_ranks, converted) == 2  # already holds checkpoints
    assert "--overwrite" in capsys.readouterr().err
    assert _convert(tmp_path / "missing", byte_ranks, tmp_path / "out") == 2
    assert "no such directory" in capsys.readouterr().err
    rc = cli.main(
        [
            "convert",
            "hf_llama",
            "--from",
            str(hf_gpt2[0]),
            "--tokenizer",
            str(byte_ranks),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2 and "not a llama" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_convert_overwrite_replaces_checkpoints(hf_gpt2, byte_ranks, tmp_path):
    output = tmp_path / "run"
    (output / "checkpoints" / "7").mkdir(parents=True)  # a stale later step would win on load
    assert _convert(hf_gpt2[0], byte_ranks, output, "--overwrite", "--dtype", "bfloat16") == 0
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["0"]
    assert json.loads((output / "model.json").read_text())["config"]["compute_dtype"] == "bfloat16"


def test_sample_json_reports_the_length_asked_past_the_context(converted, capsys):
    """One prompt continues past the 64-token context: the JSON says 100 were asked (and how many
    one pass could take), not the fitted value alone."""
    prompt = "Once upon a time"  # 16 byte tokens: one pass fits 64 - 16 = 48 new tokens
    rc = cli.main(["sample", f"--gin.MODEL_DIR={json.dumps(str(converted))}", "--prompt", prompt,
                   "--max_new_tokens", "100", "--json", "-",
                   "--gin.sample.sampler=@samplers.greedy()", "--gin.sample.stop_at_eos=False"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    document = json.loads(out)
    assert document["max_new_tokens"] == 100
    assert document["max_new_tokens_per_pass"] == 48
    assert len(document["samples"][0]["tokens"]) == 100


gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket


def test_convert_and_eval_on_a_bucket_run_directory(
    hf_gpt2, byte_ranks, gcs_bucket, tmp_path, capsys
):
    """``convert --output`` and ``eval --json`` with gs:// paths (fake-gcs-server):
    the bucket run evaluates to the same loss as the same conversion on local disk."""
    from etils import epath

    local, bucket = tmp_path / "gpt2", f"{gcs_bucket}/runs/gpt2"
    assert _convert(hf_gpt2[0], byte_ranks, local) == 0
    assert _convert(hf_gpt2[0], byte_ranks, bucket) == 0
    assert epath.Path(bucket, "COMPLETED").exists()
    text = tmp_path / "text.txt"
    text.write_text("Hello, world! The quick brown fox jumps over the lazy dog. " * 20)
    results = {}
    for name, run in (("local", local), ("bucket", bucket)):
        report = f"{gcs_bucket}/reports/{name}.json"
        argv = ["eval", f"--gin.MODEL_DIR='{run}'", "--text", str(text), "--json", report,
                "--gin.SEQ_LEN=32"]  # fmt: skip
        assert cli.main(argv) == 0
        results[name] = json.loads(epath.Path(report).read_text())["val_loss"]
    assert results["bucket"] == results["local"]
    capsys.readouterr()
    assert _convert(hf_gpt2[0], byte_ranks, bucket) == 2  # holds checkpoints: --overwrite
    assert "--overwrite" in capsys.readouterr().err
