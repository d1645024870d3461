"""Two processes on loopback (jax.distributed, coordinator 127.0.0.1) train two steps together."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT
from tests.train.helpers import TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_train_two_steps_together(tmp_path):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    binds = [f'MODEL_DIR="{tmp_path / "run"}"', *TINY, "TRAIN_STEPS=2", "CHECKPOINT_EVERY=2"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framework",
                "train",
                "--plugin_module",
                "tests.train.tiny_model",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num_processes",
                "2",
                "--process_id",
                str(i),
                *[f"--gin.{b.replace(' ', '')}" for b in binds],
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    assert "process 0/2" in outputs[0] and "2 global devices" in outputs[0]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 for r in rows)
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
    assert (tmp_path / "run" / "COMPLETED").exists()
