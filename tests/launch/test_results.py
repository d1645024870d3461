"""Results: reading metrics.jsonl, run states, best/final per mode, cloud-safe names."""

import json
import re
import subprocess
import sys

import pytest

from framework.launch import backend, results
from framework.launch.sweep import expand


def write_metrics(path, records, partial_tail=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if partial_tail:
        text += '{"step": 99, "lo'  # a line still being written
    path.write_text(text)


def test_resumed_steps_keep_the_later_record_and_partial_lines_are_skipped(tmp_path):
    records = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 3, "loss": 3.5},
               {"step": 3, "loss": 3.0}, {"step": 4, "loss": 2.0}]  # fmt: skip
    write_metrics(tmp_path / "m.jsonl", records, partial_tail=True)
    got = results.metric_series(results.read_metrics(tmp_path / "m.jsonl"), "loss")
    assert got == [(1, 5.0), (2, 4.0), (3, 3.0), (4, 2.0)]


@pytest.mark.parametrize(("mode", "best", "best_step"), [("min", 0.5, 2), ("max", 0.9, 3)])
def test_best_and_final_follow_the_mode(tmp_path, mode, best, best_step):
    s = expand({"gin_files": ["b.gin"], "metric": "acc", "mode": mode, "grid": {"LR": [1]}})
    run = s.runs[0]
    write_metrics(tmp_path / run.run_id / "metrics.jsonl",
                  [{"step": 1, "acc": 0.7}, {"step": 2, "acc": 0.5}, {"step": 3, "acc": 0.9},
                   {"step": 4, "acc": 0.6, "tokens_per_s": 10.0}])  # fmt: skip
    row = results.collect(s, tmp_path)[0]
    assert (row.final, row.best, row.best_step, row.step) == (0.6, best, best_step, 4)
    assert row.state == "interrupted"  # work on disk, no COMPLETED, no live process
    assert row.tokens_per_s == 10.0  # a single value is kept


def test_states_from_launch_records(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    assert results.run_state(run_dir, []) == ("pending", "")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        backend.write_state(run_dir, state="running", pid=child.pid, host=None)
        assert results.run_state(run_dir, [])[0] == "running"
    finally:
        child.kill()
        child.wait()
    assert results.run_state(run_dir, [])[0] == "interrupted"  # its process is gone
    backend.write_state(run_dir, state="failed", returncode=3)
    assert results.run_state(run_dir, [])[0] == "failed"
    (run_dir / "COMPLETED").write_text("")
    assert results.run_state(run_dir, [])[0] == "completed"


@pytest.mark.parametrize(
    "parts", [("tiny_lr_width", "lr0.001-d32"), ("S", "3rd.run"), ("x" * 30, "y" * 30)]
)
def test_cloud_names_follow_xpks_rule(parts):
    # xpk: [a-z]([-a-z0-9]*[a-z0-9])? and under 40 characters
    name = backend.cloud_name(*parts, max_len=39)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 39


def test_long_names_stay_distinct():
    a = backend.cloud_name("sweep" * 10, "run-a", max_len=39)
    b = backend.cloud_name("sweep" * 10, "run-b", max_len=39)
    assert a != b
