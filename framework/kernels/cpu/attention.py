"""Causal self-attention on CPU as two XLA custom calls (forward, backward), fp32.

Why: with XLA:CPU's attention, the passes over the ``[B, H, T, T]`` scores — mask, softmax, and
the transposed copies the backward products need — cost more than all matrix products of GPT-2
124M's training step together (T = 1024), and the probabilities kept for the backward pass are
the largest activations. ``src/cpu_attention.cc`` works on blocks of 64 query rows against
only the keys they may see (the masked upper triangle is skipped), runs the products in the BLAS
found by :mod:`framework.kernels.cpu.build`, and keeps one log-sum-exp per row for the backward
pass, which recomputes the probabilities (as FlashAttention does). :func:`decode_attention` is
one decode step against the KV cache.

``framework.models.backend`` decides when they serve: fp32, one CPU device, plain causal
attention (no padding mask) or one new token per row against the cache.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from framework.kernels.cpu.build import require

FORWARD = "deepdive_cpu_attention_fwd"
BACKWARD = "deepdive_cpu_attention_bwd"
DECODE = "deepdive_cpu_attention_decode"


def _to_kernel(x: jax.Array, kv_heads: int) -> jax.Array:
    """[B, T, H, D] -> [B*H, T, D] with the H/K query heads of each key/value head adjacent."""
    b, t, h, d = x.shape
    g = h // kv_heads
    return x.reshape(b, t, kv_heads, g, d).transpose(0, 2, 3, 1, 4).reshape(b * h, t, d)


def _from_kernel(x: jax.Array, batch: int, kv_heads: int) -> jax.Array:
    """Inverse of :func:`_to_kernel`: [B*H, T, D] -> [B, T, H, D]."""
    bh, t, d = x.shape
    g = bh // (batch * kv_heads)
    return x.reshape(batch, kv_heads, g, t, d).transpose(0, 3, 1, 2, 4).reshape(batch, t, -1, d)


def _forward_call(q3, k3, v3, scale):
    shapes = (jax.ShapeDtypeStruct(q3.shape, jnp.float32),
              jax.ShapeDtypeStruct(q3.shape[:2], jnp.float32))  # fmt: skip
    call = jax.ffi.ffi_call(FORWARD, shapes, vmap_method="sequential")
    return call(q3, k3, v3, scale=np.float32(scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attention(q3, k3, v3, scale):
    return _forward_call(q3, k3, v3, scale)[0]


def _attention_fwd(q3, k3, v3, scale):
    o3, lse = _forward_call(q3, k3, v3, scale)
    return o3, (q3, k3, v3, o3, lse)


def _attention_bwd(scale, residuals, do3):
    q3, k3, v3, o3, lse = residuals
    shapes = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in (q3, k3, v3))
    call = jax.ffi.ffi_call(BACKWARD, shapes, vmap_method="sequential")
    return call(q3, k3, v3, o3, lse, do3, scale=np.float32(scale))


_attention.defvjp(_attention_fwd, _attention_bwd)


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
    """Softmax(scale · q kᵀ, causal) v: q [B, T, H, D], k/v [B, T, K, D] -> [B, T, H, D]."""
    require()
    b, _, _, _ = q.shape
    kv = k.shape[2]
    out = _attention(_to_kernel(q, kv), _to_kernel(k, kv), _to_kernel(v, kv), float(scale))
    return _from_kernel(out, b, kv)


def decode_attention(
    q: jax.Array,
    cache_kt: jax.Array,
    cache_v: jax.Array,
    mask: jax.Array,
    limit: jax.Array,
    scale: float,
) -> jax.Array:
    """One decode step against the KV cache, reading only slots ``< limit``.

    q [B, 1, H, D]; the cache as ``layers.cached_attention`` keeps it (keys transposed
    ``[B*K, D, S]``, values ``[B*K, S, D]``); mask bool [B, S] (the slots each row may see);
    limit int32 [] (slots written so far). -> [B, 1, H, D]. A row that may see no slot gets zeros
    (its output is unused). Not differentiable: decoding only.
    """
    require()
    b, t, h, d = q.shape
    kv = cache_kt.shape[0] // b
    q3 = q.reshape(b * kv, (h // kv) * t, d)  # t == 1: query head n uses key/value head n // g
    call = jax.ffi.ffi_call(
        DECODE, jax.ShapeDtypeStruct(q3.shape, jnp.float32), vmap_method="sequential"
    )
    out = call(q3, cache_kt, cache_v, mask.astype(jnp.uint8), jnp.asarray(limit, jnp.int32),
               scale=np.float32(scale))  # fmt: skip
    return out.reshape(b, t, h, d)
