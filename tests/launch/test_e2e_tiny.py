"""Done-when smoke test: the 2×2 learning-rate × width sweep (experiments/sweeps/tiny_lr_width.toml)
on the tiny model with the real trainer and the local backend, 2 runs at a time on this machine's
CPU, killed (launcher and children) in the middle, re-launched once, then the results table and
plots. Smoke size: a few steps, small batch and sequence."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from framework.cli.commands.validate import validate_run_file
from framework.core import config
from framework.launch import render, results, sweep

pytestmark = pytest.mark.slow

SWEEP_FILE = config.EXPERIMENTS_DIR / "sweeps" / "tiny_lr_width.toml"
SMOKE = {
    "TRAIN_STEPS": 6,
    "EVAL_EVERY": 2,
    "CHECKPOINT_EVERY": 2,
    "BATCH_SIZE": 8,  # divisible by the 8 host devices tests/conftest.py sets for rendering
    "SEQ_LEN": 32,
    "WARMUP_STEPS": 1,
    "train.log_every": 1,
    "train.eval_batches": 1,
}


def _env() -> dict[str, str]:
    """A plain machine's environment: no forced host device count from tests/conftest.py."""
    env = dict(os.environ)
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    env["XLA_FLAGS"] = flags
    return env


def _checkpointed(run_dir: Path) -> bool:
    """A finished orbax checkpoint: ``checkpoints/<step>/`` (temporary names are not digits)."""
    ckpts = run_dir / "checkpoints"
    return ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir())


def _launch(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "framework", "sweep", "launch", "runs/tiny_lr_width",
         "--backend", "local", "--parallel", "2"],
        cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def test_tiny_lr_width_sweep_end_to_end_with_interruption(tmp_path, monkeypatch):
    for needed in ("base/train.gin", "models/gpt2_tiny.gin"):
        if not (config.EXPERIMENTS_DIR / needed).exists():
            pytest.skip(f"experiments/{needed} is not there yet")
    monkeypatch.chdir(tmp_path)
    data = tomllib.loads(SWEEP_FILE.read_text())
    assert len(data["grid"]) == 2 and all(len(v) == 2 for v in data["grid"].values())
    data["bindings"] = {**data.get("bindings", {}), **SMOKE}
    s = sweep.expand(data, source=str(SWEEP_FILE), default_name="tiny_lr_width")
    sweep_dir = render.render(s, validate=validate_run_file)
    assert len(s.runs) == 4

    proc = _launch(tmp_path)
    deadline = time.time() + 900
    while not any(_checkpointed(sweep_dir / r.run_id) for r in s.runs):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its children
    proc.wait()
    deadline = time.time() + 60  # SIGKILLed trainers take a moment to exit and be reaped
    while True:
        before = {r.run_id: r.state for r in results.collect(s, sweep_dir)}
        if "running" not in before.values() or time.time() > deadline:
            break
        time.sleep(0.5)
    assert "interrupted" in before.values() and "running" not in before.values(), before
    interrupted = [run_id for run_id, state in before.items() if state == "interrupted"]
    checkpointed = [r.run_id for r in s.runs if _checkpointed(sweep_dir / r.run_id)]
    assert checkpointed

    proc = _launch(tmp_path)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-3000:]
    for run_id in interrupted:  # started again; from its checkpoint when it had one
        log = (sweep_dir / run_id / "train.log").read_text()
        assert "==== attempt 2 (" in log
        if run_id in checkpointed:
            assert "==== attempt 2 (resume from step " in log and "resumed from checkpoint" in log

    done = subprocess.run(
        [sys.executable, "-m", "framework", "sweep", "results", "runs/tiny_lr_width"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((sweep_dir / "results.csv").read_text())))
    assert [r["state"] for r in rows] == ["completed"] * 4
    for row, run in zip(rows, s.runs, strict=True):
        assert row["step"] == "6/6"
        metrics = [json.loads(x) for x in (sweep_dir / run.run_id / "metrics.jsonl").open()]
        val = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
        assert float(row["final val_loss"]) == pytest.approx(val[-1])
        assert float(row["best val_loss (min)"]) == pytest.approx(min(val))
        assert float(row["tokens/s"]) > 0
    for name in ("results.md", "val_loss.png", "curves.png"):
        assert (sweep_dir / name).stat().st_size > 0
