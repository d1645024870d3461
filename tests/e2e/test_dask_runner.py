"""The data, dedup and tokenize pipelines on a real ``dask.distributed`` cluster (scheduler and
two worker processes on 127.0.0.1) through Beam's Dask runner give the DirectRunner's output,
document for document."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipelines import dask_runner
from framework.data.builtin import write_builtin_warc
from tests.data.warc_utils import gzip_members
from tests.helpers import REPO_ROOT

DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"
DIRECT = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


# ----------------------------------------------------------------------------------------------
# the --runner=dask shorthand (no cluster needed)


def test_shorthand_with_an_address_becomes_beams_options():
    args = dask_runner.expand_args(
        ["--runner=dask", "--dask_client_address=127.0.0.1:8786", "--x=1"]
    )
    assert args == [
        f"--runner={DASK}",
        "--dask_client_address=127.0.0.1:8786",
        "--x=1",
        "--dask_partition_size=1",
    ]
    assert dask_runner.expand_args(
        ["--runner", "dask", "--dask_npartitions=4", "--dask_client_address=a:1"]
    ) == [
        f"--runner={DASK}",
        "--dask_npartitions=4",
        "--dask_client_address=a:1",
    ]


def test_other_runners_pass_through_unchanged():
    for args in ([], ["--runner=DataflowRunner", "--project=p"], [f"--runner={DASK}", "--a=b"]):
        assert dask_runner.expand_args(args) == args


# ----------------------------------------------------------------------------------------------
# the three pipelines, Dask vs Direct


def _deepdive(*argv: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), XLA_FLAGS="", JAX_PLATFORMS="cpu")
    # Each stage runs in its own session, as it would from a shell: the DirectRunner's
    # multi-process shutdown otherwise takes down the cluster's worker processes, which share
    # this test's process group.
    out = subprocess.run(
        [sys.executable, "-m", "framework", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-8000:]


def _stage(command: str, gin: str, output: Path, beam: list[str], **macros: str) -> Path:
    binds = [f"--gin.{k}={json.dumps(str(v))}" for k, v in macros.items()]
    cmd = command.split()
    _deepdive(*cmd, "--gin_file", gin, *binds, f"--gin.OUTPUT_DIR={json.dumps(str(output))}",
              "--no_progress", "--", *beam)  # fmt: skip
    assert (output / "COMPLETED").exists()
    return output


def _documents(run: Path) -> dict[str, tuple[str, str, str | None, str | None]]:
    """id → (folder, text, filter reason or error, duplicate_of) over every shard of a run."""
    out = {}
    for path in sorted(run.rglob("*.jsonl.gz")):
        folder = str(path.parent.relative_to(run))
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                meta = d["metadata"]
                assert d["id"] not in out, f"{d['id']} written twice"
                out[d["id"]] = (
                    folder,
                    d["text"],
                    meta.get("filter_reason") or meta.get("error"),
                    meta.get("duplicate_of"),
                )
    return out


def _token_shards(run: Path) -> dict[str, list[bytes]]:
    from array_record.python.array_record_module import ArrayRecordReader

    shards = {}
    for path in sorted(run.rglob("*.array_record")):
        reader = ArrayRecordReader(str(path))
        shards[str(path.relative_to(run))] = reader.read_all()
        reader.close()
    return shards


def _counters(run: Path) -> dict[str, int]:
    stats = json.loads((run / "stats.json").read_text())
    return {k: v for k, v in stats["counters"].items() if not k.endswith("time_us")}


class _Cluster:
    def __init__(self, scheduler_address: str):
        self.scheduler_address = scheduler_address


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A dask scheduler and two worker processes on 127.0.0.1, each in its own session, as
    `dask scheduler` / `dask worker` would run on real machines."""
    import time

    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", "127.0.0.1:0",
         "--preload", "beam_pipelines.dask_runner"],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
         "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
         "--preload", "beam_pipelines.dask_runner"],
        stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                with Client(address, timeout=5) as client:
                    if len(client.scheduler_info(n_workers=-1)["workers"]) >= 2:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"dask cluster did not start; logs in {logs}")
            time.sleep(1)
        yield _Cluster(address)
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    """The built-in pages (every filter at work, near-duplicates) in three WARC files."""
    d = tmp_path_factory.mktemp("pages")
    write_builtin_warc(d / "all.warc.gz")
    members = gzip_members((d / "all.warc.gz").read_bytes())
    (d / "all.warc.gz").unlink()
    for k in range(3):
        (d / f"part{k}.warc.gz").write_bytes(b"".join(members[k::3]))
    return d


@pytest.mark.slow
def test_data_dedup_tokenize_on_dask_equal_the_direct_runner(cluster, pages, tmp_path):
    on_dask = [f"--runner={DASK}", f"--dask_client_address={cluster.scheduler_address}"]
    inp = pages / "*.warc.gz"
    data_d = _stage("data", "data/fineweb.gin", tmp_path / "direct" / "data", DIRECT, INPUT=inp)
    data_k = _stage("data", "data/fineweb.gin", tmp_path / "dask" / "data", on_dask, INPUT=inp)
    inp = data_d / "documents" / "*.jsonl.gz"
    dedup_d = _stage("dedup", "data/minhash.gin", tmp_path / "direct" / "dedup", DIRECT, INPUT=inp)
    dedup_k = _stage("dedup", "data/minhash.gin", tmp_path / "dask" / "dedup", on_dask, INPUT=inp)
    # data: same documents kept, same removed by each filter, same errors
    reference = _documents(data_d)
    assert _documents(data_k) == reference
    folders = {folder for folder, *_ in reference.values()}
    assert {"documents", "removed/url", "removed/language"} <= folders  # the filters did work
    assert _counters(data_k) == _counters(data_d)  # stats.json without Beam metrics
    # dedup: same kept, same removed (and kept in their place), same clusters
    reference = _documents(dedup_d)
    assert _documents(dedup_k) == reference
    assert any(folder == "removed/minhash" for folder, *_ in reference.values())
    assert (dedup_k / "clusters.jsonl").read_text() == (dedup_d / "clusters.jsonl").read_text()
    stats_d, stats_k = (json.loads((r / "stats.json").read_text()) for r in (dedup_d, dedup_k))
    assert (stats_k["kept"], stats_k["removed"]) == (stats_d["kept"], stats_d["removed"])

    # tokenize: same shards, record for record (each record = one document's ids + eot)
    tok = tmp_path / "tokenizer"
    _deepdive("tokenizer", "train", "--gin_file", "tokenizers/bytes.gin",
              f"--gin.OUTPUT_DIR={json.dumps(str(tok))}")  # fmt: skip
    inp = dedup_d / "documents" / "*.jsonl.gz"
    tokens_d = _stage("tokenize", "base/tokenize.gin", tmp_path / "direct" / "tokens", DIRECT,
                      TOKENIZER=tok, INPUT=inp)  # fmt: skip
    tokens_k = _stage("tokenize", "base/tokenize.gin", tmp_path / "dask" / "tokens", on_dask,
                      TOKENIZER=tok, INPUT=inp)  # fmt: skip
    # and the shorthand: a local cluster of its own, started and stopped by the command
    tokens_s = _stage("tokenize", "base/tokenize.gin", tmp_path / "short" / "tokens",
                      ["--runner=dask"], TOKENIZER=tok, INPUT=inp)  # fmt: skip
    shards = _token_shards(tokens_d)
    assert sum(len(r) for r in shards.values()) == len(
        [1 for folder, *_ in reference.values() if folder == "documents"]
    )
    assert _token_shards(tokens_k) == shards
    assert _token_shards(tokens_s) == shards
    manifest = json.loads((tokens_d / "manifest.json").read_text())
    assert json.loads((tokens_k / "manifest.json").read_text()) == manifest
    assert json.loads((tokens_s / "manifest.json").read_text()) == manifest
