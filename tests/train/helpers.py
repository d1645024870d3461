"""Shared set-up for trainer tests: gin bindings for a tiny run and reading metrics."""

from __future__ import annotations

import json
from pathlib import Path

TINY = [
    "train.model = @models.tiny_test_lm()",
    "DATA = @data.synthetic()",
    "data.synthetic.vocab_size = 64",
    "SEQ_LEN = 16",
    "BATCH_SIZE = 8",
    "WARMUP_STEPS = 1",
    "LEARNING_RATE = 1e-2",
    "EVAL_EVERY = 0",
    "train.log_every = 1",
    "train.progress = False",
]


def bindings(model_dir: Path, *extra: str) -> list[str]:
    return [f'MODEL_DIR = "{model_dir}"', *TINY, *extra]


def losses(model_dir: Path) -> list[tuple[int, float]]:
    rows = [
        json.loads(line) for line in (Path(model_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    return [(r["step"], r["loss"]) for r in rows]
