"""Sampler plugins (kind ``samplers``): pure logits transforms composed into a chain.

Every sampler is a small frozen dataclass, registered with ``@SAMPLERS.register(name)``, whose
``__call__(logits, seen) -> logits`` maps ``float32[B, V]`` logits to ``float32[B, V]`` logits with
removed tokens set to ``-inf``. ``seen`` is ``bool[B, V]``: the tokens present in the row's prompt
or already generated (used by penalties; ignored by the others). The engine
(``framework/sample/generate.py``) draws the next token from ``softmax`` of the chain's output, or takes
its ``argmax`` when the chain is deterministic (``greedy``, or ``temperature`` 0).

Each sampler declares its ``stage``; the engine sorts a chain into the canonical order below,
whatever order the gin list uses, and rejects two samplers of the same stage. The order is
Hugging Face ``generate``'s (penalties, then the warpers temperature → top-k → top-p → min-p);
greedy selection is last:

    0 repetition_penalty   CTRL / HF: seen logits  x < 0 → x·penalty,  x ≥ 0 → x / penalty
    1 temperature          logits / T;  T = 0 means greedy
    2 top_k                keep the k largest logits (ties with the k-th are kept)
    3 top_p                keep the smallest set of most likely tokens whose mass reaches p
    4 min_p                keep tokens whose probability ≥ min_p · (top probability)
    5 greedy               keep only the argmax (first index on ties)

Select a chain in gin, e.g. ``sample.sampler = [@samplers.temperature(), @samplers.top_p()]``
with ``samplers.top_p.p = 0.9``, or a single sampler ``sample.sampler = @samplers.greedy()``.
"""

from __future__ import annotations

STAGES = {
    "penalty": 0,
    "temperature": 1,
    "top_k": 2,
    "top_p": 3,
    "min_p": 4,
    "greedy": 5,
}


def mask_below(logits, threshold):
    """``logits`` where ``logits >= threshold`` (broadcast per row), ``-inf`` elsewhere."""
    import jax.numpy as jnp

    return jnp.where(logits >= threshold, logits, -jnp.inf)


def keep_argmax(logits):
    """Only each row's argmax survives (first index on ties); everything else is ``-inf``."""
    import jax
    import jax.numpy as jnp

    best = jnp.argmax(logits, axis=-1)
    keep = jax.nn.one_hot(best, logits.shape[-1], dtype=bool)
    return jnp.where(keep, logits, -jnp.inf)
