"""Optimizer pieces against hand computations and references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from framework.models import layers
from framework.train import metrics
from framework.train import step as train_state
from tests.train.tiny_model import TinyLM


def test_warmup_then_cosine_to_min_ratio():
    s = train_state.learning_rate_schedule(1.0, train_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert float(s(0)) == 0.0
    assert math.isclose(float(s(5)), 0.5, rel_tol=1e-6)
    assert math.isclose(float(s(10)), 1.0, rel_tol=1e-6)
    # halfway through the decay: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    assert math.isclose(float(s(60)), 0.55, rel_tol=1e-5)
    assert math.isclose(float(s(110)), 0.1, rel_tol=1e-5)
    lin = train_state.learning_rate_schedule(1.0, 110, 10, schedule="linear", min_lr_ratio=0.0)
    assert math.isclose(float(lin(60)), 0.5, rel_tol=1e-5)


def test_weight_decay_mask_skips_norms_biases_embeddings():
    model = layers.build_unsharded(TinyLM(), nnx.Rngs(0))
    mask = dict(nnx.to_flat_state(train_state.decay_mask(nnx.state(model, nnx.Param))))
    value = {k: v.get_value() for k, v in mask.items()}
    assert value[("blocks", 0, "qkv", "kernel")] and value[("blocks", 1, "down", "kernel")]
    for path in [("wte", "embedding"), ("wpe", "embedding"), ("blocks", 0, "ln", "scale"),
                 ("blocks", 0, "qkv", "bias")]:  # fmt: skip
        assert not value[path], path


def test_gradient_accumulation_equals_one_big_batch():
    model = layers.build_unsharded(TinyLM(), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = train_state.make_optimizer(train_state.learning_rate_schedule(1e-2, 10, 0), params)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (8, 17)), jnp.int32)
    results = []
    for accum in (1, 4):
        state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
        step = jax.jit(train_state.make_train_step(graphdef, rest, tx, grad_accum_steps=accum))
        results.append(step(state, batch))
    (s1, m1), (s4, m4) = results
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-6)
    np.testing.assert_allclose(m1["grad_norm"], m4["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s4["params"]), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)  # Adam amplifies ~0 gradients


def test_bf16_compute_keeps_fp32_params_and_close_loss():
    model = layers.build_unsharded(TinyLM(), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = jnp.asarray(np.random.default_rng(1).integers(0, 64, (4, 17)), jnp.int32)
    l32 = train_state.loss_fn(params, rest, graphdef, batch, jnp.float32)
    l16 = train_state.loss_fn(params, rest, graphdef, batch, jnp.bfloat16)
    assert abs(float(l32) - float(l16)) < 2e-2
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    # the loss is the cross-entropy in nats: ~ln(64) for a near-uniform fresh model
    assert abs(float(l32) - math.log(64)) < 0.05


def test_palm_flops_match_the_reference_numbers():
    # shared/reference/training.md: HF GPT-2 124M (N = 123,653,376), T = 1024 -> 855.17 MFLOP/token
    assert round(layers.palm_flops_per_token(123_653_376, 12, 12, 64, 1024) / 1e6, 2) == 855.17
    # baby GPT 6/6/384, T = 256: N = 13,793,280 -> 89.84 MFLOP/token
    assert round(layers.palm_flops_per_token(13_793_280, 6, 6, 64, 256) / 1e6, 2) == 89.84
    assert metrics.peak_for_kind("NVIDIA H100 80GB HBM3") == 989e12
    assert metrics.peak_for_kind("TPU v5 lite") == 197e12
    assert metrics.peak_for_kind("NVIDIA H100 PCIe") == 756e12


def test_bits_per_byte():
    # 1 nat/token at 4 bytes/token = 1 / (4 ln 2) bits per byte
    assert math.isclose(metrics.bits_per_byte(1.0, 4.0), 1 / (4 * math.log(2)))
    assert metrics.bits_per_byte(1.0, None) is None
