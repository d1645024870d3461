"""Kill-and-resume (SIGKILL) and SIGTERM runs log bit-identical losses to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import gcs_emulator
from tests.helpers import REPO_ROOT
from tests.train.helpers import TINY, losses

STEPS = 24


def _command(model_dir, *extra):
    args = [sys.executable, "-m", "framework", "train", "--plugin_module", "tests.train.tiny_model"]
    binds = [f'MODEL_DIR="{model_dir}"', *TINY, f"TRAIN_STEPS={STEPS}", "CHECKPOINT_EVERY=4",
             "DATA=@data.slow_synthetic()", "data.slow_synthetic.vocab_size=64",
             "data.slow_synthetic.delay_s=0.15", *extra]  # fmt: skip
    return args + [f"--gin.{b.replace(' ', '')}" for b in binds]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one CPU device: faster start-up
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _start(model_dir):
    return subprocess.Popen(_command(model_dir), cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _wait_for_step(proc, model_dir, step, timeout=600):
    deadline = time.time() + timeout
    metrics = model_dir / "metrics.jsonl"
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended before step {step}:\n{proc.stdout.read()}")
        if metrics.exists() and any(s >= step for s, _ in _safe_losses(model_dir)):
            return
        time.sleep(0.05)
    pytest.fail(f"no step {step} within {timeout}s")


def _safe_losses(model_dir):
    try:
        return losses(model_dir)
    except ValueError:  # a line being written
        return []


def _finish(model_dir):
    out = subprocess.run(_command(model_dir), cwd=REPO_ROOT, env=_env(), capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    _finish(reference)
    killed = tmp_path / "killed"
    proc = _start(killed)
    _wait_for_step(proc, killed, 11)  # past the checkpoint at 8, before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "COMPLETED").exists()
    out = _finish(killed)
    assert "resumed from checkpoint" in out.stdout
    assert losses(killed) == losses(reference)  # exact float equality, every step
    assert [s for s, _ in losses(killed)] == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resumes_identically(tmp_path):
    reference = tmp_path / "reference"
    _finish(reference)
    stopped = tmp_path / "stopped"
    proc = _start(stopped)
    _wait_for_step(proc, stopped, 6)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "checkpoint saved" in output
    saved = sorted(int(p.name) for p in (stopped / "checkpoints").iterdir() if p.name.isdigit())
    last_logged = losses(stopped)[-1][0]
    assert saved[-1] == last_logged and saved[-1] % 4 != 0 or saved[-1] == last_logged
    _finish(stopped)
    assert losses(stopped) == losses(reference)


gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket


@pytest.mark.slow
def test_bucket_run_killed_resumes_bit_identically_one_writer_at_a_time(tmp_path, gcs_bucket):
    """MODEL_DIR in a bucket (fake-gcs-server): a second writer is refused while the run lives;
    after SIGKILL past the first checkpoint, a rerun from "another host" takes the lease once it
    is stale and resumes from the bucket with the uninterrupted local run's losses, bit for bit."""
    from etils import epath

    reference = tmp_path / "reference"
    _finish(reference)
    run = f"{gcs_bucket}/runs/killed"
    proc = subprocess.Popen(
        _command(run, "data.slow_synthetic.delay_s=1.0"),
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip  (alive long enough for a second writer)
    metrics = epath.Path(run, "metrics.jsonl")
    deadline = time.time() + 600
    while not (metrics.exists() and max([s for s, _ in _bucket_losses(run)] or [0]) >= 8):
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"no checkpoint 8 in the bucket:\n{proc.stdout.read()}")
        time.sleep(0.2)
    second = subprocess.run(_command(run), cwd=REPO_ROOT, env=_env(), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert second.returncode == 2, second.stdout + second.stderr
    assert "in use by host" in second.stderr and f"pid {proc.pid}" in second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not epath.Path(run, "COMPLETED").exists()
    time.sleep(2.5)
    env = {**_env(), "DEEPDIVE_LEASE_HOST": "another-host", "DEEPDIVE_LEASE_STALE_S": "2"}
    out = subprocess.run(_command(run), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumed from checkpoint" in out.stdout
    assert _bucket_losses(run) == losses(reference)  # exact float equality, every step
    assert [s for s, _ in _bucket_losses(run)] == list(range(1, STEPS + 1))


def _bucket_losses(run: str) -> list[tuple[int, float]]:
    from framework.train.metrics import read_metrics

    return [(r["step"], r["loss"]) for r in read_metrics(f"{run}/metrics.jsonl")]
