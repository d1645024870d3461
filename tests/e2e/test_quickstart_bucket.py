"""The quickstart job with OUTPUT_DIR in a bucket (a real GCS API server on 127.0.0.1): every
stage's outputs land in the bucket, nothing under the working directory, and a rerun skips every
stage that has COMPLETED (sampling runs each time by design)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from etils import epath

from tests import gcs_emulator
from tests.helpers import REPO_ROOT

gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket

STAGES = ["data", "dedup", "tokenizer", "tokenize", "train", "chat_tokenizer", "skill", "sft"]


def _run(output_dir: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": ""}
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), str(REPO_ROOT)]).strip(
        os.pathsep
    )
    command = [sys.executable, "-m", "framework", "run", str(REPO_ROOT / "experiments/quickstart.gin"),
               f"--gin.OUTPUT_DIR='{output_dir}'"]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_quickstart_into_a_bucket_then_rerun_skips(tmp_path, gcs_bucket):
    out = f"{gcs_bucket}/quickstart"
    first = _run(out, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert epath.Path(out, stage, "COMPLETED").exists(), stage
    for name in ("data/stats.json", "dedup/stats.json", "tokenize/manifest.json",
                 "train/metrics.jsonl", "train/plots/metrics.png", "sample/sample.txt",
                 "report.json", "raw/builtin.warc.gz", "sft/chat.json",
                 "chat_sft/answers.jsonl", "score/score.json"):  # fmt: skip
        assert epath.Path(out, name).exists(), name
    assert list(tmp_path.iterdir()) == []  # nothing under the working directory
    again = _run(out, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for stage in STAGES:
        assert f"{stage}: deepdive" in again.stdout
    assert again.stdout.count("already COMPLETED, skipped") == len(STAGES)
