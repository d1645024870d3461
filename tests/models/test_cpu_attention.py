"""The CPU causal attention kernel (framework/kernels/cpu/attention.py) vs a float64 numpy softmax
attention and jax's gradients of XLA's attention; and where the models use it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.registry import MODELS
from framework.kernels.cpu import attention as cpu_attention
from framework.kernels.cpu import build
from framework.models import backend

ONE = jax.devices()[:1]  # a program compiled for one CPU device

pytestmark = pytest.mark.skipif(
    build.unavailable_reason() is not None,
    reason=f"CPU kernels unavailable: {build.unavailable_reason()}",
)

# (B, T, H, K, D): T not a multiple of the 64-row block, grouped-query heads, one row, GPT-2's
# head size.
CASES = [(2, 70, 4, 4, 16), (1, 130, 6, 2, 8), (2, 256, 6, 6, 64), (3, 1, 2, 1, 4)]


def np_causal_attention(q, k, v, scale):
    """Definition: softmax over allowed keys s <= t of scale·q·k, weights times v (float64)."""
    b, t, h, d = q.shape
    group = h // k.shape[2]
    out = np.zeros((b, t, h, d))
    for head in range(h):
        kh, vh = k[:, :, head // group], v[:, :, head // group]  # [B, T, D]
        scores = scale * np.einsum("btd,bsd->bts", q[:, :, head], kh)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out[:, :, head] = np.einsum("bts,bsd->btd", weights, vh)
    return out


def _operands(case, seed=0):
    b, t, h, kv, d = case
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((b, t, h, d), (b, t, kv, d),
               (b, t, kv, d)))  # fmt: skip
    return q, k, v, 1.0 / np.sqrt(d)


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_float64_definition(case):
    q, k, v, scale = _operands(case)
    ours = jax.jit(lambda q, k, v: cpu_attention.causal_attention(q, k, v, scale))(q, k, v)
    ref = np_causal_attention(q.astype(np.float64), k.astype(np.float64), v, scale)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_xla_attention(case):
    q, k, v, scale = _operands(case, seed=1)
    group = q.shape[2] // k.shape[2]
    probe = np.random.default_rng(2).standard_normal(q.shape).astype(np.float32)

    def reference(q, k, v):
        k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, scale=scale)

    def loss(fn):
        return jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * probe), (0, 1, 2)))

    ours = loss(lambda q, k, v: cpu_attention.causal_attention(q, k, v, scale))(q, k, v)
    ref = loss(reference)(q, k, v)
    for name, a, b in zip("qkv", ours, ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("plugin", ["gpt2", "llama"])
def test_models_use_it_on_one_device_and_agree_with_xla(plugin):
    kwargs = dict(vocab_size=97, max_seq_len=80, num_layers=2, num_heads=4, d_model=32)
    if plugin == "llama":
        kwargs["num_kv_heads"] = 2
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, 97, (2, 80)), jnp.int32)

    def loss_and_grads(impl):
        model = MODELS.get(plugin)(attention_impl=impl, **kwargs).build(nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(params):
            logits, _ = nnx.merge(graphdef, params)(tokens)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

        return backend.compiled_for(jax.value_and_grad(loss), ONE), params

    auto, params = loss_and_grads(None)
    assert cpu_attention.FORWARD in str(jax.make_jaxpr(auto)(params))
    xla, _ = loss_and_grads("xla")
    assert cpu_attention.FORWARD not in str(jax.make_jaxpr(xla)(params))
    (a_loss, a_grads), (x_loss, x_grads) = jax.jit(auto)(params), jax.jit(xla)(params)
    np.testing.assert_allclose(a_loss, x_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(a_grads), jax.tree.leaves(x_grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    "batch,heads,kv_heads,limit",
    [(3, 4, 4, 37), (2, 6, 2, 64), (4, 2, 1, 1), (1, 12, 12, 50), (1, 16, 16, 64)],
)  # the last two: batch 1, run inline and over the helper threads
def test_decode_step_matches_cached_attention(batch, heads, kv_heads, limit):
    from framework.models import layers

    rng = np.random.default_rng(4)
    slots, d = 64, 16
    q = jnp.asarray(rng.standard_normal((batch, 1, heads, d)), jnp.float32)
    kt = jnp.asarray(rng.standard_normal((batch * kv_heads, d, slots)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((batch * kv_heads, slots, d)), jnp.float32)
    valid = rng.random((batch, slots)) < 0.7  # left padding and unwritten slots
    valid[:, limit - 1] = True  # the new token's own slot
    valid[:, limit:] = False  # not written yet
    mask = jnp.asarray(valid)[:, None, None, :]
    ref = layers.cached_attention(q, kt, v, mask, 0.25)
    ours = jax.jit(lambda q, kt, v, m, n: cpu_attention.decode_attention(q, kt, v, m, n, 0.25))(
        q, kt, v, jnp.asarray(valid), jnp.int32(limit)
    )
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=2e-6, rtol=1e-5)


def test_non_finite_inputs_stay_non_finite():
    """The kernel is built without -ffast-math: a NaN or inf score reaches the output (the trainer
    stops on a non-finite loss), and the row's other outputs stay finite."""
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 70, 2, 8)), jnp.float32) for _ in range(3))
    bad_q = q.at[0, 40, 1, 3].set(jnp.nan)  # row 40 of head 1 only
    out = np.asarray(jax.jit(lambda q: cpu_attention.causal_attention(q, k, v, 0.5))(bad_q))
    assert np.isnan(out[0, 40, 1]).all()
    assert (
        np.isfinite(np.delete(out[0, :, 1], 40, axis=0)).all() and np.isfinite(out[0, :, 0]).all()
    )
    huge_k = k.at[0, 3, 0, :].set(jnp.inf)  # an infinite key: scores of inf or nan
    out = np.asarray(jax.jit(lambda k: cpu_attention.causal_attention(q, k, v, 0.5))(huge_k))
    assert not np.isfinite(out[0, 3:, 0]).all()
    grads = jax.jit(jax.grad(lambda q: cpu_attention.causal_attention(q, k, v, 0.5).sum()))(bad_q)
    assert np.isnan(np.asarray(grads)).any()
