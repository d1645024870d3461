"""Validation loss and bits per byte over a split.

``val_loss`` is the mean next-token cross-entropy in nats over ``num_batches`` fixed validation
batches (the same batches at every evaluation, so the curve is comparable); bits per byte is
``val_loss · tokens / (bytes · ln 2)`` with the split's bytes per token from the token-shard
manifest (or from the text for ``data.text_file``). It does not depend on the tokenizer, so it
compares runs with different vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from framework.train.metrics import bits_per_byte


def mean_loss(eval_step: Callable[[Any, Any], Any], params: Any, batches: Sequence[Any]) -> float:
    """Mean of ``eval_step(params, batch)`` over equally sized batches (float64 on the host)."""
    if not batches:
        raise ValueError("no validation batches")
    losses = [eval_step(params, batch) for batch in batches]  # dispatched, then gathered
    return float(np.mean([float(loss) for loss in losses]))


def evaluate(
    eval_step: Callable[[Any, Any], Any],
    params: Any,
    batches: Sequence[Any],
    bytes_per_token: float | None,
) -> dict[str, float | None]:
    """``{"val_loss": nats/token, "val_bpb": bits/byte or None}``."""
    loss = mean_loss(eval_step, params, batches)
    return {"val_loss": loss, "val_bpb": bits_per_byte(loss, bytes_per_token)}


def evaluate_model(
    model: Any,
    data: Any,
    batch_size: int = 8,
    seq_len: int = 256,
    num_batches: int = 20,
    compute_dtype: str = "float32",
) -> dict[str, float | None]:
    """Evaluate a loaded model (``checkpoint.load_for_inference``) on ``data``'s validation split,
    on one device (for ``deepdive eval``)."""
    import jax
    from flax import nnx

    from framework.models import backend
    from framework.train import step as train_state

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    eval_step = train_state.make_eval_step(graphdef, rest, train_state.parse_dtype(compute_dtype))
    step = jax.jit(backend.compiled_for(eval_step, jax.devices()[:1]))
    batches = [
        jax.numpy.asarray(b)
        for b in data.eval_batches(batch_size, seq_len, num_batches, vocab_size=None)
    ]
    result = evaluate(step, params, batches, data.bytes_per_token())
    result["tokens"] = num_batches * batch_size * seq_len
    return result
