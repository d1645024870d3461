"""Render a sweep: ``runs/NAME/<run_id>/run.gin`` plus the chosen backend's launch spec per run.

``run.gin`` includes the sweep's base gin files and writes the run's bindings as gin lines (no
shell quoting anywhere). It sets ``MODEL_DIR`` to the run's own directory, so
``deepdive validate --gin_file runs/NAME/<id>/run.gin`` and ``deepdive train --gin_file ...`` work
as they are; backends that write elsewhere (a bucket) pass ``--gin.MODEL_DIR=...`` on top.

Every rendered ``run.gin`` is validated in-process with the same code path as
``deepdive validate`` (parse, build every plugin, run the command checks). Any problem — a base
file that does not exist, a binding gin rejects, an accelerator the allow-list does not know, a
run the backend cannot take — fails the render with a message naming the run and the problem.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gin

from framework.core import config
from framework.core.errors import ConfigError
from framework.launch import backend as backend_lib
from framework.launch.sweep import Run, Sweep, save, to_gin


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def include_path(path: Path, root: Path) -> str:
    """How ``run.gin`` names a base file: relative to experiments/, else to the root, else absolute."""
    for base in (config.EXPERIMENTS_DIR.resolve(), root.resolve()):
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            continue
    return str(path.resolve())


def resolve_base_files(run: Run, root: Path) -> list[Path]:
    resolved = []
    with _cwd(root):
        for name in run.gin_files:
            try:
                resolved.append(config.resolve_gin_file(name))
            except ConfigError as error:
                raise ConfigError(f"base {error}") from None
    return resolved


def run_gin_text(sweep: Sweep, run: Run, includes: list[str], model_dir: str) -> str:
    """The text of ``run.gin``: a header, the includes, fixed then varied bindings, MODEL_DIR."""
    lines = [
        f"# Run {run.run_id} of sweep {sweep.name} ({run.index + 1} of {len(sweep.runs)}).",
        f"# Rendered by `deepdive sweep render {sweep.source}`: edit the sweep file, not this one.",
        "",
    ]
    lines += [f"include '{name}'" for name in includes]
    fixed = {k: v for k, v in run.bindings.items() if k not in run.varied}
    if fixed:
        lines += ["", "# the same in every run of the sweep"]
        lines += [f"{name} = {to_gin(value)}" for name, value in fixed.items()]
    if run.varied:
        lines += ["", "# this run"]
        lines += [f"{name} = {to_gin(value)}" for name, value in run.varied.items()]
    if "MODEL_DIR" not in run.bindings:
        lines += ["", "# the run directory (backends writing to a bucket override it)"]
        lines += [f"MODEL_DIR = {to_gin(model_dir)}"]
    return "\n".join(lines) + "\n"


# ``(run.gin, render root, extra bindings) -> facts``: ``{"train_steps": int | None, "trains":
# bool}`` (whether the run configures ``deepdive train``; preflight compiles only those)
Validator = Callable[[Path, Path, list[str]], dict[str, Any]]


def target_device_bindings(run: Run) -> list[str]:
    """For a run bound to an accelerator: check the mesh against *its* device count.

    The mesh check of ``deepdive validate`` compares the mesh with the devices it sees; rendering
    a TPU sweep on a laptop sees one CPU. ``sharding.MeshConfig.num_devices`` (bound for the
    validation only, never written to run.gin) makes it check against the target instead.
    """
    acc = run.resources.checked_accelerator()
    if acc is None:
        return []
    try:
        gin.config._REGISTRY.get_match("sharding.MeshConfig")  # noqa: SLF001
    except Exception:  # noqa: BLE001 - no trainer mesh in this project: nothing to check
        return []
    return [f"sharding.MeshConfig.num_devices={acc.jax_devices * run.resources.nodes}"]


def render(
    sweep: Sweep,
    sweep_dir: str | Path | None = None,
    launcher: Any | None = None,
    validate: Validator | None = None,
    source_text: str | None = None,
    preflight: bool = False,
) -> Path:
    """Write the sweep into ``sweep_dir`` (default ``runs/NAME``); returns the sweep directory.

    The current directory is the render root (SkyPilot's workdir, xpk's script dir). Raises
    ConfigError naming the first failing run (and how many others failed) on any problem.
    ``validate``: checks each rendered ``run.gin`` as ``deepdive validate`` would (the command
    layer passes it; None renders without checking). ``preflight``: compile each TPU run for
    its slice and refuse one that does not fit (``framework/launch/preflight.py``).
    """
    root = Path.cwd().resolve()
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else Path("runs") / sweep.name
    sweep_dir = sweep_dir.resolve()
    try:
        sweep.sweep_dir = str(sweep_dir.relative_to(root))
    except ValueError:
        sweep.sweep_dir = str(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    errors: list[tuple[str, str]] = []
    for run in sweep.runs:
        try:
            _render_run(sweep, run, sweep_dir, root, launcher, validate, preflight)
        except (ConfigError, ValueError) as error:
            errors.append((run.run_id, str(error)))
    if errors:
        run_id, message = errors[0]
        more = ""
        if len(errors) > 1:
            more = (
                f" (and {len(errors) - 1} more failing runs: {', '.join(r for r, _ in errors[1:])})"
            )
        raise ConfigError(f"sweep {sweep.name}: run {run_id}: {message}{more}")
    save(sweep, sweep_dir)
    if source_text is not None:
        (sweep_dir / "sweep.toml").write_text(source_text)
    return sweep_dir


def _render_run(
    sweep: Sweep,
    run: Run,
    sweep_dir: Path,
    root: Path,
    launcher: Any,
    validate: Validator | None,
    preflight: bool = False,
) -> None:
    run.resources.checked_accelerator()  # the allow-list (already checked when loading)
    includes = [include_path(p, root) for p in resolve_base_files(run, root)]
    paths = backend_lib.paths_for(sweep, sweep_dir, run)
    run_dir = sweep_dir / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    model_dir = str(paths.run_dir)
    run_gin = run_dir / "run.gin"
    run_gin.write_text(run_gin_text(sweep, run, includes, model_dir))
    trains = True  # unknown without validation: let the compile say
    if validate is not None:
        facts = validate(run_gin, root, target_device_bindings(run))
        run.train_steps = facts["train_steps"]
        trains = facts.get("trains", True)
    accelerator = run.resources.checked_accelerator()
    if preflight and trains and accelerator is not None:
        from framework.launch import preflight as preflight_lib

        topology, why_not = preflight_lib.topology_of(accelerator, run.resources.nodes)
        if topology is None:
            print(f"run {run.run_id}: preflight skipped ({why_not})")
        else:
            slices = run.resources.nodes if accelerator.kind == "tpu" else 1
            preflight_lib.compile_run(run_gin, root, topology, slices, sweep_dir)
    if launcher is not None:
        launcher.check(sweep, run, paths)
        for name, text in launcher.render_run(sweep, run, paths).items():
            (run_dir / name).write_text(text)
