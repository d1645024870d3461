"""Validation loss and bits per byte over a split.

``val_loss`` is the mean next-token cross-entropy in nats over ``num_batches`` fixed validation
batches (the same batches at every evaluation, so the curve is comparable); bits per byte is
``val_loss · tokens / (bytes · ln 2)`` with the split's bytes per token from the token-shard
manifest (or from the text for ``data.text_file``). It does not depend on the tokenizer, so it
compares runs with different vocabularies.

``EvalConfig`` is ``deepdive eval``'s top-level gin configurable (``evaluate``); ``WholeText``
and ``Split`` are the two things it evaluates on (a text file, a split of token shards).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gin
import numpy as np

from framework.core.errors import InputError
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
) -> dict[str, float | None]:
    """Evaluate a loaded model (``checkpoint.load_for_inference``) on ``data``'s validation split,
    on one device (for ``deepdive eval``), in the model's own compute dtype."""
    import jax
    from flax import nnx

    from framework.models import backend
    from framework.train import step as train_state

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    compute_dtype = jax.numpy.dtype(getattr(model.config, "compute_dtype", "float32"))
    eval_step = train_state.make_eval_step(graphdef, rest, compute_dtype)
    step = jax.jit(backend.compiled_for(eval_step, jax.devices()[:1]))
    batches = [
        jax.numpy.asarray(b)
        for b in data.eval_batches(batch_size, seq_len, num_batches, vocab_size=None)
    ]
    result = evaluate(step, params, batches, data.bytes_per_token())
    result["tokens"] = num_batches * batch_size * seq_len
    return result


@gin.configurable("evaluate")
@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """``deepdive eval`` settings: the run, the window length (None: the model's context),
    batch size, how many batches (None: all windows of a text file, 50 for token shards) and
    the checkpoint step (None: the newest). The compute dtype is the run's (model.json)."""

    model_dir: str = ""
    seq_len: int | None = None
    batch_size: int = 8
    num_batches: int | None = None
    step: int | None = None


class WholeText:
    """A text file as consecutive windows of ``seq_len + 1`` tokens (stride ``seq_len``), so
    every token after the first is predicted once; the data interface ``evaluate_model`` uses."""

    def __init__(self, path: Path, tokenizer: Any):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"--text {path}: not UTF-8 ({error})") from None
        self.path = path
        self.tokens = np.asarray(tokenizer.encode_ordinary(text) if hasattr(
            tokenizer, "encode_ordinary") else tokenizer.encode(text), np.int32)  # fmt: skip
        self.bytes = len(text.encode("utf-8"))

    def windows(self, seq_len: int) -> int:
        return max(0, (len(self.tokens) - 1) // seq_len)

    def eval_batches(self, batch_size, seq_len, num_batches, *_, **__) -> list[np.ndarray]:
        rows = [
            self.tokens[i * seq_len : i * seq_len + seq_len + 1]
            for i in range(num_batches * batch_size)
        ]
        return [np.stack(rows[b : b + batch_size]) for b in range(0, len(rows), batch_size)]

    def bytes_per_token(self) -> float:
        return self.bytes / max(1, len(self.tokens))


class Split:
    """One split of token shards (the trainer's reader), for ``--split train``/``validation``."""

    def __init__(self, shards: Any, split: str):
        self.shards, self.split = shards, split

    def eval_batches(self, batch_size, seq_len, num_batches, *_, **__) -> list[np.ndarray]:
        from framework.train.input import _GrainIterator

        it = _GrainIterator(self.shards._packed(self.split, batch_size, seq_len, None, 0, 1))
        return [next(it) for _ in range(num_batches)]

    def bytes_per_token(self) -> float | None:
        info = self.shards.manifest["splits"].get(self.split) or {}
        if not info.get("tokens") or not info.get("bytes"):
            return None
        return float(info["bytes"]) / float(info["tokens"])
