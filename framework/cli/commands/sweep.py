"""``deepdive sweep``: render, launch and compare sweeps of gin bindings."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from framework.core.errors import ConfigError

HELP = "render, launch and compare sweeps (local, SkyPilot, xpk)"
DESCRIPTION = """Sweeps over gin bindings, from a sweep file experiments/sweeps/NAME.toml.

  render   expand the sweep into runs/NAME/<run_id>/run.gin (+ the backend's launch spec per
           run: task.yaml for skypilot, xpk.sh for xpk) and validate every run.gin in-process
  launch   run the sweep: local (N at a time on this machine, resumable), skypilot (managed
           jobs, `sky jobs launch`), xpk (`xpk workload create` on GKE); --dry_run prints the
           exact commands
  status   a table of every run: state, step, final/best metric, tokens/s
  results  the same as results.md and results.csv, plus PNG plots of the compared metric across
           the grid and of the loss curves, in runs/NAME/

examples:
  deepdive sweep render experiments/sweeps/tiny_lr_width.toml
  deepdive sweep launch runs/tiny_lr_width --backend local --parallel 2
  deepdive sweep status runs/tiny_lr_width
  deepdive sweep results runs/tiny_lr_width
  deepdive sweep render experiments/sweeps/tpu_example.toml --backend skypilot
  deepdive sweep launch runs/tpu_example --backend skypilot --dry_run
  deepdive sweep launch runs/tpu_example --backend xpk --dry_run

A re-launch with the local backend skips completed runs and resumes interrupted ones."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sweep_command", metavar="ACTION")
    render = sub.add_parser("render", help="write runs/NAME/<id>/run.gin and launch specs")
    render.add_argument("sweep_file", help="experiments/sweeps/NAME.toml")
    render.add_argument("--backend", default=None, help="launch spec to render (default: the "
                        "sweep's [launch] backend, else local)")  # fmt: skip
    render.add_argument("--output_dir", default=None, help="sweep directory (default runs/NAME)")
    render.add_argument("--no_validate", action="store_true",
                        help="skip the in-process `deepdive validate` of every run.gin")  # fmt: skip
    render.add_argument("--no_preflight", action="store_true",
                        help="cloud backends: skip compiling each TPU run for its slice "
                        "(compile.json; a run that does not fit is refused)")  # fmt: skip

    launch = sub.add_parser("launch", help="start (or print) the runs of a rendered sweep")
    launch.add_argument("sweep_dir", help="runs/NAME (or a sweep file, rendered first)")
    launch.add_argument("--backend", default=None, help="local | skypilot | xpk (default: the "
                        "sweep's [launch] backend, else local)")  # fmt: skip
    launch.add_argument("--dry_run", action="store_true", help="print the commands, start nothing")
    launch.add_argument("--parallel", type=int, default=None, help="local: runs at a time")
    launch.add_argument("--runs", default=None, help="comma-separated run ids (default: all)")

    status = sub.add_parser("status", help="table of every run's state and metrics")
    status.add_argument("sweep_dir", help="runs/NAME")
    status.add_argument("--format", choices=["text", "markdown", "csv"], default="text")
    status.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="redraw every SECONDS until every run has finished")  # fmt: skip

    results = sub.add_parser("results", help="results.md, results.csv and plots in runs/NAME")
    results.add_argument("sweep_dir", help="runs/NAME")
    results.add_argument("--no_plots", action="store_true")
    parser.set_defaults(_sweep_parser=parser)


def _launcher(name: str, sweep, **overrides):
    from framework.core import discovery
    from framework.core.registry import LAUNCHERS

    # the built-in launchers alone are cheap to import; anything else needs full discovery
    discovery.load_builtin_kind(LAUNCHERS.kind)
    if name not in LAUNCHERS:
        discovery.load_plugins()
    options = dict(sweep.launch.get(name, {})) if isinstance(sweep.launch.get(name), dict) else {}
    options.update({k: v for k, v in overrides.items() if v is not None})
    entry = LAUNCHERS.entry(name)
    try:
        return entry.obj(**options)
    except TypeError as error:
        raise ConfigError(f"{sweep.source} [launch.{name}]: {error}") from None


def _backend_name(args_backend: str | None, sweep) -> str:
    return args_backend or sweep.launch.get("backend") or "local"


def _render(
    sweep_file: str,
    backend: str | None,
    output_dir: str | None,
    validate: bool,
    preflight: bool = True,
):
    from framework.cli.commands import validate as validate_command
    from framework.launch import render
    from framework.launch import sweep as sweep_lib

    sweep = sweep_lib.load(sweep_file)
    name = _backend_name(backend, sweep)
    launcher = _launcher(name, sweep)
    sweep_dir = render.render(
        sweep,
        output_dir,
        launcher=launcher,
        validate=validate_command.validate_run_file if validate else None,
        source_text=Path(sweep_file).read_text(),
        preflight=preflight and name != "local",  # before a cloud call, not before a local run
    )
    return sweep, sweep_dir, name


def _preflight_note(run_dir: Path) -> str:
    """'  (v5e-8: 1.23 GiB per chip of 16.00 GiB, compiled)' when preflight wrote compile.json."""
    import json

    from framework.train.aot import gib

    path = run_dir / "compile.json"
    if not path.is_file():
        return ""
    report = json.loads(path.read_text())
    return (
        f"  ({report['topology']}: {gib(report['per_chip_bytes']['total'])} per chip of "
        f"{gib(report['hbm_bytes_per_chip'])}, compiled)"
    )


def run(args: argparse.Namespace) -> int:
    from framework.launch import results
    from framework.launch import sweep as sweep_lib

    action = getattr(args, "sweep_command", None)
    if action is None:
        args._sweep_parser.print_help()
        return 2
    if action == "render":
        sweep, sweep_dir, name = _render(
            args.sweep_file,
            args.backend,
            args.output_dir,
            not args.no_validate,
            preflight=not args.no_preflight,
        )
        checked = "validated" if not args.no_validate else "not validated"
        print(f"rendered {len(sweep.runs)} run(s) of sweep {sweep.name} into {sweep_dir} "
              f"({checked}; launch spec: {name})")  # fmt: skip
        for r in sweep.runs:
            print(
                f"  {os.path.relpath(sweep_dir / r.run_id / 'run.gin')}{_preflight_note(sweep_dir / r.run_id)}"
            )
        shown = (
            os.path.relpath(sweep_dir)
            if not os.path.relpath(sweep_dir).startswith("..")
            else sweep_dir
        )
        print(f"next: deepdive sweep launch {shown} --backend {name}")
        return 0
    if action == "launch":
        target = Path(args.sweep_dir)
        if target.suffix == ".toml":
            sweep, target, _ = _render(str(target), args.backend, None, True)
        sweep = sweep_lib.load_rendered(target)
        name = _backend_name(args.backend, sweep)
        launcher = (
            _launcher(name, sweep, parallel=args.parallel)
            if name == "local"
            else (_launcher(name, sweep))
        )
        runs = sweep.runs
        if args.runs:
            runs = [sweep.run(r.strip()) for r in args.runs.split(",") if r.strip()]
        for run in runs:
            if not (target / run.run_id / "run.gin").is_file():
                raise ConfigError(
                    f"{target}: run {run.run_id} has no run.gin; render the sweep again"
                )
        return int(launcher.launch(sweep, target, runs, dry_run=args.dry_run) or 0)
    if action == "status":
        sweep = sweep_lib.load_rendered(args.sweep_dir)
        while True:
            rows = results.collect(sweep, args.sweep_dir)
            if args.format == "markdown":
                text = results.markdown(sweep, rows)
            elif args.format == "csv":
                text = results.csv_text(sweep, rows)
            else:
                text = results.terminal_table(sweep, rows)
            if args.watch and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[J")
            print(text, flush=True)
            busy = any(r.state in ("running", "submitted") for r in rows)
            if not args.watch or not busy:
                return 0
            time.sleep(args.watch)
    if action == "results":
        sweep = sweep_lib.load_rendered(args.sweep_dir)
        written = results.write_results(sweep, args.sweep_dir, plots=not args.no_plots)
        print(Path(written["markdown"]).read_text())
        for kind, path in written.items():
            print(f"{kind}: {path}")
        return 0
    raise ConfigError(f"deepdive sweep: unknown action {action!r}")
