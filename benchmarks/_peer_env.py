"""Where the benchmarks find the Python of a peer they compare against (datatrove).

A peer lives in its own virtual environment, never in deepdive's (its pins would fight ours). Its
interpreter is, in order:

1. the command-line flag (``--datatrove_python PATH``; PATH may also be the environment's folder);
2. the environment variable (``DEEPDIVE_DATATROVE_PYTHON``);
3. a virtual environment in deepdive's cache directory (``<cache>/peers/datatrove``), created on
   first use with ``python -m venv`` and ``pip install`` of the peer's packages, each step printed.

Tests use :func:`peer_venv` to find (never create) the cached environment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from framework.core.cache import cache_dir


@dataclass(frozen=True)
class Peer:
    """A reference implementation run in its own environment: how to find, probe and install it."""

    name: str
    env_var: str
    packages: tuple[str, ...]  # pip requirements installed into a new environment
    modules: tuple[str, ...]  # what must import for it to count as ready; the peer's first


# No datatrove version is pinned anywhere in deepdive; the benchmarks follow its current release.
# The extra packages are what datatrove[processing] leaves out and the benchmarks import
# (HTML cleaning for Trafilatura, a fastText wheel for numpy 2, WARC reading, charset detection).
DATATROVE = Peer(
    name="datatrove",
    env_var="DEEPDIVE_DATATROVE_PYTHON",
    packages=(
        "datatrove[processing]",
        "spacy",
        "lxml_html_clean",
        "fasttext-numpy2-wheel",
        "warcio",
        "faust-cchardet",
        "python-magic",
        "orjson",
    ),
    modules=(
        "datatrove",
        "trafilatura",
        "spacy",
        "fasttext",
        "tldextract",
        "ahocorasick",
        "warcio",
        "cchardet",
        "magic",
        "orjson",
    ),
)


def log(msg: str) -> None:
    """Progress on stderr, so that a benchmark's stdout stays its results."""
    print(msg, file=sys.stderr, flush=True)


def peer_venv(peer: Peer) -> Path:
    """The peer's environment folder in deepdive's cache directory (may not exist yet)."""
    return cache_dir() / "peers" / peer.name


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment folder."""
    return venv / "bin" / "python"


def can_import(python: str | Path, modules: tuple[str, ...]) -> bool:
    """Whether ``python`` imports all of ``modules``."""
    code = "import " + ", ".join(modules)
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def _given(peer: Peer, path: str, source: str) -> Path:
    """A user-named interpreter or environment folder, as an interpreter; exits when it is
    missing or cannot import the peer (it is the user's: never installed into)."""
    python = venv_python(Path(path)) if Path(path).is_dir() else Path(path)
    if not python.exists():
        sys.exit(f"{path} ({source}): no such Python interpreter or virtual environment")
    if not can_import(python, (peer.modules[0],)):
        install = shlex.join([str(python), "-m", "pip", "install", *peer.packages])
        sys.exit(
            f"{python} ({source}) cannot import {peer.modules[0]}; install it there with "
            f"`{install}`, or unset the flag and ${peer.env_var} to use an environment "
            "created in deepdive's cache directory"
        )
    return python


def ensure_venv(peer: Peer, venv: Path) -> Path:
    """Create ``venv`` and install the peer's packages into it, unless it is ready already."""
    python = venv_python(venv)
    if not python.exists():
        log(f"[{peer.name}] creating a virtual environment: {sys.executable} -m venv {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not can_import(python, peer.modules):
        log(f"[{peer.name}] installing into {venv}: pip install {shlex.join(peer.packages)}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", *peer.packages], check=True)
    return python


def peer_python(peer: Peer, requested: str | None = None) -> str:
    """The peer's interpreter: ``requested`` (the flag), else ``$env_var``, else the cached
    environment, created and filled on first use. Named interpreters are used as they are."""
    named = (
        ("--" + peer.name + "_python", requested),
        ("$" + peer.env_var, os.environ.get(peer.env_var)),
    )
    for source, path in named:
        if path:
            python = _given(peer, path, source)
            log(f"[{peer.name}] using {python} (from {source})")
            return str(python)
    python = ensure_venv(peer, peer_venv(peer))
    log(f"[{peer.name}] using {python} (cached environment)")
    return str(python)


def add_peer_argument(parser: argparse.ArgumentParser, peer: Peer, *aliases: str) -> None:
    """Add ``--<peer>_python PATH`` (plus older spellings in ``aliases``) to ``parser``."""
    parser.add_argument(
        f"--{peer.name}_python",
        *aliases,
        dest=f"{peer.name}_python",
        default=None,
        metavar="PATH",
        help=f"Python (or virtual environment folder) with {peer.name} installed; default: "
        f"${peer.env_var}, else {peer.name}'s environment in deepdive's cache directory "
        "(created on first use)",
    )
