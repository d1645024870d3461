"""Shared pieces of the launch tests: a small gin project in a temporary directory.

The gin configurable ``sweeptest.fit`` stands in for a training function, so sweep parsing and
rendering are tested without the trainer; the end-to-end test uses the real one.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import gin

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")


@gin.configurable("fit", module="sweeptest")
def fit(lr: float = 0.0, width: int = 0, activation: str = "gelu", layers: list | None = None):
    """A stand-in training function for gin bindings in tests."""
    return lr, width, activation, layers


BASE_GIN = """\
# Test base run file. Required: MODEL_DIR.
MODEL_DIR = %gin.REQUIRED
TRAIN_STEPS = 6
LEARNING_RATE = 0.1
WIDTH = 8
sweeptest.fit.lr = %LEARNING_RATE
sweeptest.fit.width = %WIDTH
"""


def make_project(root: Path, sweep_toml: str, name: str = "s") -> Path:
    """Write ``base.gin`` and ``sweeps/NAME.toml`` under ``root``; returns the sweep file."""
    (root / "base.gin").write_text(BASE_GIN)
    (root / "sweeps").mkdir(exist_ok=True)
    path = root / "sweeps" / f"{name}.toml"
    path.write_text(textwrap.dedent(sweep_toml))
    return path


def fake_train_command() -> list[str]:
    return [sys.executable, str(FAKE_TRAIN)]
