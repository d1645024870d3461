"""Model options: remat (same gradients), dropout (train vs eval), config checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.errors import ConfigError
from framework.core.registry import MODELS

SMALL = {
    "gpt2": dict(vocab_size=50, max_seq_len=16, num_layers=2, num_heads=2, d_model=16),
    "llama": dict(
        vocab_size=50,
        max_seq_len=16,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        d_model=16,
        mlp_dim=24,
    ),
}
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 8)), jnp.int32)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize(
    "policy", [True, "full", "dots_saveable", "dots_with_no_batch_dims_saveable"]
)
def test_remat_gives_the_same_gradients(name, policy):
    """Every policy recomputes what it does not keep: gradients equal those without remat."""
    grads = []
    for remat in ("none", policy):
        model = MODELS.get(name)(**SMALL[name], remat=remat).build(nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(p, graphdef=graphdef):
            return jnp.mean(nnx.merge(graphdef, p)(TOKENS)[0] ** 2)

        grads.append(jax.jit(jax.grad(loss))(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_gpt2_dropout_is_active_in_train_mode_only():
    model = MODELS.get("gpt2")(**SMALL["gpt2"], dropout=0.5).build(nnx.Rngs(0))
    assert not np.array_equal(model(TOKENS)[0], model(TOKENS)[0])
    model.eval()
    np.testing.assert_array_equal(model(TOKENS)[0], model(TOKENS)[0])
    plain = MODELS.get("gpt2")(**SMALL["gpt2"]).build(nnx.Rngs(0))
    np.testing.assert_allclose(model(TOKENS)[0], plain(TOKENS)[0], atol=1e-6)  # same init


@pytest.mark.parametrize(
    "name,bad,message",
    [
        ("gpt2", dict(d_model=30, num_heads=4), "not divisible"),
        ("gpt2", dict(num_layers=0), "num_layers must be positive"),
        ("gpt2", dict(compute_dtype="float64"), "compute_dtype"),
        ("llama", dict(param_dtype="float16"), "param_dtype"),
        ("gpt2", dict(dropout=1.0), "dropout"),
        ("llama", dict(num_heads=4, num_kv_heads=3, d_model=16), "not a multiple"),
        ("llama", dict(num_heads=8, d_model=8), "even for RoPE"),
    ],
)
def test_bad_hyper_parameters_raise_config_errors(name, bad, message):
    with pytest.raises(ConfigError, match=message):
        MODELS.get(name)(**(SMALL[name] | bad))


def test_dropout_masks_differ_between_layers():
    from framework.models import layers

    rngs = nnx.Rngs(3)
    first = nnx.Dropout(0.5, rngs=layers.dropout_rngs(rngs))
    rngs.params()  # a parameter is created in between, as in a model
    second = nnx.Dropout(0.5, rngs=layers.dropout_rngs(rngs))
    x = jnp.ones((64,))
    assert not np.array_equal(first(x), second(x))


def test_unknown_remat_policy_names_the_choices():
    with pytest.raises(ConfigError, match="dots_saveable"):
        MODELS.get("gpt2")(**SMALL["gpt2"], remat="dots")
