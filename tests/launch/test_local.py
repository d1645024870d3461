"""The local backend: N runs at a time, skip finished runs, resume interrupted ones, results.

A stand-in trainer (tests/launch/fake_train.py) keeps these tests fast and exact; the real
trainer runs in test_e2e_tiny.py.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.cli import app as cli
from framework.cli.commands.validate import validate_run_file
from framework.launch import backend, render, results, sweep
from plugins.launchers.local import LocalLauncher
from tests.launch import helpers

SWEEP = """\
name = "s"
gin_files = ["base.gin"]
run_id = "lr{LEARNING_RATE}-w{WIDTH}"
metric = "val_loss"
mode = "min"

[bindings]
TRAIN_STEPS = @STEPS@

[grid]
LEARNING_RATE = [1e-3, 3e-3]
WIDTH = [16, 32]

[launch.local]
parallel = 2
poll_s = 0.1
train_command = @COMMAND@
"""


def write_sweep(root: Path, steps: int) -> Path:
    command = json.dumps(helpers.fake_train_command())
    text = SWEEP.replace("@STEPS@", str(steps)).replace("@COMMAND@", command)
    return helpers.make_project(root, text)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAKE_STEP_S", "0.01")
    return tmp_path


def test_runs_everything_then_a_relaunch_skips_finished_runs(project, capsys):
    s = sweep.load(write_sweep(project, steps=4))
    sweep_dir = render.render(s, validate=validate_run_file)
    launcher = LocalLauncher(parallel=2, poll_s=0.05, train_command=helpers.fake_train_command(),
                             live=False)  # fmt: skip
    assert launcher.launch(s, sweep_dir, s.runs) == 0
    for run in s.runs:
        run_dir = sweep_dir / run.run_id
        assert (run_dir / "COMPLETED").exists()
        state = backend.read_state(run_dir)
        assert (state["state"], state["attempts"], state["returncode"]) == ("completed", 1, 0)
        assert "==== attempt 1 (start)" in (run_dir / "train.log").read_text()
    capsys.readouterr()
    assert launcher.launch(s, sweep_dir, s.runs) == 0
    out = capsys.readouterr().out
    assert out.count("completed, skipped") == 4 and "nothing to run" in out
    assert all(backend.read_state(sweep_dir / r.run_id)["attempts"] == 1 for r in s.runs)


def test_a_failing_run_is_reported_and_the_others_finish(project, capsys):
    s = sweep.load(write_sweep(project, steps=2))
    sweep_dir = render.render(s, validate=validate_run_file)
    broken = s.runs[1].run_id
    (sweep_dir / broken / "run.gin").write_text("# TRAIN_STEPS missing\n")
    launcher = LocalLauncher(parallel=2, poll_s=0.05, train_command=helpers.fake_train_command(),
                             live=False)  # fmt: skip
    assert launcher.launch(s, sweep_dir, s.runs) == 1
    assert f"1 run(s) failed: {broken}" in capsys.readouterr().err
    rows = {r.run_id: r.state for r in results.collect(s, sweep_dir)}
    assert rows.pop(broken) == "failed" and set(rows.values()) == {"completed"}


def test_live_table_redraws_in_place(project, capsys):
    s = sweep.load(write_sweep(project, steps=2))
    sweep_dir = render.render(s, validate=validate_run_file)
    launcher = LocalLauncher(parallel=4, poll_s=0.05, train_command=helpers.fake_train_command(),
                             live=True)  # fmt: skip
    assert launcher.launch(s, sweep_dir, s.runs) == 0
    out = capsys.readouterr().out
    assert "\x1b[" in out and "F\x1b[J" in out  # cursor up + clear: the table is redrawn
    last_table = out.rsplit("\x1b[J", 1)[-1]
    assert last_table.splitlines()[0].split()[:3] == ["run", "state", "step"]
    assert last_table.count("completed") == 4


LAUNCHER = """
import sys
from framework.launch import sweep
from plugins.launchers.local import LocalLauncher
s = sweep.load_rendered("runs/s")
launcher = LocalLauncher(**s.launch["local"], live=False)
sys.exit(launcher.launch(s, "runs/s", s.runs))
"""


def _launch(project: Path, step_s: str) -> subprocess.Popen:
    """The local launcher in a process of its own (without the CLI's start-up cost)."""
    env = {**os.environ, "FAKE_STEP_S": step_s}
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: the launcher and its children
    )  # fmt: skip


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_killed_sweep_resumes_on_relaunch_and_produces_results(project):
    path = write_sweep(project, steps=12)
    assert cli.main(["sweep", "render", str(path)]) == 0
    s = sweep.load_rendered(project / "runs" / "s")
    sweep_dir = project / "runs" / "s"
    first = s.runs[0].run_id

    proc = _launch(project, step_s="0.15")
    # wait until the first two runs have a checkpoint, then kill the launcher and its children
    _wait_for(lambda: (sweep_dir / first / "checkpoints" / "4").exists())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = {r.run_id: r for r in results.collect(s, sweep_dir)}
    assert rows[first].state == "interrupted" and rows[first].step < 12
    assert [rows[r.run_id].state for r in s.runs[2:]] == ["pending", "pending"]
    killed_at = max(int(p.name) for p in (sweep_dir / first / "checkpoints").iterdir())

    proc = _launch(project, step_s="0.01")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    for run in s.runs:
        assert (sweep_dir / run.run_id / "COMPLETED").exists()
    # the interrupted run resumed from its newest checkpoint instead of starting again
    log = (sweep_dir / first / "train.log").read_text()
    assert "==== attempt 1 (start)" in log and "==== attempt 2 (resume from step " in log
    steps = [json.loads(line)["step"] for line in (sweep_dir / first / "metrics.jsonl").open()]
    second_attempt = steps[steps.index(killed_at) + 1 :]
    assert steps.count(1) == 1 and second_attempt[0] <= killed_at + 1 and steps[-1] == 12

    assert cli.main(["sweep", "results", "runs/s"]) == 0
    table = list(csv.DictReader(io.StringIO((sweep_dir / "results.csv").read_text())))
    assert [t["run"] for t in table] == [r.run_id for r in s.runs]
    assert {t["state"] for t in table} == {"completed"}
    # fake_train logs val_loss = 20 lr + 1/step every 2 steps: final (step 12) = best (min)
    for t, run in zip(table, s.runs, strict=True):
        expected = 20 * run.varied["LEARNING_RATE"] + 1 / 12
        assert float(t["final val_loss"]) == pytest.approx(expected)
        assert float(t["best val_loss (min)"]) == pytest.approx(expected)
        assert t["best step"] == "12" and t["step"] == "12/12"
        # tokens_per_s = 1000 + step, first logged value left out: median of 1002..1012
        assert float(t["tokens/s"]) == pytest.approx(1007.0)
    md = (sweep_dir / "results.md").read_text()
    assert "★ lr0.001-w16" in md and "4 completed." in md
    import matplotlib.image

    for name in ("val_loss.png", "curves.png"):
        png = sweep_dir / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(png).shape
        assert width > 300 and height > 200


def test_sigterm_stops_children_and_records_interrupted(project):
    path = write_sweep(project, steps=200)
    assert cli.main(["sweep", "render", str(path)]) == 0
    sweep_dir = project / "runs" / "s"
    proc = _launch(project, step_s="0.1")
    s = sweep.load_rendered(sweep_dir)
    first = s.runs[0].run_id
    _wait_for(lambda: (sweep_dir / first / "checkpoints").exists())
    state = backend.read_state(sweep_dir / first)
    os.kill(proc.pid, signal.SIGTERM)  # the launcher only
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopping 2 run(s)" in out
    assert not backend.process_alive(state)  # its child is gone too
    states = [backend.read_state(sweep_dir / r.run_id).get("state") for r in s.runs]
    assert states == ["interrupted", "interrupted", None, None]
