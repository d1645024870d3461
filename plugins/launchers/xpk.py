"""``xpk``: ``xpk workload create`` commands for GKE TPU and GPU clusters (no xpk dependency).

For each run, ``runs/NAME/<id>/xpk.sh`` holds one ``xpk workload create`` command:

* ``--tpu-type v5litepod-8`` (TPU slices; ``nodes`` → ``--num-slices``, multislice over DCN) or
  ``--device-type h100-80gb-8`` (GPUs; ``nodes`` → ``--num-nodes``), from the same accelerator
  names SkyPilot uses (``tpu-v5litepod-8``, ``H100:8``);
* ``--base-docker-image`` (default ``python:3.11``; xpk adds ``--script-dir``, the render root, to
  it) or a ready ``--docker-image``;
* ``--env MODEL_DIR=gs://...`` (the run's directory in the output bucket) and ``--command`` that
  installs deepdive with the JAX extra for the hardware when the image is a base image, then runs
  ``deepdive train --gin_file runs/NAME/<id>/run.gin --gin.MODEL_DIR="$MODEL_DIR"``.
  With more than one process (a multi-VM TPU slice, several slices or GPU nodes) it adds
  ``--env DEEPDIVE_DISTRIBUTED=auto`` so ``framework/core/distributed.py`` lets JAX auto-detect the
  cluster (GKE TPU slices are detected; multi-node GPU detection is JAX's, not verified here).

Workload names follow xpk's rule: ``[a-z]([-a-z0-9]*[a-z0-9])?``, under 40 characters.
Spot or reserved capacity is a property of the GKE cluster (``xpk cluster create --spot``), not
of a workload; ``max_restarts`` lets the JobSet restart a preempted workload, which then resumes
from its newest checkpoint.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from framework.core.errors import ConfigError
from framework.core.registry import LAUNCHERS
from framework.launch import backend as backend_lib
from framework.launch.sweep import Run, Sweep


@LAUNCHERS.register("xpk")
class XpkLauncher:
    """Render (and, with xpk on PATH, run) ``xpk workload create`` per run.

    Args:
      cluster: the GKE cluster xpk created (required).
      project, zone: Google Cloud project and zone (default: gcloud's configured ones).
      docker_image: a ready image with deepdive installed (then nothing is installed at start).
      base_docker_image: the image xpk adds the script dir to (used when docker_image is None).
      install: what the command installs on a base image: ``"."`` (the script dir) or a pip
        requirement for deepdive; the JAX extra is added.
      max_restarts: JobSet restarts (preemptions, failures).
      priority: xpk priority (very-low .. very-high).
      xpk: the xpk command.
    """

    def __init__(
        self,
        cluster: str | None = None,
        project: str | None = None,
        zone: str | None = None,
        docker_image: str | None = None,
        base_docker_image: str = "python:3.11",
        install: str = ".",
        max_restarts: int = 0,
        priority: str | None = None,
        xpk: str = "xpk",
    ):
        self.cluster = cluster
        self.project = project
        self.zone = zone
        self.docker_image = docker_image
        self.base_docker_image = base_docker_image
        self.install = install
        self.max_restarts = int(max_restarts)
        self.priority = priority
        self.xpk = xpk

    def check(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> None:
        if not self.cluster:
            raise ValueError(
                f'xpk needs a cluster: set cluster = "..." under [launch.xpk] in {sweep.source}'
            )
        acc = run.resources.checked_accelerator()
        if acc is None:
            raise ValueError("xpk needs resources.accelerator (e.g. tpu-v5litepod-8 or H100:8)")
        acc.xpk_device()  # raises ValueError for hardware GKE does not offer
        if backend_lib.bucket_model_dir(sweep, run) is None:
            raise ValueError(
                f'xpk runs write MODEL_DIR to a bucket; set output = "gs://BUCKET/PATH" in '
                f"{sweep.source} (output is {sweep.output!r})"
            )
        if paths.sweep_dir.is_absolute():
            raise ValueError(
                f"the sweep directory {paths.sweep_dir} is outside the directory rendered from "
                f"({paths.root}), which xpk packs as --script-dir; render it below that directory"
            )

    def workload_name(self, sweep: Sweep, run: Run) -> str:
        return backend_lib.cloud_name(sweep.name, run.run_id, max_len=39)

    def train_command(self, run: Run, paths: backend_lib.RunPaths) -> str:
        acc = run.resources.checked_accelerator()
        train = (
            f"deepdive train --gin_file {shlex.quote(str(paths.run_gin))} "
            '--gin.MODEL_DIR="\\"$MODEL_DIR\\""'
        )
        if self.docker_image:
            return train
        target = (
            f".[{acc.jax_extra}]" if self.install == "." else f"{self.install}[{acc.jax_extra}]"
        )
        editable = "-e " if self.install == "." else ""
        return f'pip install {editable}"{target}" && {train}'

    def command(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> list[str]:
        """The ``xpk workload create`` argument list for ``run``."""
        acc = run.resources.checked_accelerator()
        device_flag, device = acc.xpk_device()
        args = [self.xpk, "workload", "create", "--cluster", self.cluster]
        if self.project:
            args += ["--project", self.project]
        zone = self.zone or run.resources.zone
        if zone:
            args += ["--zone", zone]
        args += ["--workload", self.workload_name(sweep, run), device_flag, device]
        count_flag = "--num-slices" if acc.kind == "tpu" else "--num-nodes"
        args += [count_flag, str(run.resources.nodes)]
        if self.docker_image:
            args += ["--docker-image", self.docker_image]
        else:
            args += ["--base-docker-image", self.base_docker_image, "--script-dir", "."]
        if self.max_restarts:
            args += ["--max-restarts", str(self.max_restarts)]
        if self.priority:
            args += ["--priority", self.priority]
        args += ["--env", f"MODEL_DIR={backend_lib.bucket_model_dir(sweep, run)}"]
        if acc.gke_vms > 1 or run.resources.nodes > 1:  # several processes: JAX auto-detection
            args += ["--env", "DEEPDIVE_DISTRIBUTED=auto"]
        args += ["--command", self.train_command(run, paths)]
        return args

    def script(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> str:
        args = self.command(sweep, run, paths)
        # one option (with its value) per line, for reading
        parts: list[str] = [shlex.join(args[:3])]
        i = 3
        while i < len(args):
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                parts.append(shlex.join(args[i : i + 2]))
                i += 2
            else:
                parts.append(shlex.quote(args[i]))
                i += 1
        body = " \\\n  ".join(parts)
        return (
            "#!/bin/sh\n"
            f"# xpk workload for run {run.run_id} of sweep {sweep.name} "
            f"({run.index + 1} of {len(sweep.runs)}).\n"
            f"# Rendered by `deepdive sweep render {sweep.source}`; run it from the directory it\n"
            "# was rendered in (xpk packs that directory into the image as --script-dir).\n"
            f"{body}\n"
        )

    def render_run(self, sweep: Sweep, run: Run, paths: backend_lib.RunPaths) -> dict[str, str]:
        return {"xpk.sh": self.script(sweep, run, paths)}

    def launch(
        self, sweep: Sweep, sweep_dir: str | Path, runs: list[Run], dry_run: bool = False
    ) -> int:
        planned = []
        for run in runs:
            paths = backend_lib.paths_for(sweep, Path(sweep_dir), run)
            self.check(sweep, run, paths)
            paths.absolute(paths.run_dir / "xpk.sh").write_text(self.script(sweep, run, paths))
            planned.append((run, paths, self.command(sweep, run, paths)))
        root = planned[0][1].root if planned else Path.cwd()
        if dry_run:
            print(f"cd {shlex.quote(str(root))}")
            for _run, _paths, cmd in planned:
                print(shlex.join(cmd))
            return 0
        if shutil.which(self.xpk) is None:
            raise ConfigError(
                f"`{self.xpk}` not found (pip install xpk); print the commands with --dry_run"
            )
        failures = 0
        for run, paths, cmd in planned:
            print(f"$ {shlex.join(cmd)}", flush=True)
            code = subprocess.run(cmd, cwd=root).returncode
            failures += code != 0
            backend_lib.write_state(
                paths.absolute(paths.run_dir), backend="xpk",
                state="submitted" if code == 0 else "failed", job=self.workload_name(sweep, run),
                submitted=time.time(), returncode=code,
                model_dir=backend_lib.bucket_model_dir(sweep, run),
            )  # fmt: skip
        if failures:
            print(f"{failures} submission(s) failed", file=sys.stderr)
            return 1
        print(
            f"created {len(planned)} workload(s); follow them with `xpk workload list --cluster {self.cluster}`"
        )
        return 0
