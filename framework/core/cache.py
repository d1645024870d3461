"""deepdive's on-disk cache directory (block-list indexes, compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$DEEPDIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepdive``, else ``~/.cache/deepdive``."""
    if env := os.environ.get("DEEPDIVE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepdive"
