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


def datatrove_python(*modules: str) -> str:
    """The Python of the datatrove reference environment, for tests that compare against it.

    ``$DEEPDIVE_DATATROVE_PYTHON``, else the environment the benchmarks create in deepdive's cache
    directory (``benchmarks/_peer_env.py``). Tests never create it: they skip, saying why, when
    neither is there or when it cannot import ``datatrove`` and ``modules``.
    """
    import pytest

    from benchmarks._peer_env import DATATROVE, can_import, peer_venv, venv_python

    named = os.environ.get(DATATROVE.env_var)
    if named:
        python, source = Path(named), f"${DATATROVE.env_var}"
    else:
        python, source = venv_python(peer_venv(DATATROVE)), "the cached environment"
        if not python.exists():
            pytest.skip(
                f"datatrove is not available: set ${DATATROVE.env_var} to a Python with "
                f"datatrove[processing], or create {python.parent.parent} by running a "
                "benchmarks/*_vs_datatrove.py script once"
            )
    if not python.exists():
        pytest.skip(f"{python} ({source}) does not exist")
    wanted = ("datatrove", *modules)
    if not can_import(python, wanted):
        pytest.skip(f"{python} ({source}) cannot import {', '.join(wanted)}")
    return str(python)
