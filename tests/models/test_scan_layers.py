"""Scanned layers (one block, parameters stacked on a leading ``layers`` axis) compute what the
unrolled stack computes: the same logits, loss gradients and cached decoding, given the same
weights (the unrolled model's, stacked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.registry import MODELS
from framework.models.kv_cache import init_cache

SMALL = {
    "gpt2": dict(vocab_size=50, max_seq_len=16, num_layers=3, num_heads=2, d_model=16),
    "llama": dict(vocab_size=50, max_seq_len=16, num_layers=3, num_heads=2, num_kv_heads=1,
                  d_model=16, mlp_dim=24),
}  # fmt: skip
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 8)), jnp.int32)


def stacked_copy(name: str, **options):
    """(unrolled model, scanned model with the unrolled model's weights)."""
    unrolled = MODELS.get(name)(**SMALL[name], **options, scan_layers=False).build(nnx.Rngs(0))
    scanned = MODELS.get(name)(**SMALL[name], **options, scan_layers=True).build(nnx.Rngs(1))
    flat = dict(nnx.to_flat_state(nnx.state(unrolled, nnx.Param)))
    target = dict(nnx.to_flat_state(nnx.state(scanned, nnx.Param)))
    filled = {}
    for path, variable in target.items():
        if path[0] == "blocks":
            layers = [flat[(path[0], i, *path[1:])][...] for i in range(SMALL[name]["num_layers"])]
            filled[path] = variable.replace(jnp.stack(layers))
        else:
            filled[path] = variable.replace(flat[path][...])
    nnx.update(scanned, nnx.from_flat_state(filled))
    return unrolled, scanned


@pytest.fixture(params=["rolled", "unrolled"])
def scan_loop(request, monkeypatch):
    """Both ways the scan over stacked blocks is compiled: a rolled loop (accelerators) and fully
    unrolled (CPU targets, ``backend.layer_loop_unroll``)."""
    from framework.models import backend

    if request.param == "rolled":
        monkeypatch.setattr(backend, "layer_loop_unroll", lambda num_layers: 1)
    return request.param


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("remat", ["none", "full"])
def test_scan_gives_the_same_loss_and_gradients(name, remat, scan_loop):
    results = []
    for model in stacked_copy(name, remat=remat):
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(p, graphdef=graphdef):
            logits = nnx.merge(graphdef, p)(TOKENS)[0]
            return jnp.mean(jax.nn.log_softmax(logits)[..., 3])

        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        results.append((value, grads))
    (v0, g0), (v1, g1) = results
    np.testing.assert_allclose(v0, v1, rtol=1e-5, atol=1e-6)
    flat0 = dict(nnx.to_flat_state(g0))
    for path, grad in nnx.to_flat_state(g1):
        if path[0] == "blocks":
            ref = jnp.stack([flat0[(path[0], i, *path[1:])][...] for i in range(3)])
        else:
            ref = flat0[path][...]
        np.testing.assert_allclose(grad[...], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_scan_decodes_with_a_stacked_cache_like_the_unrolled_model(name):
    outs = []
    for model in stacked_copy(name):
        cache = init_cache(model.config, batch=2, max_len=12)
        logits, cache = model(TOKENS[:, :5], cache=cache)  # prefill 5
        step, cache = model(TOKENS[:, 5:6], cache=cache)  # one decode step
        outs.append((logits, step))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_scan_generates_the_same_tokens_through_the_compiled_decode_loop(name):
    from framework.sample.generate import Generator

    tokens = []
    for model in stacked_copy(name):
        generator = Generator(model, model.config, None, batch_size=2)  # greedy
        done = generator.generate([[1, 2, 3], [4, 5]], max_new_tokens=6, seed=0)
        tokens.append([c.tokens for c in done])
    assert tokens[0] == tokens[1]
