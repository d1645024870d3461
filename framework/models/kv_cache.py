"""The key/value cache used for incremental decoding (the model call contract is in
``plugins/models/__init__.py``).

A :class:`KVCache` holds, for every layer, the keys and values of the tokens seen so far in
fixed-size slot arrays whose leading axis merges batch rows and key/value heads (row-major:
index ``b * H_kv + h``): keys transposed ``[B*H_kv, Dh, S_max]``, values ``[B*H_kv, S_max, Dh]``.
That layout makes reading the cache two plain batched matrix products, with no transpose or copy
of the cache per token (see ``layers.cached_attention``). Besides the slots:

* ``valid: bool[B, S_max]`` — which slots hold a real token (False for left padding and for
  slots not written yet), and
* ``index: int32[]`` — the next slot to write; a call with ``T`` new tokens writes slots
  ``[index, index + T)`` and advances ``index`` by ``T``.

A query in slot ``q`` attends to key slots ``s <= q`` that are valid. Every shape is fixed, so a
decode step is one compiled program regardless of how far decoding has got (writes go through
``jax.lax.dynamic_update_slice``). The cache is a pytree (``jax.tree_util.register_dataclass``),
so it can be passed through ``jax.jit`` and donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Per-layer keys ``[B*H_kv, Dh, S_max]``, values ``[B*H_kv, S_max, Dh]``, slot mask ``[B, S_max]``, write index."""

    # one array per layer, or (models that scan their layers) one array with a leading layer axis
    k: tuple[jax.Array, ...] | jax.Array
    v: tuple[jax.Array, ...] | jax.Array
    valid: jax.Array  # bool[B, S_max]
    index: jax.Array  # int32[] — next slot to write

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    @property
    def num_layers(self) -> int:
        return len(self.k)

    def replace(self, **changes: Any) -> KVCache:
        return dataclasses.replace(self, **changes)

    def positions_for(self, token_mask: jax.Array) -> jax.Array:
        """Positions of ``T`` new tokens: real tokens already cached + running count of new ones.

        Padding tokens get position 0 (their outputs are never used).
        """
        seen = jnp.sum(self.valid, axis=1, dtype=jnp.int32)[:, None]  # [B, 1]
        running = jnp.cumsum(token_mask.astype(jnp.int32), axis=1) - 1  # [B, T]
        return jnp.where(token_mask, seen + running, 0).astype(jnp.int32)


def _cache_geometry(model_config: Any) -> tuple[int, int, int]:
    """(num_layers, num_kv_heads, head_dim) of a model config."""
    num_heads = int(model_config.num_heads)
    num_kv_heads = int(getattr(model_config, "num_kv_heads", None) or num_heads)
    head_dim = getattr(model_config, "head_dim", None)
    head_dim = int(head_dim) if head_dim else int(model_config.d_model) // num_heads
    return int(model_config.num_layers), num_kv_heads, head_dim


def init_cache(model_config: Any, batch: int, max_len: int, dtype: Any = None) -> KVCache:
    """An empty cache for ``batch`` rows of up to ``max_len`` tokens.

    ``dtype`` defaults to the model's compute dtype (``model_config.compute_dtype``).
    ``max_len`` may not exceed the model's context (``model_config.max_seq_len``) for models with
    learned positions; rotary models accept any length.
    """
    num_layers, num_kv_heads, head_dim = _cache_geometry(model_config)
    if dtype is None:
        dtype = getattr(model_config, "compute_dtype", "float32")
    dtype = jnp.dtype(dtype)
    rows = batch * num_kv_heads
    if getattr(model_config, "scan_layers", False):  # stacked, as the scanned blocks read it
        k = jnp.zeros((num_layers, rows, head_dim, max_len), dtype)
        v = jnp.zeros((num_layers, rows, max_len, head_dim), dtype)
    else:
        k = tuple(jnp.zeros((rows, head_dim, max_len), dtype) for _ in range(num_layers))
        v = tuple(jnp.zeros((rows, max_len, head_dim), dtype) for _ in range(num_layers))
    return KVCache(
        k=k,
        v=v,
        valid=jnp.zeros((batch, max_len), jnp.bool_),
        index=jnp.zeros((), jnp.int32),
    )
