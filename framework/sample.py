"""Text generation: prefill + decode with a KV cache, sampler chains, streaming.

Sampler chains (pure functions, see ``plugins/samplers/__init__.py`` for each sampler):

* :func:`canonical_chain` turns the gin value of ``sample.sampler`` (one sampler, a list, or
  ``None``) into a tuple sorted into the canonical order — penalties → temperature → top-k →
  top-p → min-p → greedy (Hugging Face's order). A gin list in another order is *sorted*, not
  rejected; two samplers of the same stage are rejected.
* :func:`apply_chain` maps logits ``[B, V]`` through the chain; :func:`select_tokens` draws one
  token per row with per-row keys (``argmax`` when the chain is deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from framework.errors import ConfigError

# ------------------------------------------------------------------------------------------------
# Sampler chains


def canonical_chain(sampler: Any) -> tuple[Any, ...]:
    """The samplers of ``sampler`` (None, one, or a sequence) in canonical order."""
    if sampler is None:
        items: list[Any] = []
    elif isinstance(sampler, Sequence) and not isinstance(sampler, str):
        items = list(sampler)
    else:
        items = [sampler]
    for item in items:
        if not callable(item) or not hasattr(item, "stage"):
            raise ConfigError(
                f"sample.sampler: {item!r} is not a sampler plugin (use @samplers.NAME(); "
                "list them with `deepdive plugins list --kind samplers`)"
            )
    by_stage: dict[int, Any] = {}
    for item in items:
        if item.stage in by_stage:
            raise ConfigError(
                f"sample.sampler: {type(by_stage[item.stage]).__name__} and {type(item).__name__} "
                "fill the same stage of the chain; keep one"
            )
        by_stage[item.stage] = item
    return tuple(by_stage[s] for s in sorted(by_stage))


def describe_chain(chain: Sequence[Any]) -> str:
    """``temperature(temperature=0.8) → top_p(p=0.95)``; ``sampling (temperature 1)`` if empty."""
    if not chain:
        return "sampling from the full distribution (temperature 1)"
    return " → ".join(repr(s) for s in chain)


def is_deterministic(chain: Sequence[Any]) -> bool:
    """True when the chain ends in a single token (greedy, or temperature 0)."""
    return any(bool(getattr(s, "deterministic", False)) for s in chain)


def apply_chain(chain: Sequence[Any], logits: jax.Array, seen: jax.Array | None) -> jax.Array:
    """Logits ``float32[B, V]`` after every sampler of ``chain`` (removed tokens are -inf)."""
    logits = logits.astype(jnp.float32)
    for sampler in chain:
        logits = sampler(logits, seen)
    return logits


def select_tokens(
    chain: Sequence[Any], logits: jax.Array, seen: jax.Array | None, keys: jax.Array
) -> jax.Array:
    """One token per row ``int32[B]``: a draw from softmax(chain(logits)) with row ``b``'s key.

    ``keys`` is a ``[B]`` array of typed PRNG keys (``jax.random.key``). Deterministic chains
    take the argmax and use no randomness.
    """
    if is_deterministic(chain):
        return jnp.argmax(apply_chain(chain, logits, seen), axis=-1).astype(jnp.int32)
    warped = apply_chain(chain, logits, seen)
    draw = jax.vmap(lambda key, row: jax.random.categorical(key, row))
    return draw(keys, warped).astype(jnp.int32)


def row_keys(seed: int, rows: Sequence[tuple[int, int]]) -> jax.Array:
    """Typed PRNG keys, one per ``(prompt_index, sample_index)``: independent of batching."""
    base = jax.random.key(seed)
    return (
        jnp.stack([jax.random.fold_in(jax.random.fold_in(base, p), s) for p, s in rows])
        if rows
        else jax.random.split(base, 0)
    )
