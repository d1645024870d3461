"""Packed sequences (segment ids): a row holding several sequences computes, for each, exactly
what the model computes on that sequence alone, and the packed SFT loss and its gradients are
the token-weighted mean of the per-sequence losses (reference: each sequence run alone)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from framework.models import layers
from framework.train import packing, step
from plugins.models import gpt2, llama

CONFIGS = {
    "llama": lambda: llama.LlamaConfig(
        vocab_size=64, max_seq_len=32, num_layers=2, num_heads=4, num_kv_heads=2, d_model=32
    ),
    "gpt2": lambda: gpt2.GPT2Config(
        vocab_size=64, max_seq_len=32, num_layers=2, num_heads=4, d_model=32
    ),
}


def _sequences(rng, lengths):
    out = []
    for n in lengths:
        ids = rng.integers(0, 64, size=n).astype(np.int32)
        learn = np.zeros(n, np.int32)
        learn[n // 2 :] = 1  # e.g. the assistant's half
        out.append((ids, learn))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_packed_row_equals_each_sequence_alone(name):
    model = layers.build_unsharded(CONFIGS[name](), nnx.Rngs(0))
    seqs = _sequences(np.random.default_rng(1), [5, 9, 3])
    packed = packing.pack_rows(seqs, 20)
    assert packed["tokens"].shape == (1, 20)
    assert packed["segment_ids"][0].tolist() == [1] * 5 + [2] * 9 + [3] * 3 + [0] * 3
    logits, _ = model(jnp.asarray(packed["tokens"]), segment_ids=jnp.asarray(packed["segment_ids"]))
    at = 0
    for ids, _ in seqs:
        alone, _ = model(jnp.asarray(ids[None]))
        np.testing.assert_allclose(logits[0, at : at + len(ids)], alone[0], atol=2e-6)
        at += len(ids)


def test_segment_positions_restart():
    segments = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0]])
    assert layers.segment_positions(segments)[0].tolist() == [0, 1, 2, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_packed_loss_and_gradients_equal_the_sequences_alone(name):
    model = layers.build_unsharded(CONFIGS[name](), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    seqs = _sequences(np.random.default_rng(2), [6, 8, 4, 7, 5])
    batch = {k: jnp.asarray(v) for k, v in packing.pack_rows(seqs, 16).items()}

    def packed_loss(p):
        return step.loss_fn(p, rest, graphdef, batch, jnp.float32)

    def reference_loss(p):  # every sequence alone: summed cross-entropy over learned targets
        m = nnx.merge(graphdef, p, rest)
        total, count = 0.0, 0
        for ids, learn in seqs:
            logits, _ = m(jnp.asarray(ids[None, :-1]))
            ce = optax.softmax_cross_entropy_with_integer_labels(logits[0], jnp.asarray(ids[1:]))
            total = total + (ce * learn[1:]).sum()
            count += int(learn[1:].sum())
        return total / count

    loss, grads = jax.jit(jax.value_and_grad(packed_loss))(params)
    ref_loss, ref_grads = jax.jit(jax.value_and_grad(reference_loss))(params)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(g, r, atol=1e-6)


def test_accumulated_packed_batches_equal_one_batch():
    model = layers.build_unsharded(CONFIGS["llama"](), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    seqs = _sequences(np.random.default_rng(3), [6, 8, 4, 7, 5, 9, 3, 10])
    batch = {k: jnp.asarray(v) for k, v in packing.pack_rows(seqs, 12).items()}
    rows = batch["tokens"].shape[0]
    batch = {k: v[: rows - rows % 2] for k, v in batch.items()}
    tx = optax.sgd(0.0)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0)}
    _, one = jax.jit(step.make_train_step(graphdef, rest, tx, 1))(state, batch)
    _, two = jax.jit(step.make_train_step(graphdef, rest, tx, 2))(state, batch)
    np.testing.assert_allclose(float(one["loss"]), float(two["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(one["grad_norm"]), float(two["grad_norm"]), rtol=1e-5)


def test_segments_after_separator_mark_documents():
    rows = np.asarray([[5, 6, 0, 7, 8, 0, 9]])  # 0 = end of text
    packed = packing.segments_after_separator(rows, separator=0)
    assert packed["segment_ids"][0].tolist() == [1, 1, 1, 2, 2, 2, 3]
    assert packed["loss_mask"].all()
