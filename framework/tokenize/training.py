"""The tokenizer training driver behind ``deepdive tokenizer train`` (gin:
``tokenizer.train_tokenizer``): read the texts, let the chosen ``tokenizers`` plugin learn its
vocabulary, save it, and record what happened in ``training.json``.

A plugin may offer ``training_steps(vocab_size) -> (total, unit)`` and accept a ``progress``
callback in ``train`` (a progress bar is shown then), and a ``trainer`` attribute naming its
engine (recorded).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import gin

from framework.core import paths
from framework.core.errors import InputError
from framework.tokenize.files import iter_texts


@gin.configurable("train_tokenizer", module="tokenizer")
def train_tokenizer(
    input: Any = gin.REQUIRED,  # noqa: A002 - the gin macro is INPUT
    output_dir: str = gin.REQUIRED,
    vocab_size: int = gin.REQUIRED,
    tokenizer: Any = gin.REQUIRED,
    txt_split: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``tokenizer`` on the texts of ``input`` and save it into ``output_dir``.

    Args:
      input: glob (or list) of ``*.jsonl[.gz]`` documents, data-stage output dirs or ``*.txt``
        (None for tokenizers that learn nothing, e.g. ``bytes``).
      vocab_size: 256 bytes + merges for byte BPE (specials not counted); the piece count for
        SentencePiece; ignored by ``bytes``.
      txt_split: ``.txt`` files as one text (None), one per ``"line"`` or per ``"paragraph"``.

    Raises InputError when ``input`` holds no text at all: a vocabulary learnt from nothing is
    a mistake, not a result.
    """
    from tqdm import tqdm

    texts = [] if input is None else [t for t in iter_texts(input, txt_split) if t]
    if input is not None and not texts:
        raise InputError(f"INPUT {input!r}: no text to train on (the files are empty)")
    n_bytes = sum(len(t.encode("utf-8", errors="surrogatepass")) for t in texts)
    start = time.perf_counter()
    kwargs: dict[str, Any] = {}
    bar = None
    trainer = getattr(tokenizer, "trainer", None)
    if hasattr(tokenizer, "training_steps"):
        total, unit = tokenizer.training_steps(vocab_size)
        print(
            f"reading {len(texts)} texts ({n_bytes / 1e6:.1f} MB)"
            + (f"; trainer: {trainer}" if trainer else ""),
            file=sys.stderr,
        )
        bar = tqdm(total=total, unit=unit, desc=f"{unit}s", disable=not show_progress)
        kwargs["progress"] = bar.update
    tokenizer.train(texts, vocab_size, **kwargs)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    out = paths.as_path(output_dir)
    paths.save_folder(out, lambda local: tokenizer.save(Path(local)))
    stats: dict[str, Any] = {
        "texts": len(texts),
        "bytes": n_bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(n_bytes / 1e6 / seconds, 3) if seconds > 0 else None,
        "vocab_size": tokenizer.vocab_size,
    }
    if trainer is not None:
        stats["trainer"] = trainer
    learnt = _ordinary_vocab_size(tokenizer)
    if hasattr(tokenizer, "training_steps") and learnt is not None and learnt < vocab_size:
        stats["note"] = (
            f"asked for VOCAB_SIZE {vocab_size}, made {learnt}: the corpus has no more pairs "
            "to merge (a larger corpus gives the rest)"
        )
        print(f"note: {stats['note']}", file=sys.stderr)
    paths.write_text(out / "training.json", json.dumps(stats, indent=2))
    return stats


def _ordinary_vocab_size(tokenizer: Any) -> int | None:
    """Tokens learnt from text (special tokens not counted), where the plugin says."""
    specials = len(getattr(tokenizer, "special_tokens", {}) or {})
    size = getattr(tokenizer, "vocab_size", None)
    return None if size is None else int(size) - specials
