"""Rendered SkyPilot task YAML and xpk commands against golden files written by hand.

The golden files follow SkyPilot's documented task schema (docs.skypilot.co, "SkyPilot YAML":
name, workdir, num_nodes, resources.{infra, accelerators, accelerator_args.runtime_version,
use_spot, disk_size, job_recovery}, envs, setup, run) and xpk's
``workload create`` flags (--cluster, --workload, --tpu-type/--device-type, --num-slices/--num-nodes,
--base-docker-image/--script-dir or --docker-image, --max-restarts, --env, --command).

SkyPilot's own validation (``sky.Task.from_yaml_config``) runs when SkyPilot is importable here,
or through the interpreter named by DEEPDIVE_SKYPILOT_PYTHON (a separate environment with
``pip install skypilot``); otherwise that test is skipped.
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from framework.cli import app as cli
from tests.launch import helpers

GOLDEN = Path(__file__).with_name("golden")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.gin").write_text(helpers.BASE_GIN)
    (tmp_path / "sweeps").mkdir()
    for name in ("tpu.toml", "gpu.toml"):
        shutil.copy(GOLDEN / name, tmp_path / "sweeps" / name)
    return tmp_path


def render(backend: str, sweep: str) -> Path:
    assert cli.main(["sweep", "render", f"sweeps/{sweep}.toml", "--backend", backend]) == 0
    return Path("runs") / sweep


@pytest.mark.parametrize(
    ("sweep", "run_id", "golden"),
    [
        ("tpu", "lr0.001", "tpu_lr0.001_task.yaml"),
        ("tpu", "v6e", "tpu_v6e_task.yaml"),
        ("gpu", "w64", "gpu_w64_task.yaml"),
    ],  # fmt: skip
)
def test_skypilot_task_yaml_matches_golden(project, sweep, run_id, golden):
    sweep_dir = render("skypilot", sweep)
    assert (sweep_dir / run_id / "task.yaml").read_text() == (GOLDEN / golden).read_text()


def test_skypilot_yaml_has_the_documented_structure(project):
    sweep_dir = render("skypilot", "tpu")
    task = yaml.safe_load((sweep_dir / "lr0.003" / "task.yaml").read_text())
    assert task["resources"]["accelerators"] == "tpu-v5litepod-16"
    assert task["resources"]["accelerator_args"] == {"runtime_version": "v2-alpha-tpuv5-lite"}
    assert task["envs"]["MODEL_DIR"] == "gs://bkt/sweeps/tpu/lr0.003"  # direct, no mount
    assert "file_mounts" not in task
    # the run command, as bash will split it on the VM
    run_line = task["run"].strip().splitlines()[-1]
    env = {
        "DEEPDIVE_RUN_GIN": task["envs"]["DEEPDIVE_RUN_GIN"],
        "MODEL_DIR": task["envs"]["MODEL_DIR"],
    }
    words = shlex.split(run_line.replace("$DEEPDIVE_RUN_GIN", env["DEEPDIVE_RUN_GIN"])
                        .replace("$MODEL_DIR", env["MODEL_DIR"]))  # fmt: skip
    assert words[1:] == [
        "train", "--gin_file", "runs/tpu/lr0.003/run.gin",
        '--gin.MODEL_DIR="gs://bkt/sweeps/tpu/lr0.003"',
    ]  # fmt: skip
    # that binding is what deepdive's own CLI splitting turns into MODEL_DIR
    _rest, bindings, _beam = cli.split_gin_bindings(words[2:])
    assert bindings == ['MODEL_DIR="gs://bkt/sweeps/tpu/lr0.003"']


@pytest.mark.parametrize(
    ("sweep", "run_id", "golden"),
    [("tpu", "lr0.001", "tpu_lr0.001_xpk.sh"), ("gpu", "w128", "gpu_w128_xpk.sh")],
)
def test_xpk_command_matches_golden(project, sweep, run_id, golden):
    sweep_dir = render("xpk", sweep)
    assert (sweep_dir / run_id / "xpk.sh").read_text() == (GOLDEN / golden).read_text()


def test_dry_run_prints_the_exact_commands(project, capsys):
    render("skypilot", "tpu")
    capsys.readouterr()
    assert cli.main(["sweep", "launch", "runs/tpu", "--backend", "skypilot", "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"cd {shlex.quote(str(project))}"
    assert lines[1:] == [
        "sky jobs launch runs/tpu/lr0.001/task.yaml --name tpu-lr0-001 --yes --detach-run",
        "sky jobs launch runs/tpu/lr0.003/task.yaml --name tpu-lr0-003 --yes --detach-run",
        "sky jobs launch runs/tpu/v6e/task.yaml --name tpu-v6e --yes --detach-run",
    ]
    assert cli.main(["sweep", "launch", "runs/tpu", "--backend", "xpk", "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    script = (GOLDEN / "tpu_lr0.001_xpk.sh").read_text().replace("\\\n", " ")  # continuations
    golden_args = shlex.split(script, comments=True)
    assert shlex.split(lines[1]) == golden_args
    assert len(lines) == 4  # cd + one xpk command per run
    assert "--tpu-type v6e-8" in lines[-1] and "--env DEEPDIVE_DISTRIBUTED=auto" in lines[-1]


def test_backend_requirements_fail_at_render_naming_the_run(project):
    text = (GOLDEN / "tpu.toml").read_text().replace('output = "gs://bkt/sweeps"\n', "")
    (project / "sweeps" / "tpu.toml").write_text(text)
    with pytest.raises(Exception, match=r"run lr0.001: skypilot runs write MODEL_DIR to a bucket"):
        from framework.launch import render as render_lib
        from framework.launch import sweep as sweep_lib
        from plugins.launchers.skypilot import SkyPilotLauncher

        render_lib.render(sweep_lib.load("sweeps/tpu.toml"), launcher=SkyPilotLauncher())
    text = (GOLDEN / "tpu.toml").read_text().replace("tpu-v5litepod-16", "tpu-v5litepod-4")
    (project / "sweeps" / "tpu.toml").write_text(text)
    assert cli.main(["sweep", "render", "sweeps/tpu.toml", "--backend", "xpk"]) == 2


def _skypilot_python() -> list[str] | None:
    try:
        import sky  # noqa: F401

        return []
    except ImportError:
        python = os.environ.get("DEEPDIVE_SKYPILOT_PYTHON")
        return [python] if python and Path(python).exists() else None


def test_rendered_tasks_validate_with_skypilots_own_schema(project, tmp_path):
    how = _skypilot_python()
    if how is None:
        pytest.skip("SkyPilot is not installed (pip install 'deepdive[launch]') and "
                    "DEEPDIVE_SKYPILOT_PYTHON is not set")  # fmt: skip
    files = [render("skypilot", "tpu"), render("skypilot", "gpu")]
    tasks = sorted(str(p) for d in files for p in d.glob("*/task.yaml"))
    assert len(tasks) == 5
    check = (
        "import sys, yaml, sky\n"
        "for path in sys.argv[1:]:\n"
        "    task = sky.Task.from_yaml_config(yaml.safe_load(open(path)))\n"
        "    print(path, task.num_nodes, sorted(str(r.accelerators) for r in task.resources))\n"
    )
    if how == []:
        import sky

        for path in tasks:
            task = sky.Task.from_yaml_config(yaml.safe_load(open(path)))
            assert task.envs["MODEL_DIR"].startswith("gs://")
        return
    env = {**os.environ, "HOME": str(tmp_path / "home")}  # SkyPilot writes ~/.sky
    out = subprocess.run([*how, "-c", check, *tasks], capture_output=True, text=True, env=env,
                         timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 5
    assert any("{'H100': 8}" in line and " 2 " in line for line in lines)
    assert any("{'tpu-v6e-8': 1}" in line for line in lines)
