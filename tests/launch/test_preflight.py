"""Sweep preflight: every TPU run of a cloud sweep is compiled for its slice before launch;
compile.json lands beside task.yaml, and a sweep with a run that cannot fit is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from framework.cli import app as cli

pytest.importorskip("libtpu", reason="the tpu extra (libtpu) is not installed")
REPO = Path(__file__).resolve().parents[2]

SWEEP = """
name = "pf"
gin_files = ["base/train.gin", "models/gpt2_tiny.gin", "mesh/tpu_v5e_8.gin"]
run_id = "b{BATCH_SIZE}"
output = "gs://bucket/sweeps"
[bindings]
TRAIN_STEPS = 10
SEQ_LEN = 128
[grid]
BATCH_SIZE = %s
[resources]
accelerator = "tpu-v5litepod-8"
[launch]
backend = "skypilot"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cloud_render_compiles_each_run_for_its_slice(project, capsys):
    (project / "pf.toml").write_text(SWEEP % "[8, 16]")
    assert cli.main(["sweep", "render", "pf.toml", "--backend", "skypilot"]) == 0
    out = capsys.readouterr().out
    for run_id, batch in (("b8", 8), ("b16", 16)):
        report = json.loads((project / "runs/pf" / run_id / "compile.json").read_text())
        assert report["chips"] == 8 and report["fits"] and report["tokens_per_step"] == batch * 128
        assert (project / "runs/pf" / run_id / "task.yaml").is_file()
    assert "GiB per chip of 16.00 GiB, compiled" in out or "MiB per chip of 16.00 GiB" in out


def test_a_run_that_cannot_fit_refuses_the_sweep_in_one_line(project, capsys):
    (project / "pf.toml").write_text(SWEEP % "[8, 65536]")
    assert cli.main(["sweep", "render", "pf.toml", "--backend", "skypilot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run b65536" in err[0] and "does not fit" in err[0]
    assert "GiB per chip" in err[0]


def test_no_preflight_skips_the_compile(project):
    (project / "pf.toml").write_text(SWEEP % "[65536]")
    argv = ["sweep", "render", "pf.toml", "--backend", "skypilot", "--no_preflight"]
    assert cli.main(argv) == 0
    assert not (project / "runs/pf/b65536/compile.json").exists()


def test_gpu_runs_compile_for_their_gpus_when_jax_can_describe_them():
    from framework.launch import accelerators
    from framework.launch.preflight import topology_of

    h100 = accelerators.parse("H100:8")
    assert topology_of(h100, 1, cuda_plugin=True) == ("h100x8", "")
    assert topology_of(h100, 2, cuda_plugin=True) == ("h100x8x2", "")  # two nodes
    topology, why = topology_of(h100, 1, cuda_plugin=False)
    assert topology is None and "pip install 'jax[cuda12]'" in why
    assert topology_of(accelerators.parse("L4:1"), 1, cuda_plugin=True)[0] is None
    assert topology_of(accelerators.parse("tpu-v5litepod-16"), 1) == ("v5litepod-16", "")
