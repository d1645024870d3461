"""The one place tests find ``../shared`` (real corpora and references; never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """``$DEEPDIVE_SHARED``, else the first ``shared/`` beside the repository or above it."""
    env = os.environ.get("DEEPDIVE_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in [REPO_ROOT, *REPO_ROOT.parents]:
        candidate = parent / "shared"
        if (candidate / "corpora").is_dir():
            return candidate
    return None


def corpus(*parts: str) -> Path:
    """A path under ``shared/corpora`` (skips the test when the shared folder is absent)."""
    import pytest

    base = shared_dir()
    if base is None:
        pytest.skip("../shared/corpora is not available")
    return base.joinpath("corpora", *parts)
