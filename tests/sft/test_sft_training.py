"""`deepdive train` with an SFT run file: starts from another run's weights, learns the
assistant's tokens, refuses a tokenizer without the template's tokens at validate time, and a
killed run resumes bit-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from framework.data import skills
from tests.helpers import REPO_ROOT
from tests.train.helpers import losses


@pytest.fixture(scope="module")
def conversations(tmp_path_factory):
    from plugins.skills.sort_numbers import SortNumbers

    path = tmp_path_factory.mktemp("skill") / "train.jsonl"
    rows = skills.as_training(skills.draw(SortNumbers(), 400, seed=0))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _env():
    return dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))


def _command(model_dir, init_from, conversations, tokenizer, *extra):
    binds = [f'MODEL_DIR="{model_dir}"', f'INIT_FROM="{init_from}"',
             f'CONVERSATIONS="{conversations}"', f'TOKENIZER="{tokenizer}"', "SEQ_LEN=95",
             "BATCH_SIZE=8", "LEARNING_RATE=3e-3", "WARMUP_STEPS=2", "EVAL_EVERY=0",
             "train.log_every=1", "train.progress=False", *extra]  # fmt: skip
    return [sys.executable, "-m", "framework", "train", "--gin_file", "experiments/sft/sft.gin",
            *[f"--gin.{b}" for b in binds]]  # fmt: skip


def _run(*args, **kwargs):
    return subprocess.run(_command(*args), cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600, **kwargs)  # fmt: skip


def _first_batch_loss(run, conversations, tokenizer):
    """The loss of the base run's weights on the SFT run's first batch, computed here."""
    import jax.numpy as jnp
    from flax import nnx

    from framework.train import checkpoint, step
    from plugins.data.conversations import Conversations

    model, _, _, _ = checkpoint.load_for_inference(run)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    data = Conversations(str(conversations), str(tokenizer), "chatml")
    batch = next(data.train_iterator(batch_size=8, seq_len=95, seed=0))
    return float(step.loss_fn(params, rest, graphdef, {k: jnp.asarray(v) for k, v in
                                                       batch.items()}, jnp.float32))  # fmt: skip


def test_sft_starts_from_the_base_weights_and_learns(tmp_path, base_run, conversations,
                                                     chat_tokenizer_dir):  # fmt: skip
    out = _run(tmp_path / "sft", base_run, conversations, chat_tokenizer_dir, "TRAIN_STEPS=40",
               "CHECKPOINT_EVERY=40")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"initialised from {base_run} (checkpoint 0)" in out.stdout
    rows = losses(tmp_path / "sft")
    expected = _first_batch_loss(base_run, conversations, chat_tokenizer_dir)
    np.testing.assert_allclose(rows[0][1], expected, rtol=1e-5)  # step 1 = the base weights
    assert rows[-1][1] < 0.6 * rows[0][1]
    assert json.loads((tmp_path / "sft/chat.json").read_text()) == {"template": "chatml"}
    saved = json.loads((tmp_path / "sft/tokenizer/tokenizer.json").read_text())
    assert {"<|im_start|>", "<|im_end|>"} <= set(saved["special_tokens"])
    model = json.loads((tmp_path / "sft/model.json").read_text())
    assert model["plugin"] == "gpt2" and model["config"]["vocab_size"] == 320


def test_a_tokenizer_without_the_template_tokens_fails_validation(tmp_path, base_run,
                                                                  conversations,
                                                                  plain_tokenizer_dir):  # fmt: skip
    out = _run(tmp_path / "sft", base_run, conversations, plain_tokenizer_dir, "TRAIN_STEPS=4")
    assert out.returncode == 2, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "lacks the special tokens <|im_start|>, <|im_end|>" in last
    assert "tokenizer add-special" in last
    assert not (tmp_path / "sft").exists()


@pytest.mark.slow
def test_sft_killed_resumes_bit_identically(tmp_path, base_run, conversations,
                                            chat_tokenizer_dir):  # fmt: skip
    extra = ("TRAIN_STEPS=120", "CHECKPOINT_EVERY=10", "train.keep_checkpoints=20")
    reference = _run(tmp_path / "reference", base_run, conversations, chat_tokenizer_dir, *extra)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, base_run, conversations, chat_tokenizer_dir, *extra),
                            cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "20").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before step 20"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "COMPLETED").exists(), "killed too late: the run had finished"
    resumed = _run(killed, base_run, conversations, chat_tokenizer_dir, *extra)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint" in resumed.stdout
    assert "initialised from" not in resumed.stdout  # its own checkpoint, not INIT_FROM's
    assert losses(killed) == losses(tmp_path / "reference")  # exact, every step
