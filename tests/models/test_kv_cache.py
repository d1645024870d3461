"""KV-cache decoding == full forward, for every model plugin, on left-padded batched prompts.

Reference: each row's unpadded sequence (prompt + generated tokens) run through the plain causal
forward pass, one row at a time, without a cache.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.registry import MODELS
from framework.models.kv_cache import KVCache, init_cache

CONFIGS = {
    "gpt2": dict(vocab_size=97, max_seq_len=32, num_layers=2, num_heads=4, d_model=32),
    "llama": dict(
        vocab_size=97,
        max_seq_len=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        d_model=32,
        mlp_dim=48,
    ),
}
ATOL = 1e-4


def _model(name):
    config = MODELS.get(name)(**CONFIGS[name])
    model = config.build(nnx.Rngs(7))
    if name == "gpt2":  # non-trivial biases/norms so every parameter matters
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            if path[-1] in ("bias", "scale") or path[-1].endswith("_bias"):
                key = jax.random.key(hash(path) % 2**31)
                var.set_value(var.get_value() + 0.1 * jax.random.normal(key, var.shape))
    return config, model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_greedy_decode_matches_full_forward(name):
    config, model = _model(name)
    rng = np.random.default_rng(0)
    lengths, width, steps, max_len = [5, 9, 2], 9, 4, 16
    prompts = [rng.integers(0, config.vocab_size, n).tolist() for n in lengths]
    tokens = np.zeros((len(lengths), width), np.int32)
    mask = np.zeros((len(lengths), width), bool)
    for row, p in enumerate(prompts):
        tokens[row, width - len(p) :] = p
        mask[row, width - len(p) :] = True

    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, cache: KVCache, tokens, token_mask):
        logits, cache = nnx.merge(graphdef, state)(tokens, cache=cache, token_mask=token_mask)
        return logits, cache

    cache = init_cache(config, len(lengths), max_len)
    logits, cache = step(state, cache, jnp.asarray(tokens), jnp.asarray(mask))
    assert int(cache.index) == width
    np.testing.assert_array_equal(np.asarray(cache.valid[:, :width]), mask)
    step_logits = [np.asarray(logits[:, -1])]
    generated = [[] for _ in lengths]
    for _ in range(steps):
        nxt = np.argmax(step_logits[-1], axis=-1).astype(np.int32)
        for row in range(len(lengths)):
            generated[row].append(int(nxt[row]))
        one = jnp.ones((len(lengths), 1), bool)
        logits, cache = step(state, cache, jnp.asarray(nxt[:, None]), one)
        step_logits.append(np.asarray(logits[:, 0]))
    assert step._cache_size() == 2  # one program for the prefill shape, one for decode steps
    assert int(cache.index) == width + steps

    for row, prompt in enumerate(prompts):
        full = np.asarray(prompt + generated[row], np.int32)[None]
        reference, _ = model(jnp.asarray(full))
        reference = np.asarray(reference[0])
        # prompt logits (real tokens of the prefill) and every decode step
        np.testing.assert_allclose(
            np.asarray(logits_at_prefill := step_logits[0][row]),
            reference[len(prompt) - 1],
            atol=ATOL,
            rtol=0,
        )
        for s in range(1, steps + 1):
            np.testing.assert_allclose(
                step_logits[s][row], reference[len(prompt) - 1 + s], atol=ATOL, rtol=0
            )
        del logits_at_prefill


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_chunked_prefill_equals_one_prefill_and_full_forward(name):
    config, model = _model(name)
    tokens = jnp.asarray(
        np.random.default_rng(1).integers(0, config.vocab_size, (2, 10)), jnp.int32
    )
    full, _ = model(tokens)
    cache = init_cache(config, 2, 12)
    first, cache = model(tokens[:, :4], cache=cache)
    second, cache = model(tokens[:, 4:], cache=cache)
    np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=ATOL, rtol=0)
    assert (
        int(cache.index) == 10 and bool(cache.valid[:, :10].all()) and not cache.valid[:, 10:].any()
    )


def test_cache_geometry_follows_the_config():
    llama = MODELS.get("llama")(**CONFIGS["llama"])
    cache = init_cache(llama, 3, 20, dtype="bfloat16")
    assert cache.num_layers == 2 and cache.max_len == 20 and cache.batch_size == 3
    # rows = batch * kv_heads; keys [rows, head_dim, slots], values [rows, slots, head_dim]
    assert cache.k[0].shape == (3 * 2, 8, 20) and cache.k[0].dtype == jnp.bfloat16
    assert cache.v[0].shape == (3 * 2, 20, 8)
    gpt2 = MODELS.get("gpt2")(**CONFIGS["gpt2"], compute_dtype="bfloat16")
    assert init_cache(gpt2, 1, 8).v[1].shape == (1 * 4, 8, 8)
    assert init_cache(gpt2, 1, 8).v[1].dtype == jnp.bfloat16  # default: compute dtype
    leaves = jax.tree.leaves(cache)
    assert len(leaves) == 2 + 2  # a pytree of arrays: k, v stacked over layers, valid, index
    assert cache.k.shape == (2, 3 * 2, 8, 20)  # [layers, rows, head_dim, slots]
    per_layer = init_cache(dataclasses.replace(llama, scan_layers=False), 3, 20)
    assert len(jax.tree.leaves(per_layer)) == 2 * 2 + 2  # k, v per layer, valid, index
