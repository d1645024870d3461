"""Failure drills: a killed data stage, bad input records, and a full disk during training.

Covered elsewhere (not repeated here):
* SIGKILL / SIGTERM during training, then rerun → bit-identical losses:
  ``tests/train/test_resume.py``.
* a truncated gzip, a binary WARC payload, an empty file and a 50 MB page → ``errors/`` with a
  reason: ``tests/data/test_pipeline.py::test_bad_inputs_land_in_errors_with_a_reason``.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.cli import app as cli
from framework.data.builtin import write_builtin_warc
from tests.data.warc_utils import gzip_members, warc_record, write_warc_gz
from tests.helpers import REPO_ROOT
from tests.train.helpers import TINY, losses


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), XLA_FLAGS="", JAX_PLATFORMS="cpu")


def _data_cmd(inp: Path, out: Path, *beam: str) -> list[str]:
    return [sys.executable, "-m", "framework", "data", "--gin_file", "data/fineweb.gin",
            f"--gin.INPUT={json.dumps(str(inp))}", f"--gin.OUTPUT_DIR={json.dumps(str(out))}",
            "--no_progress", "--", *beam]  # fmt: skip


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=900, **kw)  # fmt: skip


def _records(run: Path) -> list[tuple[str, str, str, str | None]]:
    """(folder, id, text, reason) of every document of a run, sorted; duplicates kept."""
    rows = []
    for path in run.rglob("*.jsonl.gz"):
        folder = str(path.parent.relative_to(run))
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                reason = d["metadata"].get("filter_reason") or d["metadata"].get("error")
                rows.append((folder, d["id"], d["text"], reason))
    return sorted(rows)


# ----------------------------------------------------------------------------------------------
# SIGKILL during the data stage, then rerun


@pytest.mark.slow
def test_data_stage_killed_then_rerun_equals_an_uninterrupted_run(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_builtin_warc(tmp_path / "all.warc.gz")
    members = gzip_members((tmp_path / "all.warc.gz").read_bytes())
    for k in range(2):
        (inp / f"part{k}.warc.gz").write_bytes(b"".join(members[k::2]))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    beam = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")

    inp = inp / "*.warc.gz"
    done = _run(_data_cmd(inp, reference, *beam))
    assert done.returncode == 0, done.stderr[-5000:]

    # the progress heartbeats show pages processed: kill the whole job (main + Beam workers)
    proc = subprocess.Popen(_data_cmd(inp, killed, *beam), cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 600
    progress = killed / ".progress"
    while time.time() < deadline and proc.poll() is None:
        counts = [int(p.read_text() or 0) for p in progress.glob("[!.]*") if p.is_file()]
        if sum(counts) >= 10:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "COMPLETED").exists()

    rerun = _run(_data_cmd(inp, killed, *beam))
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    got, want = _records(killed), _records(reference)
    assert len({(f, i) for f, i, *_ in got}) == len(got), "a document written twice"
    assert got == want
    assert sum(1 for f, *_ in want if f == "documents") > 50
    stats = [json.loads((r / "stats.json").read_text()) for r in (killed, reference)]
    assert [s["documents"] for s in stats] == [stats[1]["documents"]] * 2
    assert [s["removed"] for s in stats] == [stats[1]["removed"]] * 2


# ----------------------------------------------------------------------------------------------
# bad records not covered by tests/data: a corrupt WARC record, a random-bytes HTML page


def test_corrupt_warc_record_and_random_bytes_page_go_to_errors(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    prose = "<p>" + "Plain English sentences about the weather and the town library. " * 30
    good = [
        warc_record(
            f"<html><body><h1>Page {i}</h1>{prose}</p></body></html>".encode(),
            url=f"http://good.example/{i}",
            record_id=f"<urn:good:{i}>",
        )  # fmt: skip
        for i in range(3)
    ]
    # a record whose WARC header is garbled (no "WARC/1.0" line, length not a number)
    corrupt = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: lots\r\n\r\nnot a record\r\n\r\n"
    write_warc_gz(inp / "mixed.warc.gz", [good[0], corrupt, good[1], good[2]])
    rng = random.Random(0)
    (inp / "noise.html").write_bytes(bytes(rng.randrange(256) for _ in range(20_000)))
    out = tmp_path / "out"
    argv = _data_cmd(inp / "*", out, "--direct_num_workers=1", "--direct_running_mode=in_memory")
    assert cli.main(argv[3:]) == 0  # in this process: no start-up cost
    assert (out / "COMPLETED").exists()
    rows = _records(out)
    errors = {i: reason for f, i, _t, reason in rows if f == "errors"}
    reasons = sorted(r.split(":")[0] for r in errors.values())
    assert reasons == ["garbage_payload", "malformed_warc"], errors
    assert any(i.startswith("mixed.warc.gz") for i in errors) and "noise" in errors
    # every good page, the ones after the corrupt record included, was read and processed
    landed = {i for f, i, *_ in rows if f != "errors"}
    assert {f"<urn:good:{i}>" for i in range(3)} <= landed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["errors"] == len(errors)


# ----------------------------------------------------------------------------------------------
# full disk during training


def _train_cmd(model_dir: Path, steps: int) -> list[str]:
    binds = [f'MODEL_DIR="{model_dir}"', *TINY, f"TRAIN_STEPS={steps}", "CHECKPOINT_EVERY=4"]
    return [sys.executable, "-m", "framework", "train", "--plugin_module", "tests.train.tiny_model",
            *[f"--gin.{b.replace(' ', '')}" for b in binds]]  # fmt: skip


def _small_files_only() -> None:  # in the child: any file over 12 kB fails with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))


@pytest.mark.slow
def test_full_disk_during_training_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    import numpy as np
    from flax import nnx

    import tests.train.tiny_model  # noqa: F401 - registers models.tiny_test_lm here too
    from framework.train.checkpoint import load_for_inference

    run = tmp_path / "run"
    first = _run(_train_cmd(run, 8))
    assert first.returncode == 0, first.stderr[-5000:]
    model, _tok, _cfg, step = load_for_inference(run)
    assert step == 8
    before = [np.asarray(x) for x in jax_leaves(nnx.state(model, nnx.Param))]

    # continue to step 24 where the next checkpoint's files cannot be written
    full = _run(_train_cmd(run, 24), preexec_fn=_small_files_only)
    assert full.returncode == 1
    ours = [ln for ln in full.stderr.splitlines() if ln.startswith("deepdive: error:")]
    assert len(ours) == 1 and ours[0].startswith("deepdive: error: out of disk space"), full.stderr[
        -3000:
    ]
    assert "internal error" not in full.stderr
    # (orbax's own asyncio tasks log their failed writes around it, sometimes after it, when
    # their never-retrieved exceptions are collected at exit: third-party noise)

    model, _tok, _cfg, step = load_for_inference(run)
    assert step == 8
    after = [np.asarray(x) for x in jax_leaves(nnx.state(model, nnx.Param))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert [s for s, _ in losses(run)][:8] == list(range(1, 9))

    # with space again, the run continues from that checkpoint and finishes
    again = _run(_train_cmd(run, 12))
    assert again.returncode == 0, again.stderr[-5000:]
    assert "resumed from checkpoint 8" in again.stdout + again.stderr
    assert load_for_inference(run)[3] == 12


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)
