"""What every ``launchers`` plugin shares: run paths, per-run state files, names for clouds.

A launcher plugin is a class registered with ``@LAUNCHERS.register("name")`` whose instances have

* ``check(sweep, run, paths)`` — raise ``ValueError`` when the run cannot go to this backend
  (called at render time, so the message names the run);
* ``render_run(sweep, run, paths) -> {file name: text}`` — the launch spec written next to
  ``run.gin`` (a SkyPilot task YAML, an xpk command, ...);
* ``launch(sweep, sweep_dir, runs, dry_run=False) -> int`` — start (or print) the runs; an exit code.

Paths inside specs are relative to the sweep's *root* (the directory ``render`` ran in, which is
SkyPilot's ``workdir`` and xpk's ``--script-dir``), so the rendered files do not depend on where the
project is checked out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from framework.launch.sweep import Run, Sweep

LAUNCH_STATE = "launch.json"


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where a run's files are: ``root`` (absolute) and paths relative to it."""

    root: Path
    sweep_dir: Path  # relative to root when possible
    run_id: str

    @property
    def run_dir(self) -> Path:
        return self.sweep_dir / self.run_id

    @property
    def run_gin(self) -> Path:
        return self.run_dir / "run.gin"

    def absolute(self, path: Path) -> Path:
        return path if path.is_absolute() else self.root / path


def paths_for(sweep: Sweep, sweep_dir: str | Path, run: Run) -> RunPaths:
    """RunPaths of ``run`` in the rendered ``sweep_dir`` (root: where the sweep was rendered)."""
    sweep_dir = Path(sweep_dir).resolve()
    root = sweep_root(sweep, sweep_dir)
    try:
        relative = sweep_dir.relative_to(root)
    except ValueError:
        relative = sweep_dir
    return RunPaths(root=root, sweep_dir=relative, run_id=run.run_id)


def sweep_root(sweep: Sweep, sweep_dir: Path) -> Path:
    """The render root: ``sweep_dir`` minus the relative path recorded at render time."""
    sweep_dir = Path(sweep_dir).resolve()
    relative = Path(sweep.sweep_dir)
    n = len(relative.parts)
    if n and not relative.is_absolute() and sweep_dir.parts[-n:] == relative.parts:
        return Path(*sweep_dir.parts[:-n])
    return Path.cwd()


def cloud_name(*parts: str, max_len: int = 40) -> str:
    """A name clouds accept: lower case ``[a-z0-9-]``, starting with a letter, at most ``max_len``.

    Long names keep their start and get a short hash so that different runs stay different.
    """
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if not text or not text[0].isalpha():
        text = "r-" + text
    if len(text) > max_len:
        digest = hashlib.sha1(text.encode()).hexdigest()[:6]
        text = text[: max_len - 7].rstrip("-") + "-" + digest
    return text


def bucket_model_dir(sweep: Sweep, run: Run) -> str | None:
    """``OUTPUT/NAME/RUN_ID`` when the sweep's output is a bucket (gs://, s3://, ...)."""
    if not sweep.output or "://" not in sweep.output:
        return None
    return f"{sweep.output.rstrip('/')}/{sweep.name}/{run.run_id}"


def split_bucket(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → (``gs://bucket``, ``a/b``)."""
    scheme, rest = uri.split("://", 1)
    bucket, _, path = rest.partition("/")
    return f"{scheme}://{bucket}", path.strip("/")


# ---- per-run launch state (``runs/NAME/<id>/launch.json``) -----------------------------------


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / LAUNCH_STATE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the run's launch state (atomically: write then rename)."""
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    state.update(fields, updated=time.time())
    tmp = run_dir / f".{LAUNCH_STATE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(run_dir / LAUNCH_STATE)
    return state


def process_alive(state: dict[str, Any]) -> bool:
    """Whether the process recorded in ``state`` still runs on this host."""
    pid = state.get("pid")
    if not pid or state.get("host") not in (None, socket.gethostname()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) is not alive
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
