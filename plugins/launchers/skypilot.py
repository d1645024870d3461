"""``skypilot``: one SkyPilot managed-job task YAML per run, submitted with ``sky jobs launch``.

For each run, ``runs/NAME/<id>/task.yaml`` holds:

* ``resources``: the accelerator (``tpu-v5litepod-8``, ``tpu-v6e-8``, ``H100:8``; checked against
  deepdive's allow-list because SkyPilot does not check names offline), the TPU VM runtime
  version for TPUs (``accelerator_args.runtime_version``), spot, ``infra`` (cloud/region/zone),
  disk size and, when asked, job recovery on errors;
* ``num_nodes``: GPU nodes (a TPU slice is one SkyPilot node whatever its host count; ask for a
  bigger slice instead of more nodes);
* ``workdir: .`` (the render root, synced to every node) and ``MODEL_DIR`` set to the run's
  ``gs://`` URL, used directly (no bucket mount): orbax writes each checkpoint straight to GCS
  and commits it only once every file is there, ``metrics.jsonl`` and the run directory's
  ``lease.json`` reach the bucket when written, and a recovered job on a new VM resumes from the
  bucket's newest checkpoint at once. A ``MOUNT_CACHED`` mount uploads behind the writer's
  back, so a preempted VM could lose files of a checkpoint orbax had already committed;
* ``setup``: Python 3.11 through uv, then ``deepdive`` with the JAX extra for the hardware
  (``.[tpu]`` → ``jax[tpu]``, ``.[cuda12]`` → ``jax[cuda12]``);
* ``run``: ``deepdive train --gin_file runs/NAME/<id>/run.gin --gin.MODEL_DIR="$MODEL_DIR"``.
  On several nodes SkyPilot sets ``SKYPILOT_NODE_IPS``, ``SKYPILOT_NODE_RANK`` and
  ``SKYPILOT_NUM_NODES`` on every node; ``framework/core/distributed.py`` reads them to call
  ``jax.distributed.initialize`` (coordinator: the first IP, port ``DEEPDIVE_COORDINATOR_PORT``).
  A multi-host TPU slice is a single SkyPilot node whose hosts all run the command; there the task
  sets ``DEEPDIVE_DISTRIBUTED=auto`` so JAX discovers the slice's hosts itself.

Everything except the submission works without SkyPilot installed (``pip install 'deepdive[launch]'``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError
from framework.core.registry import LAUNCHERS
from framework.launch import backend as backend_lib
from framework.launch.sweep import Run, Sweep

COORDINATOR_PORT = 8476


def _scalar(value: Any) -> str:
    """A YAML scalar: plain when unambiguous, else double-quoted (JSON strings are valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    plain_ok = (
        text
        and (text[0].isalnum() or text[0] == "/")
        and all(c.isalnum() or c in "-_./:" for c in text)
        and ": " not in text
        and text.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "~")
        and not _looks_numeric(text)
    )
    return text if plain_ok else json.dumps(text)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _block(script: str, indent: str = "  ") -> str:
    return "|\n" + "\n".join(f"{indent}{line}" if line else "" for line in script.splitlines())


@LAUNCHERS.register("skypilot")
class SkyPilotLauncher:
    """Render and submit SkyPilot managed jobs.

    Args:
      install: what ``setup`` installs: ``"."`` (the synced workdir, editable) or a pip
        requirement for deepdive (``"deepdive==0.1.0"``); the JAX extra is added.
      python: the Python version uv provides on the VM.
      max_restarts_on_errors: managed-job restarts when the run itself fails (preemptions are
        always recovered).
      recovery_strategy: SkyPilot's job recovery strategy (``EAGER_NEXT_REGION``, ``FAILOVER``);
        None keeps SkyPilot's default.
      envs: extra environment variables for the run.
      sky: the SkyPilot command.
    """

    def __init__(
        self,
        install: str = ".",
        python: str = "3.11",
        max_restarts_on_errors: int = 0,
        recovery_strategy: str | None = None,
        envs: dict[str, str] | None = None,
        sky: str = "sky",
    ):
        self.install = install
        self.python = python
        self.max_restarts_on_errors = int(max_restarts_on_errors)
        self.recovery_strategy = recovery_strategy
        self.envs = dict(envs or {})
        self.sky = sky

    # -- render ---------------------------------------------------------------------------------
    def check(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> None:
        acc = run.resources.checked_accelerator()
        if acc is None:
            raise ValueError("skypilot needs resources.accelerator (e.g. tpu-v6e-8 or H100:8)")
        if acc.kind == "tpu" and run.resources.nodes != 1:
            raise ValueError(
                f"{acc.name} is one SkyPilot node; nodes = {run.resources.nodes} is not possible "
                f"(ask for a bigger slice, e.g. tpu-{acc.generation}-{acc.size * run.resources.nodes})"
            )
        if backend_lib.bucket_model_dir(sweep, run) is None:
            raise ValueError(
                f'skypilot runs write MODEL_DIR to a bucket; set output = "gs://BUCKET/PATH" in '
                f"{sweep.source} (output is {sweep.output!r})"
            )
        if paths.sweep_dir.is_absolute():
            raise ValueError(
                f"the sweep directory {paths.sweep_dir} is outside the directory rendered from "
                f"({paths.root}), which SkyPilot syncs as the workdir; render it below that directory"
            )

    def model_dir(self, sweep: Sweep, run: Run) -> str:
        return backend_lib.bucket_model_dir(sweep, run)

    def job_name(self, sweep: Sweep, run: Run) -> str:
        return backend_lib.cloud_name(sweep.name, run.run_id, max_len=60)

    def task(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> str:
        """The task YAML text (fields in the order of SkyPilot's YAML reference)."""
        res = run.resources
        acc = res.checked_accelerator()
        infra = "/".join(p for p in (res.cloud or ("gcp" if acc.kind == "tpu" else None),
                                     res.region, res.zone) if p)  # fmt: skip
        if (res.region or res.zone) and not res.cloud and acc.kind != "tpu":
            raise ValueError('resources.region/zone need resources.cloud (e.g. cloud = "gcp")')
        lines = [
            f"# SkyPilot managed job: run {run.run_id} of sweep {sweep.name} "
            f"({run.index + 1} of {len(sweep.runs)}).",
            f"# Rendered by `deepdive sweep render {sweep.source}`; submit it from the directory",
            "# it was rendered in (SkyPilot syncs that directory as the workdir):",
            f"#   {shlex.join(self.launch_command(sweep, run, paths))}",
            f"name: {_scalar(self.job_name(sweep, run))}",
            "workdir: .",
            f"num_nodes: {res.nodes}",
            "resources:",
        ]
        if infra:
            lines.append(f"  infra: {_scalar(infra)}")
        lines.append(f"  accelerators: {_scalar(acc.skypilot)}")
        if acc.kind == "tpu":
            lines += [
                "  accelerator_args:",
                f"    runtime_version: {_scalar(res.tpu_runtime_version)}",
            ]
        if res.cpus:
            lines.append(f"  cpus: {_scalar(str(res.cpus))}")
        if res.memory:
            lines.append(f"  memory: {_scalar(str(res.memory))}")
        lines.append(f"  use_spot: {_scalar(bool(res.spot))}")
        if res.disk_size:
            lines.append(f"  disk_size: {int(res.disk_size)}")
        if self.max_restarts_on_errors or self.recovery_strategy:
            lines.append("  job_recovery:")
            if self.recovery_strategy:
                lines.append(f"    strategy: {_scalar(self.recovery_strategy)}")
            if self.max_restarts_on_errors:
                lines.append(f"    max_restarts_on_errors: {self.max_restarts_on_errors}")
        lines += [
            "envs:",
            f"  DEEPDIVE_RUN_GIN: {_scalar(str(paths.run_gin))}",
            f"  MODEL_DIR: {_scalar(self.model_dir(sweep, run))}",
        ]
        if res.nodes > 1:  # GPU nodes: distributed.py reads SKYPILOT_NODE_IPS/RANK/NUM_NODES
            lines.append(f"  DEEPDIVE_COORDINATOR_PORT: {_scalar(str(COORDINATOR_PORT))}")
        if acc.tpu_vm_hosts > 1:  # a multi-host slice is one SkyPilot node: JAX finds its hosts
            lines.append("  DEEPDIVE_DISTRIBUTED: auto")
        for key, value in sorted(self.envs.items()):
            lines.append(f"  {key}: {_scalar(str(value))}")
        lines.append("setup: " + _block(self.setup_script(acc.jax_extra)))
        lines.append("run: " + _block(self.run_script()))
        return "\n".join(lines) + "\n"

    def setup_script(self, extra: str) -> str:
        target = f".[{extra}]" if self.install == "." else f"{self.install}[{extra}]"
        editable = "-e " if self.install == "." else ""
        return "\n".join(
            [
                "set -euo pipefail",
                "command -v uv >/dev/null 2>&1 || curl -LsSf https://astral.sh/uv/install.sh | sh",
                'export PATH="$HOME/.local/bin:$PATH"',
                f"uv venv --allow-existing --python {self.python} ~/deepdive-venv",
                f"uv pip install --python ~/deepdive-venv/bin/python {editable}{shlex.quote(target)}",
            ]
        )

    def run_script(self) -> str:
        return "\n".join(
            [
                "set -euo pipefail",
                '~/deepdive-venv/bin/deepdive train --gin_file "$DEEPDIVE_RUN_GIN" --gin.MODEL_DIR="\\"$MODEL_DIR\\""',
            ]
        )

    def render_run(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> dict[str, str]:
        return {"task.yaml": self.task(sweep, run, paths)}

    # -- launch ---------------------------------------------------------------------------------
    def launch_command(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> list[str]:
        return [
            self.sky, "jobs", "launch", str(paths.run_dir / "task.yaml"),
            "--name", self.job_name(sweep, run), "--yes", "--detach-run",
        ]  # fmt: skip

    def launch(
        self, sweep: Sweep, sweep_dir: str | Path, runs: list[Run], dry_run: bool = False
    ) -> int:
        sweep_dir = Path(sweep_dir)
        planned = []
        for run in runs:
            paths = backend_lib.paths_for(sweep, sweep_dir, run)
            self.check(sweep, run, paths)
            task_file = paths.absolute(paths.run_dir / "task.yaml")
            task_file.write_text(self.task(sweep, run, paths))
            planned.append((run, paths, self.launch_command(sweep, run, paths)))
        root = planned[0][1].root if planned else Path.cwd()
        if dry_run:
            print(f"cd {shlex.quote(str(root))}")
            for _run, _paths, cmd in planned:
                print(shlex.join(cmd))
            return 0
        if shutil.which(self.sky) is None:
            raise ConfigError(
                f"`{self.sky}` not found: install SkyPilot with pip install 'deepdive[launch]' "
                "(or print the commands with --dry_run)"
            )
        failures = 0
        for run, paths, cmd in planned:
            print(f"$ {shlex.join(cmd)}", flush=True)
            code = subprocess.run(cmd, cwd=root).returncode
            state = "submitted" if code == 0 else "failed"
            failures += code != 0
            backend_lib.write_state(
                paths.absolute(paths.run_dir), backend="skypilot", state=state,
                job=self.job_name(sweep, run), submitted=time.time(), returncode=code,
                model_dir=backend_lib.bucket_model_dir(sweep, run),
            )  # fmt: skip
        if failures:
            print(f"{failures} submission(s) failed", file=sys.stderr)
            return 1
        print(f"submitted {len(planned)} job(s); follow them with `sky jobs queue`")
        return 0
