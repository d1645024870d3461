"""The train command an xpk or SkyPilot task runs, run here against a bucket MODEL_DIR on a real
GCS API server (fake-gcs-server): the rendered command, word for word, trains a few steps and
writes its run directory into the bucket."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import yaml
from etils import epath

from framework.cli import app as cli
from tests import gcs_emulator
from tests.helpers import REPO_ROOT

gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket

TINY_GIN = """\
include 'base/train.gin'
DATA = @data.synthetic()
data.synthetic.vocab_size = 64
train.model = @models.gpt2()
models.gpt2.vocab_size = 64
models.gpt2.max_seq_len = 16
models.gpt2.num_layers = 2
models.gpt2.num_heads = 2
models.gpt2.d_model = 16
SEQ_LEN = 16
BATCH_SIZE = 8
EVAL_EVERY = 0
CHECKPOINT_EVERY = 2
train.progress = False
sharding.MeshConfig.shape = (1, -1, 1)
"""

SWEEP = """\
name = "bucket"
gin_files = ["tiny.gin"]
run_id = "lr{{LEARNING_RATE}}"
metric = "loss"
output = "{bucket}/sweeps"

[bindings]
TRAIN_STEPS = 3

[grid]
LEARNING_RATE = [1e-3]

[resources]
accelerator = "tpu-v5litepod-8"

[launch.xpk]
cluster = "c"
project = "p"
zone = "us-west4-a"
"""


def _run_rendered(command: str, model_dir: str, cwd) -> subprocess.CompletedProcess:
    """The task's train command as the node's shell runs it (``deepdive`` = this checkout)."""
    train = command.split("&& ", 1)[-1]  # after the install step
    assert train.startswith("deepdive train ") or "/deepdive train " in train, train
    train = f"{shlex.quote(sys.executable)} -m framework train " + train.split(" train ", 1)[1]
    env = {**os.environ, "MODEL_DIR": model_dir, "PYTHONPATH": str(REPO_ROOT), "XLA_FLAGS": ""}
    return subprocess.run(["bash", "-c", train], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_rendered_xpk_and_skypilot_commands_train_into_the_bucket(tmp_path, gcs_bucket,
                                                                   monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.gin").write_text(TINY_GIN)
    (tmp_path / "sweep.toml").write_text(SWEEP.format(bucket=gcs_bucket))
    for backend in ("xpk", "skypilot"):
        assert cli.main(["sweep", "render", "sweep.toml", "--backend", backend,
                         "--no_preflight"]) == 0  # fmt: skip
    run_dir = tmp_path / "runs" / "bucket" / "lr0.001"
    words = shlex.split((run_dir / "xpk.sh").read_text().replace("\\\n", " "), comments=True)
    env = dict(w.split("=", 1) for w in words[words.index("--env") + 1 :: 2] if "=" in w)
    model_dir = env["MODEL_DIR"]
    assert model_dir == f"{gcs_bucket}/sweeps/bucket/lr0.001"
    result = _run_rendered(words[words.index("--command") + 1], model_dir, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert epath.Path(model_dir, "COMPLETED").exists()
    assert epath.Path(model_dir, "checkpoints").exists()

    task = yaml.safe_load((run_dir / "task.yaml").read_text())
    assert task["envs"]["MODEL_DIR"] == model_dir  # the same bucket directory, used directly
    run_line = task["run"].strip().splitlines()[-1].replace("$DEEPDIVE_RUN_GIN",
                                                            task["envs"]["DEEPDIVE_RUN_GIN"])  # fmt: skip
    result = _run_rendered(run_line, model_dir, tmp_path)  # a relaunch: already complete
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already trained to step 3" in result.stdout
