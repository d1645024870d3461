"""Configuration checks with numbers in the message, and the non-finite stop."""

import json
import re

import pytest

from framework.cli import app as cli
from framework.cli.commands import train as train_command
from framework.core import config
from framework.core.errors import ConfigError
from framework.train import loop as train
from tests.train.helpers import bindings


def _validate(tmp_path, *extra):
    config.parse(["base/train.gin"], bindings(tmp_path / "run", *extra))
    train_command.validate_config(None)


def test_sequence_longer_than_context(tmp_path):
    with pytest.raises(ConfigError, match="seq_len 64 is longer than the model's context .* 32"):
        _validate(tmp_path, "SEQ_LEN = 64")


def test_batch_not_divisible_by_data_axes(tmp_path):
    with pytest.raises(ConfigError, match="batch size 6 .* not divisible by the 4 ways"):
        _validate(tmp_path, "BATCH_SIZE = 6", "sharding.MeshConfig.shape = (2, 2, 2)",
                  "LOGICAL_AXIS_RULES = %sharding.FSDP_TENSOR")  # fmt: skip


def test_mesh_that_does_not_fit_the_devices(tmp_path):
    with pytest.raises(ConfigError, match="needs 16 devices but 8 are available"):
        _validate(tmp_path, "sharding.MeshConfig.shape = (4, 2, 2)")


def test_cli_dry_run_exit_code(tmp_path):
    argv = ["train", "--plugin_module", "tests.train.tiny_model", "--dry_run",
            *[f"--gin.{b.replace(' ', '')}" for b in bindings(tmp_path / "r", "SEQ_LEN=64")]]  # fmt: skip
    assert cli.main(argv) == 2


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model_dir = tmp_path / "run"
    parsed = config.parse(["base/train.gin"], bindings(
        model_dir, "LEARNING_RATE = 1e30", "TRAIN_STEPS = 6", "CHECKPOINT_EVERY = 1",
        "train.grad_clip = None", "sharding.MeshConfig.num_devices = 1",
        "sharding.MeshConfig.shape = (1, 1, 1)"))  # fmt: skip
    with pytest.raises(train.NonFiniteError, match="non-finite .* at step (\\d+)") as info:
        train.train(parsed_config=parsed)
    message = str(info.value)
    bad_step = int(re.search(r"at step (\d+)", message).group(1))
    steps = sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and f"newest checkpoint ({steps[-1]})" in message
    assert steps[-1] == bad_step - 1  # every finite step was saved, the bad one was not
    logged = [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r["loss"], float) for r in logged)  # only finite steps were logged
    assert not (model_dir / "COMPLETED").exists()
