"""Rendering: run.gin per run (read back by gin), validation, errors naming the run."""

import gin
import pytest

from framework.cli.commands.validate import validate_run_file
from framework.core import config
from framework.core.errors import ConfigError
from framework.launch import render, sweep
from tests.launch import helpers

SWEEP = """\
name = "s"
gin_files = ["base.gin"]
run_id = "lr{LEARNING_RATE}-w{WIDTH}"
metric = "val_loss"

[bindings]
TRAIN_STEPS = 4
"sweeptest.fit.activation" = "relu"

[grid]
LEARNING_RATE = [1e-3, 3e-4]
WIDTH = [16, 32]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_render_writes_one_run_gin_per_run_that_gin_reads_back(project):
    path = helpers.make_project(project, SWEEP)
    s = sweep.load(path)
    sweep_dir = render.render(s, launcher=None, validate=validate_run_file)
    assert sweep_dir == project / "runs" / "s"
    ids = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert ids == ["lr0.0003-w16", "lr0.0003-w32", "lr0.001-w16", "lr0.001-w32"]
    text = (sweep_dir / "lr0.0003-w32" / "run.gin").read_text()
    assert "include 'base.gin'" in text
    # gin itself (not our code) reads the run file back: the run's values win over base.gin
    config.parse([str(sweep_dir / "lr0.0003-w32" / "run.gin")])
    assert helpers.fit() == (3e-4, 32, "relu", None)
    assert gin.query_parameter("MODEL_DIR/macro.value") == "runs/s/lr0.0003-w32"
    assert [r.train_steps for r in s.runs] == [4, 4, 4, 4]
    # the expanded sweep and its source are kept for launch/status/results
    again = sweep.load_rendered(sweep_dir)
    assert [r.run_id for r in again.runs] == [r.run_id for r in s.runs]
    assert again.runs[1].bindings == s.runs[1].bindings


def test_validate_command_accepts_every_rendered_run(project):
    from framework.cli import app as cli

    path = helpers.make_project(project, SWEEP)
    sweep_dir = render.render(sweep.load(path), validate=validate_run_file)
    for run_gin in sorted(sweep_dir.glob("*/run.gin")):
        assert cli.main(["validate", "--gin_file", str(run_gin)]) == 0


def test_a_binding_gin_rejects_fails_naming_the_run(project):
    bad = SWEEP + '\n[[runs]]\nid = "typo"\nbindings = { "sweeptest.fit.widht" = 3 }\n'
    path = helpers.make_project(project, bad)
    with pytest.raises(ConfigError) as info:
        render.render(sweep.load(path), validate=validate_run_file)
    message = str(info.value)
    assert message.startswith("sweep s: run typo: ")
    assert "has no parameter 'widht'" in message and "did you mean 'width'" in message


def test_an_unknown_configurable_fails_naming_the_run(project):
    bad = SWEEP.replace('"sweeptest.fit.activation"', '"sweeptest.fitt.activation"')
    path = helpers.make_project(project, bad)
    with pytest.raises(ConfigError, match=r"sweep s: run lr0.001-w16: .*unknown configurable "
                       r"'sweeptest.fitt'.*\(and 3 more failing runs"):  # fmt: skip
        render.render(sweep.load(path), validate=validate_run_file)


def test_a_missing_base_file_fails_naming_the_run_and_the_places_searched(project):
    bad = SWEEP.replace('gin_files = ["base.gin"]', 'gin_files = ["base.gin", "models/nope.gin"]')
    path = helpers.make_project(project, bad)
    with pytest.raises(ConfigError, match=r"sweep s: run lr0.001-w16: base gin file "
                       r"'models/nope.gin' not found; searched: "):  # fmt: skip
        render.render(sweep.load(path), validate=validate_run_file)


def test_an_unknown_accelerator_fails_before_anything_is_written(project):
    bad = SWEEP + '\n[resources]\naccelerator = "tpu-v5e-8"\n'
    path = helpers.make_project(project, bad)
    with pytest.raises(ConfigError, match=r"\[resources\]: unknown accelerator 'tpu-v5e-8'"):
        sweep.load(path)
    assert not (project / "runs").exists()


def test_unset_required_macro_is_caught_by_validation(project):
    (project / "needs.gin").write_text("# Required: DATA.\nDATA = %gin.REQUIRED\n")
    bad = SWEEP.replace('gin_files = ["base.gin"]', 'gin_files = ["base.gin", "needs.gin"]')
    path = helpers.make_project(project, bad)
    with pytest.raises(ConfigError, match=r"run lr0.001-w16: required macro not set: DATA"):
        render.render(sweep.load(path), validate=validate_run_file)


def test_cli_render_then_status(project, capsys):
    from framework.cli import app as cli

    path = helpers.make_project(project, SWEEP)
    assert cli.main(["sweep", "render", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rendered 4 run(s) of sweep s" in out
    assert (project / "runs" / "s" / "sweep.toml").read_text() == path.read_text()
    assert cli.main(["sweep", "status", "runs/s", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("run,state,step,LEARNING_RATE,WIDTH,final val_loss")
    assert all(",pending," in line for line in lines[1:]) and len(lines) == 5


def test_cli_errors_are_one_line_exit_2(project, capsys):
    from framework.cli import app as cli

    bad = SWEEP + '\n[resources]\naccelerator = "H100:3x"\n'
    path = helpers.make_project(project, bad)
    assert cli.main(["sweep", "render", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "H100:3x" in err


@pytest.mark.parametrize("name", ["tiny_lr_width", "tpu_example", "gpu_example"])
def test_shipped_sweeps_render_and_validate(name, tmp_path, monkeypatch):
    from framework.cli import app as cli

    monkeypatch.chdir(tmp_path)
    path = config.EXPERIMENTS_DIR / "sweeps" / f"{name}.toml"
    assert cli.main(["sweep", "render", str(path)]) == 0
    s = sweep.load_rendered(tmp_path / "runs" / name)
    assert all(r.train_steps for r in s.runs)


def test_trainer_checks_run_against_the_target_devices(tmp_path, monkeypatch):
    # 2 nodes x 8 H100 = 16 devices; mesh/h100x8.gin splits the batch 16 ways: 8 does not divide
    monkeypatch.chdir(tmp_path)
    text = (config.EXPERIMENTS_DIR / "sweeps" / "gpu_example.toml").read_text()
    (tmp_path / "g.toml").write_text(text.replace("BATCH_SIZE = 64", "BATCH_SIZE = 8"))
    with pytest.raises(ConfigError, match=r"sweep gpu_example: run d64: batch size 8 .* 16 ways"):
        render.render(sweep.load(tmp_path / "g.toml"), validate=validate_run_file)
