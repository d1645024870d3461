"""Model-only run directories: write_inference_run -> load_for_inference gives the same model."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.errors import InputError
from framework.models import layers
from framework.train import checkpoint
from tests.train.tiny_model import TinyLM


def test_inference_run_round_trip(tmp_path):
    cfg = TinyLM(d_model=32, num_heads=4)
    model = layers.build_unsharded(cfg, nnx.Rngs(7))
    checkpoint.write_inference_run(tmp_path, "tiny_test_lm", cfg, model, None)
    assert json.loads((tmp_path / "model.json").read_text()) == {
        "plugin": "tiny_test_lm",
        "config": {"vocab_size": 64, "max_seq_len": 32, "num_layers": 2, "num_heads": 4,
                   "d_model": 32},
    }  # fmt: skip
    assert (tmp_path / "COMPLETED").exists()
    loaded, tokenizer, cfg2, step = checkpoint.load_for_inference(tmp_path)
    assert (cfg2, step, tokenizer) == (cfg, 0, None)
    tokens = jnp.arange(10, dtype=jnp.int32).reshape(1, 10)
    np.testing.assert_array_equal(model(tokens)[0], loaded(tokens)[0])
    with pytest.raises(InputError, match="no checkpoint for step 5; available: \\[0\\]"):
        checkpoint.load_for_inference(tmp_path, step=5)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(InputError, match="model.json: not found"):
        checkpoint.load_for_inference(tmp_path)
