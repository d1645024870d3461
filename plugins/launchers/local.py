"""``local``: run a sweep on this machine, N runs at a time, resumable, with a live status table.

Each run is a subprocess ``deepdive train --gin_file runs/NAME/<id>/run.gin
--gin.MODEL_DIR="runs/NAME/<id>"`` (its own MODEL_DIR, its output in ``train.log`` there).
A re-launch skips runs with ``COMPLETED`` and starts the others again; training resumes from the
newest checkpoint in MODEL_DIR, so an interrupted run continues instead of restarting. A run that
another launcher is still running (its pid is alive on this host) is left alone.

Children stay in the launcher's process group, so Ctrl-C (or killing the group) stops them all;
on SIGINT/SIGTERM the launcher stops its children, records them as interrupted and exits 130.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError
from framework.core.registry import LAUNCHERS
from framework.launch import backend as backend_lib
from framework.launch import results
from framework.launch.sweep import Run, Sweep


class _Stop(Exception):
    """Raised by the signal handler to unwind the scheduling loop."""


def default_train_command() -> list[str]:
    """``deepdive train`` from the running interpreter's environment."""
    script = Path(sys.executable).parent / "deepdive"
    if script.exists():
        return [str(script), "train"]
    return [sys.executable, "-m", "framework", "train"]


def _newest_checkpoint(run_dir: Path) -> int | None:
    """The newest finished checkpoint step in ``run_dir/checkpoints`` (orbax: ``<step>/``)."""
    try:
        steps = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    except OSError:
        return None
    return max(steps, default=None)


@LAUNCHERS.register("local")
class LocalLauncher:
    """Run the sweep's runs as local subprocesses, ``parallel`` at a time.

    Args:
      parallel: how many runs at once.
      poll_s: seconds between status refreshes.
      train_command: the command prefix (default ``deepdive train`` of this environment).
      env: extra environment variables for every run.
      live: redraw the status table in place (default: when stdout is a terminal).
    """

    def __init__(
        self,
        parallel: int = 1,
        poll_s: float = 1.0,
        train_command: list[str] | None = None,
        env: dict[str, str] | None = None,
        live: bool | None = None,
    ):
        if int(parallel) < 1:
            raise ConfigError(f"launchers.local: parallel must be at least 1, got {parallel}")
        self.parallel = int(parallel)
        self.poll_s = float(poll_s)
        self.train_command = list(train_command) if train_command else default_train_command()
        self.env = dict(env or {})
        self.live = sys.stdout.isatty() if live is None else live

    # -- render ---------------------------------------------------------------------------------
    def check(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> None:
        """Any run can go to this machine (the accelerator request is for cloud backends)."""

    def command(self, run_dir: Path) -> list[str]:
        run_dir = Path(run_dir).resolve()
        return [
            *self.train_command,
            "--gin_file",
            str(run_dir / "run.gin"),
            f"--gin.MODEL_DIR={json.dumps(str(run_dir))}",
        ]

    def render_run(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> dict[str, str]:
        cmd = shlex.join(self.command(paths.absolute(paths.run_dir)))
        return {"launch_local.sh": f"#!/bin/sh\n# run {run.run_id} of sweep {sweep.name}\n{cmd}\n"}

    # -- launch ---------------------------------------------------------------------------------
    def launch(
        self, sweep: Sweep, sweep_dir: str | Path, runs: list[Run], dry_run: bool = False
    ) -> int:
        sweep_dir = Path(sweep_dir).resolve()
        root = backend_lib.sweep_root(sweep, sweep_dir)
        todo: list[Run] = []
        for run in runs:
            run_dir = sweep_dir / run.run_id
            if (run_dir / "COMPLETED").exists():
                print(f"{run.run_id}: completed, skipped")
                continue
            state = backend_lib.read_state(run_dir)
            if state.get("state") == "running" and backend_lib.process_alive(state):
                print(f"{run.run_id}: already running (pid {state['pid']}), left alone")
                continue
            todo.append(run)
        if dry_run:
            for run in todo:
                print(
                    f"cd {shlex.quote(str(root))} && {shlex.join(self.command(sweep_dir / run.run_id))}"
                )
            return 0
        if not todo:
            print(f"sweep {sweep.name}: nothing to run")
            self._print_table(sweep, sweep_dir, final=True)
            return 0
        return self._schedule(sweep, sweep_dir, root, todo)

    def _start(self, run: Run, sweep: Sweep, sweep_dir: Path, root: Path) -> subprocess.Popen:
        run_dir = sweep_dir / run.run_id
        cmd = self.command(run_dir)
        previous = backend_lib.read_state(run_dir)
        attempt = int(previous.get("attempts", 0)) + 1
        resumed = _newest_checkpoint(run_dir)  # the step training will resume from, or None
        log = open(run_dir / "train.log", "a")  # noqa: SIM115 - handed to the child, closed on exit
        log.write(
            f"\n==== attempt {attempt} ({f'resume from step {resumed}' if resumed is not None else 'start'}) "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(cmd)}\n"
        )
        log.flush()
        env = {
            **os.environ,
            **self.env,
            "DEEPDIVE_SWEEP": sweep.name,
            "DEEPDIVE_RUN_ID": run.run_id,
        }
        proc = subprocess.Popen(
            cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        backend_lib.write_state(
            run_dir,
            backend="local",
            state="running",
            pid=proc.pid,
            host=socket.gethostname(),
            attempts=attempt,
            started=time.time(),
            command=cmd,
            resumed=resumed,
            returncode=None,
        )
        return proc

    def _schedule(self, sweep: Sweep, sweep_dir: Path, root: Path, todo: list[Run]) -> int:
        pending = list(todo)
        active: dict[str, tuple[Run, subprocess.Popen]] = {}
        failed: list[str] = []
        old_handlers = {}

        def stop(signum: int, _frame: Any) -> None:
            raise _Stop(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, stop)
        print(
            f"sweep {sweep.name}: {len(todo)} run(s) to do, {self.parallel} at a time; "
            f"logs in {sweep_dir}/<run>/train.log"
        )
        last_states: dict[str, str] = {}
        try:
            while pending or active:
                while pending and len(active) < self.parallel:
                    run = pending.pop(0)
                    active[run.run_id] = (run, self._start(run, sweep, sweep_dir, root))
                for run_id, (_run, proc) in list(active.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del active[run_id]
                    run_dir = sweep_dir / run_id
                    done = (run_dir / "COMPLETED").exists()
                    state = "completed" if code == 0 and done else "failed"
                    if state == "failed":
                        failed.append(run_id)
                    backend_lib.write_state(
                        run_dir, state=state, returncode=code, ended=time.time()
                    )
                last_states = self._refresh(sweep, sweep_dir, last_states)
                if pending or active:
                    time.sleep(self.poll_s)
        except _Stop as stop_signal:
            signum = stop_signal.args[0]
            print(f"\nsweep {sweep.name}: stopping {len(active)} run(s) (signal {signum})")
            self._stop_children(active, sweep_dir)
            return 130
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        self._print_table(sweep, sweep_dir, final=True)
        if failed:
            print(
                f"sweep {sweep.name}: {len(failed)} run(s) failed: {', '.join(failed)} "
                f"(see {sweep_dir}/<run>/train.log)",
                file=sys.stderr,
            )
            return 1
        return 0

    def _stop_children(self, active: dict, sweep_dir: Path, grace_s: float = 20.0) -> None:
        for _run, proc in active.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + grace_s
        for run_id, (_run, proc) in active.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            backend_lib.write_state(
                sweep_dir / run_id,
                state="interrupted",
                returncode=proc.returncode,
                ended=time.time(),
            )

    # -- display --------------------------------------------------------------------------------
    def _refresh(self, sweep: Sweep, sweep_dir: Path, last: dict[str, str]) -> dict[str, str]:
        rows = results.collect(sweep, sweep_dir)
        if self.live:
            table = results.terminal_table(sweep, rows)
            height = getattr(self, "_drawn_lines", 0)
            if height:
                sys.stdout.write(f"\x1b[{height}F\x1b[J")  # back to the table's top; clear below
            sys.stdout.write(table + "\n")
            sys.stdout.flush()
            self._drawn_lines = table.count("\n") + 1
        else:
            for row in rows:
                if last.get(row.run_id) != row.state and row.state != "pending":
                    metric = "" if row.final is None else f", {sweep.metric} {row.final:.4g}"
                    step = "" if row.step is None else f" at step {row.step}"
                    print(
                        f"[{time.strftime('%H:%M:%S')}] {row.run_id}: {row.state}{step}{metric}",
                        flush=True,
                    )
        return {row.run_id: row.state for row in rows}

    def _print_table(self, sweep: Sweep, sweep_dir: Path, final: bool = False) -> None:
        if self.live and final:
            return  # the live table is already on screen
        print(results.terminal_table(sweep, results.collect(sweep, sweep_dir)), flush=True)
