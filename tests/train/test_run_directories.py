"""Run directories you can trust: in a bucket (a real GCS API server on 127.0.0.1), with a
damaged newest checkpoint, and with one writer at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from etils import epath

from framework.cli import app as cli
from framework.core import config, paths
from framework.core.errors import InputError
from framework.train import checkpoint
from framework.train import loop as train
from tests import gcs_emulator
from tests.helpers import REPO_ROOT
from tests.train.helpers import TINY

gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket

# a constant learning rate: runs of different lengths compare step for step
GPT2 = ["train.model = @models.gpt2()", "models.gpt2.vocab_size = 257",
        "models.gpt2.max_seq_len = 16", "models.gpt2.num_layers = 2", "models.gpt2.num_heads = 2",
        "models.gpt2.d_model = 16", "CHECKPOINT_EVERY = 2", "train.keep_checkpoints = 5",
        "sharding.MeshConfig.shape = (1, 1, 1)", "sharding.MeshConfig.num_devices = 1",
        "train.schedule = 'constant'"]  # fmt: skip


def _train(model_dir: str, steps: int) -> None:
    bindings = [f'MODEL_DIR = "{model_dir}"', *TINY, *GPT2, f"TRAIN_STEPS = {steps}"]
    train.train(parsed_config=config.parse(["base/train.gin"], bindings))


def _losses(model_dir: str) -> list[tuple[int, float]]:
    text = epath.Path(model_dir, "metrics.jsonl").read_text()
    return [(r["step"], r["loss"]) for r in map(json.loads, text.splitlines())]


def _damage_newest(model_dir) -> int:
    """Cut off half of the largest parameter file of the newest checkpoint (a partial upload)."""
    step = checkpoint.latest_step(model_dir)
    folder = epath.Path(model_dir, "checkpoints", str(step), "params")
    files = [p for p in paths.walk(folder) if not p.is_dir()]
    largest = max(files, key=lambda p: len(p.read_bytes()))
    data = largest.read_bytes()
    largest.write_bytes(data[: len(data) // 2])
    return step


def _sample(model_dir, *extra) -> int:
    return cli.main(["sample", f"--gin.MODEL_DIR='{model_dir}'", "--prompt", "ab",
                     "--max_new_tokens", "3", "--no_stream", *extra])  # fmt: skip


def test_training_resumes_past_a_damaged_checkpoint(tmp_path, capsys, byte_ranks):
    reference, run = str(tmp_path / "reference"), str(tmp_path / "run")
    _train(reference, 8)
    _train(run, 6)
    checkpoint.copy_tokenizer(byte_ranks, run)
    assert _damage_newest(run) == 6
    assert _sample(run) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "checkpoint 6 is damaged" in message and "steps that load: 4, 2" in message
    _train(run, 8)  # resumes from 4, the damaged step moved aside (renamed, not deleted)
    out = capsys.readouterr().out
    assert "checkpoint 6 is damaged" in out and "resuming from checkpoint 4" in out
    assert (tmp_path / "run" / "checkpoints" / "6.damaged").is_dir()
    assert _losses(run) == _losses(reference)


def test_a_checkpoint_of_another_model_is_not_called_damaged(tmp_path):
    run = str(tmp_path / "run")
    _train(run, 2)
    bindings = [f'MODEL_DIR = "{run}"', *TINY, *GPT2, "TRAIN_STEPS = 4", "models.gpt2.d_model = 32"]
    with pytest.raises(InputError, match="checkpoint 2 does not fit this model"):
        train.train(parsed_config=config.parse(["base/train.gin"], bindings))
    assert checkpoint.latest_step(run) == 2  # nothing moved aside


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run.mkdir()
        from framework.train import lease

        (run / lease.LEASE_FILE).write_text(json.dumps({
            "host": os.uname().nodename, "pid": holder.pid, "start": "2026-12-06T20:00:00+00:00",
            "start_unix": 0.0, "heartbeat": __import__("time").time(), "token": "other"}))  # fmt: skip
        with pytest.raises(InputError, match=f"in use by host .* pid {holder.pid}"):
            _train(str(run), 2)
    finally:
        holder.kill()
        holder.wait()
    _train(str(run), 2)  # the holder is gone: taken over at once
    assert checkpoint.latest_step(run) == 2


def test_a_bucket_run_trains_resumes_and_samples(tmp_path, gcs_bucket, capsys, byte_ranks):
    reference, run = str(tmp_path / "reference"), f"{gcs_bucket}/runs/tiny"
    _train(reference, 4)
    _train(run, 2)
    _train(run, 4)  # resumes from the bucket's checkpoint 2
    checkpoint.copy_tokenizer(byte_ranks, run)
    assert _losses(run) == _losses(reference)
    assert checkpoint.latest_step(run) == 4
    for name in ("model.json", "config.gin", "COMPLETED", "plots/metrics.png"):
        assert epath.Path(run, name).exists(), name
    assert not any(p.name.startswith("gs:") for p in REPO_ROOT.iterdir())
    assert _sample(run) == 0
    assert _damage_newest(run) == 4
    assert _sample(run) == 2
    assert "checkpoint 4 is damaged" in capsys.readouterr().err
    further = str(tmp_path / "further")
    _train(further, 6)
    _train(run, 6)  # from the bucket's checkpoint 2; step 4 moved aside in the bucket
    assert epath.Path(run, "checkpoints", "4.damaged").exists()
    assert _losses(run) == _losses(further)


def test_a_bucket_that_does_not_exist_fails_validation(gcs_bucket, capsys):
    missing = "gs://no-such-bucket-deepdive/run"
    argv = ["validate", "--gin_file", "base/train.gin", f"--gin.MODEL_DIR='{missing}'",
            *[f"--gin.{b.replace(' ', '')}" for b in [*TINY, *GPT2]]]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and missing in err[0] and "does not exist" in err[0]
    assert not epath.Path("gs://no-such-bucket-deepdive").exists()
