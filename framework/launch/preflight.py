"""Preflight: compile each run of a sweep for its accelerator before any cloud call.

For a TPU run, ``deepdive compile`` (in a child process: a fresh gin configuration per run)
compiles the run's ``run.gin`` for the slice it asks for and writes ``compile.json`` beside
``task.yaml``; a GPU run (H100, H200 or A100-80GB nodes) compiles for its GPUs the same way when
jax's CUDA plugin is installed here (``pip install 'jax[cuda12]'``), and is skipped, saying so,
when it is not. A run that does not fit is refused with the compiler's one-line verdict, so a
sweep that cannot run is stopped on the laptop, not after the slice is paid for. Runs that differ
only in their run directory compile once: results are cached under the sweep directory by the
text of the run file and the topology.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError

# SkyPilot GPU names -> the compile-only GPU kinds of ``framework/train/topologies.py``
GPU_KINDS = {"H100": "h100", "H100-MEGA": "h100", "H200": "h200", "A100-80GB": "a100"}


def topology_of(
    accelerator: Any, nodes: int, cuda_plugin: bool | None = None
) -> tuple[str | None, str]:
    """The ``deepdive compile --topology`` name of a run's accelerator, or None and why not
    (``cuda_plugin``: whether jax's CUDA plugin is importable; None = look)."""
    if accelerator.kind == "tpu":
        return f"{accelerator.generation}-{accelerator.size}", ""
    kind = GPU_KINDS.get(accelerator.name)
    if kind is None:
        return None, f"no compile-only description of {accelerator.name} GPUs"
    if cuda_plugin is None:
        cuda_plugin = importlib.util.find_spec("jax_cuda12_plugin") is not None
    if not cuda_plugin:
        return None, "jax's CUDA plugin is not installed here: pip install 'jax[cuda12]'"
    return f"{kind}x{accelerator.count}" + (f"x{nodes}" if nodes > 1 else ""), ""


CACHE = ".preflight"


def cache_key(run_gin_text: str, topology: str, num_slices: int) -> str:
    """What decides the compiled program: the run file without its run directory, the slice."""
    lines = [ln for ln in run_gin_text.splitlines() if not ln.lstrip().startswith("MODEL_DIR")]
    text = "\n".join(lines) + f"\n# topology {topology} x{num_slices}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_run(run_gin: Path, root: Path, topology: str, num_slices: int, sweep_dir: Path) -> Path:
    """``compile.json`` beside ``run_gin`` for ``topology``; ConfigError (one line, the
    compiler's verdict) when the run does not fit or does not compile."""
    out = run_gin.parent / "compile.json"
    cached = sweep_dir / CACHE / f"{cache_key(run_gin.read_text(), topology, num_slices)}.json"
    if cached.is_file():
        shutil.copyfile(cached, out)
        return out
    command = [sys.executable, "-m", "framework", "compile", "--gin_file", str(run_gin),
               "--topology", topology, "--num_slices", str(num_slices), "--json", str(out)]  # fmt: skip
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("deepdive")]
        reason = lines[-1] if lines else (result.stderr.strip().splitlines() or ["?"])[-1]
        reason = reason.removeprefix("deepdive: error: ")
        raise ConfigError(f"preflight on {topology}: {reason}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, cached)
    return out
