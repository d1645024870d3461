"""The optimizer, learning-rate schedule, and the jitted train / eval steps (pure functions).

The train state is a plain pytree ``{"params": nnx.State, "opt_state": optax state,
"step": int32}``. The model's dtype policy decides the rest: parameters (and so gradients and
AdamW moments) in its ``param_dtype``, cast to its ``compute_dtype`` once inside the step
(activations follow); the loss is always float32. The loss is the mean next-token cross-entropy in nats:
over every token of an ``int32[B, T+1]`` batch, or over the learned targets of a packed batch
(:func:`target_weights`: several sequences per row, kept apart by segment ids, with a loss mask).

Gradient accumulation splits the global batch into ``grad_accum_steps`` micro-batches summed
with ``lax.scan`` (the same update as one big batch, in less memory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from framework.core.errors import ConfigError

# Parameters that get no weight decay (besides every parameter with fewer than 2 dims):
# embeddings, norms, biases, matched against the parameter's path.
DEFAULT_DECAY_EXCLUDE = r"(embed|wte|wpe|norm|ln_|\bln\b|bias|scale)"


def learning_rate_schedule(
    learning_rate: float,
    train_steps: int,
    warmup_steps: int,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
    decay_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then cosine / linear
    decay to ``min_lr_ratio * learning_rate`` at ``decay_steps`` (default ``train_steps``), or
    constant."""
    decay_steps = train_steps if decay_steps is None else decay_steps
    warmup_steps = max(0, min(warmup_steps, decay_steps))
    end = learning_rate * min_lr_ratio
    warm = optax.linear_schedule(0.0, learning_rate, max(1, warmup_steps))
    rest = max(1, decay_steps - warmup_steps)
    if schedule == "cosine":
        decay = optax.cosine_decay_schedule(learning_rate, rest, alpha=min_lr_ratio)
    elif schedule == "linear":
        decay = optax.linear_schedule(learning_rate, end, rest)
    elif schedule == "constant":
        decay = optax.constant_schedule(learning_rate)
    else:
        raise ConfigError(f"train.schedule {schedule!r}: expected cosine, linear or constant")
    if warmup_steps == 0:
        return decay
    return optax.join_schedules([warm, decay], [warmup_steps])


def decay_mask(params: Any, exclude: str = DEFAULT_DECAY_EXCLUDE) -> Any:
    """True for parameters that get weight decay: matrices whose path does not match ``exclude``."""
    pattern = re.compile(exclude) if exclude else None

    def decide(path, leaf) -> bool:
        name = jax.tree_util.keystr(path).replace(".value", "")
        if getattr(leaf, "ndim", 0) < 2:
            return False
        return not (pattern and pattern.search(name))

    return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(
    schedule: optax.Schedule,
    params: Any,
    weight_decay: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    grad_clip: float | None = 1.0,
    decay_exclude: str = DEFAULT_DECAY_EXCLUDE,
) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay on the masked parameters) after global-norm clipping."""
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(
        optax.adamw(
            schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
            mask=decay_mask(params, decay_exclude),
        )
    )  # fmt: skip
    return optax.chain(*parts)


def _cast(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)  # fmt: skip


def is_packed(batch: Any) -> bool:
    """Whether ``batch`` is a packed batch (a dict, see :func:`target_weights`)."""
    return isinstance(batch, dict)


def target_weights(batch: dict) -> jax.Array:
    """Which next-token targets of a packed batch count in the loss: float32 [B, T].

    A packed batch is ``{"tokens", "segment_ids", "loss_mask"}``, each ``int32[B, T+1]``:
    segment 0 is padding; ``loss_mask`` marks the tokens to learn (e.g. the assistant's). A
    target counts when it is learned and belongs to the same segment as its input, so no
    sequence learns to predict the first token of the next one.
    """
    segments, mask = batch["segment_ids"], batch["loss_mask"]
    same = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] != 0)
    return (same & (mask[:, 1:] != 0)).astype(jnp.float32)


def loss_denominator(batch: Any) -> jax.Array:
    """The number of targets the loss averages over (at least 1), for the whole batch."""
    if not is_packed(batch):
        return jnp.float32(batch.shape[0] * (batch.shape[1] - 1))
    return jnp.maximum(target_weights(batch).sum(), 1.0)


def loss_fn(
    params: Any,
    rest: Any,
    graphdef: Any,
    batch: Any,
    compute_dtype: Any,
    denominator: jax.Array | None = None,
) -> Any:
    """Next-token cross-entropy (nats) of ``batch``: its mean over ``int32[B, T+1]`` tokens, or
    for a packed batch the sum over its learned targets divided by ``denominator`` (default:
    their number), so micro-batches sharing the whole batch's denominator add up to its mean."""
    if compute_dtype != jnp.float32:
        params = _cast(params, compute_dtype)
    model = nnx.merge(graphdef, params, rest)
    if not is_packed(batch):
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits, _ = model(inputs)  # [B, T, V]
        logits = logits.astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    tokens = batch["tokens"]
    logits, _ = model(tokens[:, :-1], segment_ids=batch["segment_ids"][:, :-1])  # [B, T, V]
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), tokens[:, 1:]
    )  # [B, T]
    weights = target_weights(batch)
    if denominator is None:
        denominator = jnp.maximum(weights.sum(), 1.0)
    return (losses * weights).sum() / denominator


def make_train_step(
    graphdef: Any,
    rest: Any,
    tx: optax.GradientTransformation,
    grad_accum_steps: int = 1,
    compute_dtype: Any = jnp.float32,
) -> Callable[[dict, jax.Array], tuple[dict, dict]]:
    """``step(state, batch) -> (state, metrics)`` (not yet jitted)."""
    grad = jax.value_and_grad(loss_fn)

    def compute(params, batch):
        if grad_accum_steps == 1:
            return grad(params, rest, graphdef, batch, compute_dtype)
        micro = jax.tree.map(lambda x: x.reshape(grad_accum_steps, -1, x.shape[-1]), batch)
        # a packed batch's micro-batches share its denominator: their losses add up to its mean
        denominator = loss_denominator(batch) if is_packed(batch) else None

        def body(carry, mb):
            loss_sum, grad_sum = carry
            loss, grads = grad(params, rest, graphdef, mb, compute_dtype, denominator)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro)
        if is_packed(batch):
            return loss, grads
        return loss / grad_accum_steps, jax.tree.map(lambda g: g / grad_accum_steps, grads)

    def step(state: dict, batch: jax.Array) -> tuple[dict, dict]:
        params, opt_state = state["params"], state["opt_state"]
        loss, grads = compute(params, batch)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        return new_state, {"loss": loss, "grad_norm": grad_norm}

    return step


def make_eval_step(graphdef: Any, rest: Any, compute_dtype: Any = jnp.float32):
    """``eval_step(params, batch) -> mean loss`` (not yet jitted)."""

    def eval_step(params: Any, batch: jax.Array) -> jax.Array:
        return loss_fn(params, rest, graphdef, batch, compute_dtype)

    return eval_step
