"""Shared flax NNX building blocks for decoder-only language models.

Model plugins (``plugins/models/*.py``) compose these: embeddings, learned or rotary positions,
LayerNorm / RMSNorm, GELU and SwiGLU MLPs, and causal self-attention with multi-head or
grouped-query heads, a causal-mask path (training, scoring) and a KV-cache path (decoding).

Conventions
-----------
* Shapes: ``B`` batch, ``T`` new tokens, ``S`` key slots, ``C`` d_model, ``H`` query heads,
  ``K`` key/value heads, ``D`` head size, ``F`` MLP width, ``V`` vocabulary.
* One dtype policy, owned by the model config: parameters are stored in ``param_dtype`` (fp32
  by default: bf16 training keeps fp32 master weights and optimizer moments; bf16 halves both)
  and cast to ``compute_dtype`` at use (:func:`check_dtypes`, :func:`store_params_in`). Norm
  statistics, softmax, RoPE angles and logits are computed in fp32 whatever the policy.
* Every parameter carries logical axis names (``nnx.Param`` metadata ``out_sharding``), e.g. a
  QKV kernel is ``("embed", None, "heads", "head_dim")``. ``framework/train/sharding.py`` maps the
  logical names to mesh axes (``nnx.get_partition_spec`` under ``nnx.logical_axis_rules``).
  Logical names used here: ``vocab, embed, heads, kv_heads, head_dim, mlp, norm`` (None =
  replicated; ``norm`` = norm scales/biases), and ``layers`` first on the stacked parameters
  of :func:`stacked_blocks`.
* Parameters are sharded eagerly at creation only when a mesh *and* logical-axis rules are both
  active (``jax.set_mesh(mesh)`` + ``nnx.logical_axis_rules(rules)``); otherwise they are plain
  arrays with the annotation kept as metadata, so models build anywhere (tests, ``eval_shape``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import meta as flax_meta
from flax.core import spmd as flax_spmd

from framework.models import backend
from framework.models.backend import dense
from framework.models.kv_cache import KVCache

Initializer = Callable[..., jax.Array]
Axes = tuple[str | None, ...]

# ----------------------------------------------------------------------------------------------
# Parameters


def _eager_sharding() -> bool:
    """Shard at creation only when eager sharding is on (flax's default) and a mesh and
    flax logical-axis rules are both in context."""
    return (
        nnx.using_eager_sharding()
        and flax_meta.get_global_mesh() is not None
        and bool(flax_spmd.get_logical_axis_rules())
    )


def build_unsharded(model_config: Any, rngs: nnx.Rngs) -> nnx.Module:
    """``model_config.build(rngs)`` with flax's eager sharding off: logical axis names are not
    mesh axes, and the trainer (or an importer) places the parameters itself."""
    with nnx.use_eager_sharding(False):
        return model_config.build(rngs)


def param(
    rngs: nnx.Rngs,
    init: Initializer,
    shape: Sequence[int],
    axes: Axes,
    dtype: jnp.dtype = jnp.float32,
) -> nnx.Param:
    """A parameter of ``shape`` initialised by ``init``, annotated with logical ``axes``."""
    if len(axes) != len(shape):
        raise ValueError(f"parameter of shape {tuple(shape)} given {len(axes)} axis names {axes}")
    value = init(rngs.params(), tuple(shape), dtype)
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=_eager_sharding())


DTYPES = ("float32", "bfloat16")


def check_dtypes(plugin: str, param_dtype: str, compute_dtype: str) -> None:
    """Fail with one line naming the field unless both dtypes are ones the model supports."""
    from framework.core.errors import ConfigError

    for field, value in (("param_dtype", param_dtype), ("compute_dtype", compute_dtype)):
        if value not in DTYPES:
            raise ConfigError(f"models.{plugin}: {field}={value!r}; use one of {list(DTYPES)}")


def store_params_in(module: nnx.Module, param_dtype: str) -> None:
    """Store every floating-point parameter of ``module`` in ``param_dtype`` (initialisers draw
    in fp32; a bf16 policy keeps their rounded values)."""
    if jnp.dtype(param_dtype) == jnp.float32:
        return
    params = nnx.state(module, nnx.Param)
    cast = jax.tree.map(
        lambda x: x.astype(param_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params
    )
    nnx.update(module, cast)


def dropout_rngs(rngs: nnx.Rngs) -> nnx.Rngs:
    """Rngs with a ``dropout`` stream that does not consume the ``params`` stream.

    ``nnx.Dropout`` forks ``rngs["dropout"]``, which falls back to the default stream; taking it
    from there would change every parameter created afterwards, so the same seed would give
    different weights with and without dropout. A caller-provided ``dropout`` stream is used as is.
    """
    if "dropout" in rngs:
        return rngs
    stream = rngs.params
    # the stream's position makes each caller's dropout key distinct (one per layer)
    key = jax.random.fold_in(jax.random.fold_in(stream.key[...], 0xD0), stream.count[...])
    return nnx.Rngs(dropout=key)


def normal(stddev: float) -> Initializer:
    return nnx.initializers.normal(stddev=stddev)


zeros: Initializer = nnx.initializers.zeros_init()
ones: Initializer = nnx.initializers.ones_init()


# ----------------------------------------------------------------------------------------------
# Embeddings and positions


class Embed(nnx.Module):
    """Token embedding table ``[V, C]``; ``attend`` reuses it as a tied output head."""

    def __init__(self, vocab_size: int, d_model: int, *, init: Initializer, dtype, rngs):
        self.embedding = param(rngs, init, (vocab_size, d_model), ("vocab", "embed"))
        self.dtype = jnp.dtype(dtype)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        # tokens [B, T] -> [B, T, C]
        return jnp.take(self.embedding[...], tokens, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        # x [B, T, C] -> logits [B, T, V] in fp32
        w = self.embedding[...].astype(self.dtype)
        return dense(x, w, transpose_w=True, preferred_element_type=jnp.float32)


class LearnedPositions(nnx.Module):
    """GPT-2's absolute position table ``[max_seq_len, C]``, added to the token embeddings."""

    def __init__(self, max_seq_len: int, d_model: int, *, init: Initializer, dtype, rngs):
        self.embedding = param(rngs, init, (max_seq_len, d_model), (None, "embed"))
        self.dtype = jnp.dtype(dtype)

    def __call__(self, positions: jax.Array) -> jax.Array:
        # positions [B, T] -> [B, T, C]
        return jnp.take(self.embedding[...], positions, axis=0).astype(self.dtype)


def llama3_inv_freq(
    inv_freq: jax.Array,
    *,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_seq_len: int,
) -> jax.Array:
    """Llama 3.1 RoPE frequency scaling ("llama3" ``rope_type``): fp32 ``inv_freq [D/2]`` ->
    the scaled inverse frequencies ``[D/2]``, op for op as transformers'
    ``_compute_llama3_parameters``, so converted checkpoints reproduce its logits.

    Why: Llama 3.1+ extends its context past ``original_max_seq_len`` (the pre-training length) by
    slowing down the rotations whose wavelength is longer than that context. Wavelengths shorter
    than ``original_max_seq_len / high_freq_factor`` are kept; longer than
    ``original_max_seq_len / low_freq_factor`` are divided by ``factor``; in between, a linear
    blend of the two in ``original_max_seq_len / wavelength``.
    """
    low_freq_wavelen = original_max_seq_len / low_freq_factor
    high_freq_wavelen = original_max_seq_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq  # [D/2]
    scaled = jnp.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max_seq_len / wavelen - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return jnp.where(is_medium, smoothed, scaled)


@dataclasses.dataclass(frozen=True)
class Llama3RopeScaling:
    """:func:`llama3_inv_freq` with its hyper-parameters bound: the ``rope_scaling`` argument of
    :func:`apply_rope` / :class:`CausalSelfAttention`. A frozen (hashable, compared by value)
    dataclass, so it can sit as a static attribute of an NNX module."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_seq_len: int

    def __call__(self, inv_freq: jax.Array) -> jax.Array:
        return llama3_inv_freq(inv_freq, **dataclasses.asdict(self))


RopeScaling = Callable[[jax.Array], jax.Array]  # fp32 inv_freq [D/2] -> scaled [D/2]


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> jax.Array:
    """The fp32 RoPE inverse frequencies ``theta**(-2i/D)``, ``[D/2]``, then ``scaling`` if any."""
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / head_dim))  # [D/2]
    return inv_freq if scaling is None else scaling(inv_freq)


def apply_rope(
    x: jax.Array, positions: jax.Array, theta: float, scaling: RopeScaling | None = None
) -> jax.Array:
    """Rotary position embedding, "rotate half" layout (as Meta's HF Llama checkpoints use).

    x [B, T, H, D], positions int [B, T]. Dimension ``i < D/2`` pairs with ``i + D/2`` and is
    rotated by the angle ``position * theta**(-2i/D)`` (that frequency rescaled by ``scaling``,
    e.g. :class:`Llama3RopeScaling`, when given). Angles and products are fp32.
    """
    d = x.shape[-1]
    half = d // 2
    inv_freq = rope_inv_freq(d, theta, scaling)  # [D/2]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, D/2]
    sin = jnp.sin(angles)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Positions that restart at 0 where each packed segment starts: int32 [B, T]."""
    index = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], jnp.bool_), segment_ids[:, 1:] != segment_ids[:, :-1]],
        axis=1,
    )  # [B, T] True at a segment's first token
    first = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)  # where the current segment began
    return (index - first).astype(jnp.int32)


def default_positions(tokens: jax.Array, token_mask: jax.Array | None) -> jax.Array:
    """Positions that count real tokens only (left padding gets 0): int32 [B, T]."""
    if token_mask is None:
        return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    running = jnp.cumsum(token_mask.astype(jnp.int32), axis=1) - 1
    return jnp.where(token_mask, running, 0).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Norms


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with scale and (optional) bias; statistics in fp32."""

    def __init__(self, d_model: int, *, eps: float, use_bias: bool = True, dtype, rngs):
        self.scale = param(rngs, ones, (d_model,), ("norm",))
        self.bias = param(rngs, zeros, (d_model,), ("norm",)) if use_bias else None
        self.eps = eps
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        centred = xf - mean
        var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
        y = centred * jax.lax.rsqrt(var + self.eps) * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    """Root-mean-square norm (no centring, no bias); statistics in fp32."""

    def __init__(self, d_model: int, *, eps: float, dtype, rngs):
        self.scale = param(rngs, ones, (d_model,), ("norm",))
        self.eps = eps
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(self.dtype)


# ----------------------------------------------------------------------------------------------
# MLPs


class GeluMLP(nnx.Module):
    """``proj(gelu(fc(x)))``, GELU with the tanh approximation (GPT-2's ``gelu_new``)."""

    def __init__(
        self,
        d_model: int,
        mlp_dim: int,
        *,
        use_bias: bool,
        init: Initializer,
        out_init: Initializer,
        dtype,
        rngs,
    ):
        self.fc = param(rngs, init, (d_model, mlp_dim), ("embed", "mlp"))
        self.fc_bias = param(rngs, zeros, (mlp_dim,), ("mlp",)) if use_bias else None
        self.proj = param(rngs, out_init, (mlp_dim, d_model), ("mlp", "embed"))
        self.proj_bias = param(rngs, zeros, (d_model,), ("embed",)) if use_bias else None
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = self.dtype
        h = dense(x, self.fc[...].astype(dt))  # [B, T, F]
        if self.fc_bias is not None:
            h = h + self.fc_bias[...].astype(dt)
        h = jax.nn.gelu(h, approximate=True)
        y = dense(h, self.proj[...].astype(dt))  # [B, T, C]
        if self.proj_bias is not None:
            y = y + self.proj_bias[...].astype(dt)
        return y


class SwiGLU(nnx.Module):
    """``down(silu(gate(x)) * up(x))`` (Shazeer 2020); gate and up fused into one kernel."""

    def __init__(
        self, d_model: int, mlp_dim: int, *, init: Initializer, out_init: Initializer, dtype, rngs
    ):
        # gate_up[:, 0] is the gate, gate_up[:, 1] the up projection.
        self.gate_up = param(rngs, init, (d_model, 2, mlp_dim), ("embed", None, "mlp"))
        self.down = param(rngs, out_init, (mlp_dim, d_model), ("mlp", "embed"))
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = self.dtype
        gu = dense(x, self.gate_up[...].astype(dt))  # [B, T, 2, F]
        h = jax.nn.silu(gu[:, :, 0]) * gu[:, :, 1]  # [B, T, F]
        return dense(h, self.down[...].astype(dt))  # [B, T, C]


# ----------------------------------------------------------------------------------------------
# Attention


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttentionContext:
    """What every layer's attention needs to know about the call, computed once per forward.

    ``mask``: bool [B, 1, T, S] (True = may attend) or None with ``is_causal`` (plain training
    path, lets the attention kernel build the causal mask itself). ``index``: the cache slot of
    the first new token when decoding with a cache, else None.
    """

    mask: jax.Array | None
    is_causal: bool = dataclasses.field(metadata=dict(static=True))
    index: jax.Array | None = None
    segment_ids: jax.Array | None = None  # int32 [B, T] of packed sequences (mask says the same)


def forward_context(
    tokens: jax.Array,
    positions: jax.Array | None,
    token_mask: jax.Array | None,
    segment_ids: jax.Array | None,
) -> tuple[jax.Array, AttentionContext]:
    """(positions, attention context) of a forward pass without a cache.

    ``segment_ids`` int32 [B, T] (packed sequences, e.g. conversations): a token attends only to
    earlier tokens of its own segment and its position restarts at each segment's start, so a
    row of several sequences computes what each sequence alone would.
    """
    batch, length = tokens.shape
    if segment_ids is None:
        if positions is None:
            positions = default_positions(tokens, token_mask)
        return positions, attention_context(batch, length, token_mask)[0]
    if positions is None:
        positions = segment_positions(segment_ids)
    causal = jnp.tril(jnp.ones((length, length), jnp.bool_))  # [T, T]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, T, T]
    mask = causal[None] & same
    if token_mask is not None:
        mask = mask & token_mask[:, None, :].astype(jnp.bool_)
    return positions, AttentionContext(mask=mask[:, None], is_causal=False, segment_ids=segment_ids)


def attention_context(
    batch: int,
    length: int,
    token_mask: jax.Array | None,
    cache_valid: jax.Array | None = None,
    cache_index: jax.Array | None = None,
) -> tuple[AttentionContext, jax.Array | None]:
    """Build the attention mask for a forward pass; returns (context, updated cache valid mask).

    * No cache, no ``token_mask``: plain causal attention over the ``T`` tokens.
    * No cache, ``token_mask`` [B, T]: causal, and padded keys are masked out.
    * Cache (``cache_valid`` [B, S], ``cache_index``): the new tokens occupy slots
      ``[index, index+T)``; a query in slot ``q`` sees valid key slots ``s <= q``.

    A query whose every key is masked (a padding token) attends uniformly instead of producing
    NaN, because the mask is applied with a large finite negative number; its output is unused.
    """
    if cache_valid is None:
        if token_mask is None:
            return AttentionContext(mask=None, is_causal=True), None
        causal = jnp.tril(jnp.ones((length, length), jnp.bool_))  # [T, T]
        mask = causal[None, None] & token_mask[:, None, None, :].astype(jnp.bool_)
        return AttentionContext(mask=mask, is_causal=False), None

    new_valid = jnp.ones((batch, length), jnp.bool_) if token_mask is None else token_mask
    valid = jax.lax.dynamic_update_slice(
        cache_valid, new_valid.astype(jnp.bool_), (jnp.int32(0), cache_index)
    )  # [B, S]
    slots = jnp.arange(cache_valid.shape[1], dtype=jnp.int32)  # [S]
    query_slots = cache_index + jnp.arange(length, dtype=jnp.int32)  # [T]
    causal = slots[None, :] <= query_slots[:, None]  # [T, S]
    mask = causal[None, None] & valid[:, None, None, :]  # [B, 1, T, S]
    return AttentionContext(mask=mask, is_causal=False, index=cache_index), valid


def _lowmem_scores(q, k, mask, is_causal, scale):
    """Masked fp32 scores [B, K, G, T, S] of grouped queries q [B,T,K,G,D] and keys [B,S,K,D],
    and the boolean mask applied (None when nothing is masked)."""
    s = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    t, n = q.shape[1], k.shape[1]
    allowed = None
    if is_causal:
        allowed = jnp.arange(n)[None, :] <= jnp.arange(t)[:, None]  # [T, S]
    if mask is not None:
        m = mask[:, :, None]  # [B|1, 1|K, 1, T, S]
        allowed = m if allowed is None else (allowed & m)
    if allowed is not None:
        s = jnp.where(allowed, s, jnp.finfo(jnp.float32).min)
    return s, allowed


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _lowmem_attention(q, k, v, mask, is_causal, scale):
    return _lowmem_forward(q, k, v, mask, is_causal, scale)[0]


def _lowmem_forward(q, k, v, mask, is_causal, scale):
    s, _ = _lowmem_scores(q, k, mask, is_causal, scale)
    # row max and normaliser kept apart (not as log-sum-exp), so a fully masked row, whose
    # scores all equal the mask value, still gets exact uniform weights
    row_max = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))  # [B, K, G, T, 1]
    e = jnp.exp(s - row_max)
    row_sum = jnp.sum(e, axis=-1, keepdims=True)
    o = jnp.einsum("bkgts,bskd->btkgd", (e / row_sum).astype(v.dtype), v)
    return o, (q, k, v, mask, o, row_max, row_sum)


def _lowmem_backward(is_causal, scale, residuals, do):
    q, k, v, mask, o, row_max, row_sum = residuals
    s, allowed = _lowmem_scores(q, k, mask, is_causal, scale)
    p = jnp.exp(s - row_max) / row_sum  # recomputed, never stored across the layers
    dv = jnp.einsum("bkgts,btkgd->bskd", p.astype(do.dtype), do)
    dp = jnp.einsum("btkgd,bskd->bkgts", do, v, preferred_element_type=jnp.float32)
    delta = jnp.einsum("btkgd,btkgd->bkgt", do.astype(jnp.float32), o.astype(jnp.float32))
    ds = p * (dp - delta[..., None]) * scale
    if allowed is not None:
        ds = jnp.where(allowed, ds, 0.0)  # masked scores are constants: no gradient
    ds = ds.astype(q.dtype)
    dq = jnp.einsum("bkgts,bskd->btkgd", ds, k)
    dk = jnp.einsum("bkgts,btkgd->bskd", ds, q)
    return dq, dk.astype(k.dtype), dv.astype(v.dtype), None


_lowmem_attention.defvjp(_lowmem_forward, _lowmem_backward)


def lowmem_attention(q, k, v, *, mask=None, is_causal=False, scale=None):
    """Softmax attention that keeps no ``T × S`` matrix for the backward pass.

    Same arguments and result as ``jax.nn.dot_product_attention`` (q [B,T,H,D], k/v [B,S,K,D],
    bool mask broadcastable to [B,1,T,S]). The forward pass saves only q, k, v, the output and
    the row log-sum-exp; the backward pass recomputes the probabilities (as FlashAttention does,
    without tiling). On CPU, where XLA does not honour rematerialisation, this removes the
    largest activations of training (e.g. 12 × 200 MB at GPT-2 124M, batch 4, T 1024) for
    about 2·T·D extra FLOPs per query per head.
    """
    b, t, h, d = q.shape
    kv = k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qg = q.reshape(b, t, kv, h // kv, d)  # query head n uses key/value head n // (H/K)
    out = _lowmem_attention(qg, k, v, mask, is_causal, scale)
    return out.reshape(b, t, h, d)


def cached_attention(q, cache_kt, cache_v, mask, scale):
    """Attention of new queries q [B,T,H,D] over the cache -> [B,T,H,D].

    The cache merges batch rows and key/value heads into one leading axis and holds keys
    transposed: ``kt [B*K, D, S]``, values ``v [B*K, S, D]``. Then the scores ``q·kt`` and the
    output ``p·v`` are single-batch-axis matrix products in exactly the operand layouts XLA's
    dot kernels take, so a decode step neither transposes nor copies the cache (a [B,S,K,D]
    cache with ``jax.nn.dot_product_attention`` transposed every layer's cache on every token,
    and a two-batch-axis cache made XLA copy it inside the decode loop). ``mask`` is bool
    [B,1,T,S]; a fully masked row gets uniform weights, as :func:`attention_context` promises.
    """
    b, t, h, d = q.shape
    kv = cache_kt.shape[0] // b
    g = h // kv  # query head n uses key/value head n // g
    qg = q.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4).reshape(b * kv, g * t, d)
    s = jnp.matmul(qg, cache_kt, preferred_element_type=jnp.float32) * scale  # [B*K, G*T, S]
    s = s.reshape(b, kv, g, t, -1)
    s = jnp.where(mask[:, :, None], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(cache_v.dtype).reshape(b * kv, g * t, -1)
    out = jnp.matmul(p, cache_v)  # [B*K, G*T, D]
    return out.reshape(b, kv, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


class CausalSelfAttention(nnx.Module):
    """Multi-head (``num_kv_heads == num_heads``) or grouped-query causal self-attention.

    Multi-head: one fused kernel ``qkv [C, 3, H, D]``. Grouped-query: ``q [C, H, D]`` and a fused
    ``kv [C, 2, K, D]``; each group of ``H/K`` query heads shares one key/value head. Output
    projection ``out [H, D, C]``. Optional biases (GPT-2) and rotary positions (Llama), with an
    optional ``rope_scaling`` of their frequencies (:class:`Llama3RopeScaling`).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        *,
        use_bias: bool,
        rope_theta: float | None,
        rope_scaling: RopeScaling | None = None,
        init: Initializer,
        out_init: Initializer,
        dtype,
        implementation: str | None = None,
        rngs: nnx.Rngs,
    ):
        num_kv_heads = num_kv_heads or num_heads
        head_dim = head_dim or d_model // num_heads
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}"
            )
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.fused = num_kv_heads == num_heads
        h, k, d = num_heads, num_kv_heads, head_dim
        if self.fused:
            self.qkv = param(rngs, init, (d_model, 3, h, d), ("embed", None, "heads", "head_dim"))
            self.qkv_bias = (
                param(rngs, zeros, (3, h, d), (None, "heads", "head_dim")) if use_bias else None
            )
        else:
            self.q = param(rngs, init, (d_model, h, d), ("embed", "heads", "head_dim"))
            self.kv = param(rngs, init, (d_model, 2, k, d), ("embed", None, "kv_heads", "head_dim"))
            self.q_bias = param(rngs, zeros, (h, d), ("heads", "head_dim")) if use_bias else None
            self.kv_bias = (
                param(rngs, zeros, (2, k, d), (None, "kv_heads", "head_dim")) if use_bias else None
            )
        self.out = param(rngs, out_init, (h, d, d_model), ("heads", "head_dim", "embed"))
        self.out_bias = param(rngs, zeros, (d_model,), ("embed",)) if use_bias else None
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.dtype = jnp.dtype(dtype)
        self.implementation = implementation

    def _project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        dt = self.dtype
        if self.fused:
            qkv = dense(x, self.qkv[...].astype(dt))  # [B, T, 3, H, D]
            if self.qkv_bias is not None:
                qkv = qkv + self.qkv_bias[...].astype(dt)
            return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q = dense(x, self.q[...].astype(dt))  # [B, T, H, D]
        kv = dense(x, self.kv[...].astype(dt))  # [B, T, 2, K, D]
        if self.q_bias is not None:
            q = q + self.q_bias[...].astype(dt)
            kv = kv + self.kv_bias[...].astype(dt)
        return q, kv[:, :, 0], kv[:, :, 1]

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        ctx: AttentionContext,
        kv_cache: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """x [B, T, C] -> ([B, T, C], updated (k, v) cache of this layer or None)."""
        q, k, v = self._project(x)  # q [B, T, H, D], k/v [B, T, K, D]
        if self.rope_theta is not None:
            q = apply_rope(q, positions, self.rope_theta, self.rope_scaling)
            k = apply_rope(k, positions, self.rope_theta, self.rope_scaling)
        scale = 1.0 / math.sqrt(self.head_dim)
        if kv_cache is not None:
            cache_k, cache_v = kv_cache  # keys transposed [B*K, D, S], values [B*K, S, D]
            b, t, kv, d = k.shape
            zero = jnp.int32(0)
            k_new = k.transpose(0, 2, 3, 1).reshape(b * kv, d, t).astype(cache_k.dtype)
            v_new = v.transpose(0, 2, 1, 3).reshape(b * kv, t, d).astype(cache_v.dtype)
            cache_k = jax.lax.dynamic_update_slice(cache_k, k_new, (zero, zero, ctx.index))
            cache_v = jax.lax.dynamic_update_slice(cache_v, v_new, (zero, ctx.index, zero))
            y = backend.decode_attention(
                q, cache_k, cache_v, ctx.mask[:, 0, 0, :], ctx.index + t, scale
            )
            if y is None:
                y = cached_attention(
                    q, cache_k.astype(self.dtype), cache_v.astype(self.dtype), ctx.mask, scale
                )
            kv_cache = (cache_k, cache_v)
        elif (
            self.implementation is None
            and ctx.is_causal
            and ctx.mask is None
            and (kernel := backend.causal_attention(q, k, v, scale)) is not None
        ):
            y = kernel  # a kernel of the compilation target (e.g. CPU, one device, fp32)
        elif (
            self.implementation is None
            and ctx.segment_ids is not None
            and (kernel := backend.segmented_attention(q, k, v, scale, ctx.segment_ids)) is not None
        ):
            y = kernel  # packed sequences, e.g. TPU flash attention with segment ids
        elif self.implementation == "lowmem":
            y = lowmem_attention(q, k, v, mask=ctx.mask, is_causal=ctx.is_causal)
        else:
            y = jax.nn.dot_product_attention(
                q,
                k,
                v,
                mask=ctx.mask,
                is_causal=ctx.is_causal,
                scale=scale,
                # e.g. cuDNN flash attention on GPUs, which takes no explicit mask
                implementation=self.implementation if ctx.is_causal else None,
            )  # [B, T, H, D]
        out = dense(y, self.out[...].astype(self.dtype), contract=2)  # [B, T, C]
        if self.out_bias is not None:
            out = out + self.out_bias[...].astype(self.dtype)
        return out, kv_cache


# ----------------------------------------------------------------------------------------------
# The stack of blocks

# What a block keeps for the backward pass, named after ``jax.checkpoint_policies``:
# ``none`` keeps every activation (no rematerialisation); ``full`` keeps only the block's input
# and recomputes the rest; ``dots_saveable`` / ``dots_with_no_batch_dims_saveable`` keep the
# matrix-product outputs (all of them / those without batch dimensions, i.e. the projections,
# not attention's scores); ``offload_dots`` keeps the projections' outputs in host memory
# (TPU; pinned host memory).
REMAT_POLICIES = (
    "none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable", "offload_dots",
)  # fmt: skip


def remat_policy(name: str | bool) -> tuple[bool, Callable[..., bool] | None]:
    """(rematerialise at all, the ``jax.checkpoint`` policy) for a policy name; ``True`` and
    ``False`` (older configs) mean ``full`` and ``none``."""
    if name is True or name is False:
        name = "full" if name else "none"
    policies = jax.checkpoint_policies
    table = {
        "none": (False, None),
        "full": (True, None),
        "dots_saveable": (True, policies.dots_saveable),
        "dots_with_no_batch_dims_saveable": (True, policies.dots_with_no_batch_dims_saveable),
        "offload_dots": (
            True,
            policies.offload_dot_with_no_batch_dims(
                offload_src="device", offload_dst="pinned_host"
            ),
        ),
    }
    if name not in table:
        from framework.core.errors import ConfigError

        raise ConfigError(f"remat = {name!r}: expected one of {', '.join(REMAT_POLICIES)}")
    return table[name]


def run_blocks(
    blocks: Sequence[nnx.Module],
    x: jax.Array,
    positions: jax.Array,
    ctx: AttentionContext,
    cache: KVCache | None,
    *,
    remat: str | bool = "none",
) -> tuple[jax.Array, tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]] | None]:
    """``x`` through every block ``block(x, positions, ctx, kv) -> (x, kv)`` in order.

    Returns the residual stream [B, T, C] and, with a ``cache``, every layer's updated (keys,
    values). ``remat``: a name of :data:`REMAT_POLICIES` (what each block keeps for the backward
    pass; the rest is recomputed). Each block's input is laid out over the mesh
    (``backend.block_activation``) and passes the residual boundary (identities in value).
    """
    rematerialise, policy = remat_policy(remat)
    if not isinstance(blocks, Sequence):  # one module whose parameters are stacked per layer
        return _scan_blocks(blocks, x, positions, ctx, cache, rematerialise, policy)
    new_k, new_v = [], []
    for i, block in enumerate(blocks):
        kv = None if cache is None else (cache.k[i], cache.v[i])
        x = backend.residual_boundary(backend.block_activation(x))
        if rematerialise:
            x, kv = nnx.remat(type(block).__call__, policy=policy)(block, x, positions, ctx, kv)
        else:
            x, kv = block(x, positions, ctx, kv)
        if kv is not None:
            new_k.append(kv[0])
            new_v.append(kv[1])
    return x, (None if cache is None else (tuple(new_k), tuple(new_v)))


def stacked_blocks(make_block: Callable[[nnx.Rngs], nnx.Module], num_layers: int, rngs: nnx.Rngs):
    """``num_layers`` blocks as ONE module whose parameters have a leading layer axis (logical
    name ``layers``), for :func:`run_blocks` to scan: the program holds one block, so compile
    time and program size do not grow with depth."""

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(
        in_axes=(0,), out_axes=0, axis_size=num_layers,
        transform_metadata={nnx.PARTITION_NAME: "layers"},  # axis names gain a leading `layers`
    )  # fmt: skip
    def make(rngs: nnx.Rngs) -> nnx.Module:
        return make_block(rngs)

    return make(rngs)


def _scan_blocks(stack, x, positions, ctx, cache, rematerialise, policy):
    """:func:`run_blocks` over stacked blocks with ``jax.lax.scan`` (cache stacked likewise)."""
    graphdef, state = nnx.split(stack)

    def body(x, layer):
        layer_state, kv = layer
        block = nnx.merge(graphdef, layer_state)
        x = backend.residual_boundary(backend.block_activation(x))
        x, kv = block(x, positions, ctx, kv)
        return x, (nnx.state(block, nnx.Not(nnx.Param)), kv)

    if rematerialise:
        body = jax.checkpoint(body, policy=policy, prevent_cse=False)
    kv_in = None if cache is None else (cache.k, cache.v)
    unroll = backend.layer_loop_unroll(jax.tree.leaves(state)[0].shape[0])
    x, (changed, kv_out) = jax.lax.scan(body, x, (state, kv_in), unroll=unroll)
    if jax.tree.leaves(changed):  # state a forward pass advances (dropout's RNG counters)
        nnx.update(stack, changed)
    return x, kv_out


# ----------------------------------------------------------------------------------------------
# Parameter accounting


def count_params(shapes: dict[str, tuple[int, ...]]) -> int:
    """Total number of elements of a name -> shape mapping."""
    return sum(math.prod(s) for s in shapes.values())


def param_shapes(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    """``"path.to.param" -> shape`` of every ``nnx.Param`` of a (possibly abstract) module."""
    state = nnx.state(module, nnx.Param)
    return {".".join(str(p) for p in path): tuple(v.shape) for path, v in nnx.to_flat_state(state)}


def palm_flops_per_token(
    non_embedding_params: int, num_layers: int, num_heads: int, head_dim: int, seq_len: int
) -> int:
    """Training FLOPs per token, PaLM appendix B / nanoGPT: ``6N + 12·L·H·Q·T``.

    ``6N``: forward multiply-add (2) plus backward (4) per weight. ``12·L·H·Q·T``: the QKᵀ and
    AV matmuls (forward 4·L·H·Q·T, ×3 with backward), counted non-causal (the masked half too).
    """
    return 6 * non_embedding_params + 12 * num_layers * num_heads * head_dim * seq_len


class PalmFlopsPerToken:
    """Mixin for model configs that define ``num_params``, ``num_layers``, ``num_heads``,
    ``head_dim`` and ``max_seq_len``: training FLOPs per token for MFU."""

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, PaLM convention ``6N + 12·L·H·Q·T`` (non-causal attention)."""
        return palm_flops_per_token(
            self.num_params(non_embedding=True),
            self.num_layers,
            self.num_heads,
            self.head_dim,
            seq_len or self.max_seq_len,
        )


def check_positive(plugin: str, **values: int | float) -> None:
    """Raise ConfigError naming the first non-positive hyper-parameter of ``plugin``."""
    from framework.core.errors import ConfigError

    for name, value in values.items():
        if value is None or value <= 0:
            raise ConfigError(f"models.{plugin}: {name} must be positive, got {value!r}")
