"""Checkpoints written with blocks per layer (runs from before stacked layers were the default)
resume with stacked blocks and the other way round, and old model.json files still load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.core import config
from framework.train import checkpoint
from framework.train import loop as train
from tests.train.helpers import bindings, losses

LLAMA_TINY = ["train.model = @models.llama()", "models.llama.vocab_size = 64",
              "models.llama.max_seq_len = 16", "models.llama.num_layers = 3",
              "models.llama.num_heads = 4", "models.llama.num_kv_heads = 2",
              "models.llama.d_model = 32", "models.llama.mlp_dim = 48",
              "CHECKPOINT_EVERY = 2", "sharding.MeshConfig.shape = (1, 1, 1)",
              "sharding.MeshConfig.num_devices = 1"]  # fmt: skip


def _train(model_dir, steps: int, scan: bool) -> None:
    parsed = config.parse(["base/train.gin"], bindings(
        model_dir, *LLAMA_TINY, f"TRAIN_STEPS = {steps}", f"models.llama.scan_layers = {scan}"))  # fmt: skip
    train.train(parsed_config=parsed)


@pytest.mark.parametrize("first,then", [(False, True), (True, False)])
def test_resume_in_the_other_blocks_layout_continues_the_run(tmp_path, first, then):
    reference = tmp_path / "reference"
    _train(reference, 4, first)
    resumed = tmp_path / "resumed"
    _train(resumed, 2, first)
    layout = checkpoint.stored_blocks_layout(resumed, 2)
    assert layout == (checkpoint.STACKED if first else checkpoint.PER_LAYER)
    _train(resumed, 4, then)  # resumes from step 2, converted
    assert checkpoint.stored_blocks_layout(resumed, 4) == (
        checkpoint.STACKED if then else checkpoint.PER_LAYER
    )
    want, got = losses(reference), losses(resumed)
    assert [s for s, _ in got] == [1, 2, 3, 4] == [s for s, _ in want]
    # same weights and optimizer moments: the unrolled and the scanned program agree to rounding
    np.testing.assert_allclose([x for _, x in got], [x for _, x in want], rtol=0, atol=1e-5)


def test_model_json_from_before_the_dtype_policy_and_stacked_layers(tmp_path):
    """A run directory written before: ``dtype`` (the compute dtype) and no ``scan_layers``."""
    body = {"plugin": "gpt2", "config": {"vocab_size": 64, "max_seq_len": 16, "num_layers": 2,
                                         "num_heads": 2, "d_model": 16, "dtype": "bfloat16"}}  # fmt: skip
    (tmp_path / "model.json").write_text(json.dumps(body))
    _, model_config = checkpoint.read_model_config(tmp_path)
    assert model_config.compute_dtype == "bfloat16"
    assert model_config.param_dtype == "float32"
    assert model_config.scan_layers is False  # its checkpoints hold one entry per layer
