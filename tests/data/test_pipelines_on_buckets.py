"""`deepdive data` → `dedup` → `tokenize` with INPUT, OUTPUT_DIR and TOKENIZER in a bucket.

A real GCS JSON-API server (tests/gcs_emulator.py) holds the bucket; the same three commands on
local disk give the reference. The bucket must end up with the same documents, clusters and token
shards, with stats.json, manifest.json, config.gin and COMPLETED beside them. A rerun into a
completed run refuses and rewrites nothing; a rerun after a killed run (no COMPLETED, stale
outputs) starts clean; a bucket that does not exist is one line and exit 2.

Beam runs in memory with one worker: the emulator needs a client patch (see gcs_emulator) that
only this process has; real GCS needs none, so multi-process runs there are unaffected.
"""

from __future__ import annotations

import gzip
import json
import uuid

import pytest

from framework.cli import app as cli
from framework.core import paths
from framework.data.builtin import builtin_pages, write_builtin_warc
from tests import gcs_emulator
from tests.data.warc_utils import gzip_members

gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket

pytest.importorskip("gcsfs")

BEAM = ["--no_progress", "--", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def deepdive(capsys, command: str, **macros: str) -> tuple[int, str, str]:
    """``deepdive COMMAND --gin.NAME="value"...`` in this process: (exit code, stdout, stderr);
    without ``capsys`` (a module fixture) the output is not read."""
    argv = [command, *(f"--gin.{k}={json.dumps(str(v))}" for k, v in macros.items()), *BEAM]
    code = cli.main(argv)
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def chain(capsys, raw: str, tokenizer: str, out: str) -> None:
    """data → dedup → tokenize from ``raw`` (a folder of WARC files) into ``out/<stage>``."""
    for command, macros in (
        ("data", {"INPUT": f"{raw}/*.warc.gz", "OUTPUT_DIR": f"{out}/data"}),
        ("dedup", {"INPUT": f"{out}/data", "OUTPUT_DIR": f"{out}/dedup"}),
        (
            "tokenize",
            {"TOKENIZER": tokenizer, "INPUT": f"{out}/dedup", "OUTPUT_DIR": f"{out}/tokens"},
        ),
    ):
        code, stdout, err = deepdive(capsys, command, **macros)
        assert code == 0, f"deepdive {command}: {err[-3000:]}"
        if capsys is not None:
            assert f"see {macros['OUTPUT_DIR']}/" in stdout


def files(root: str) -> dict[str, bytes]:
    """Every file under ``root`` (local or URL) by relative name → its bytes."""
    base = str(paths.as_path(root))
    return {str(p)[len(base) + 1 :]: p.read_bytes() for p in paths.walk(root) if not p.is_dir()}


def records(tree: dict[str, bytes]) -> list[tuple]:
    """(file, id, text, metadata without ``source``) of every document shard, sorted."""
    rows = []
    for name, data in tree.items():
        if name.endswith(".jsonl.gz"):
            for line in gzip.decompress(data).decode().splitlines():
                doc = json.loads(line)
                meta = {k: v for k, v in doc["metadata"].items() if k != "source"}
                rows.append((name, doc["id"], doc["text"], json.dumps(meta, sort_keys=True)))
    return sorted(rows)


def without_timings(stats: dict) -> dict:
    """stats.json without what differs between two runs of the same data (times, paths)."""
    drop = ("wall_time_s", "pages_per_s", "documents_per_s", "timings_s", "input", "output_dir")
    kept = {k: v for k, v in stats.items() if k not in drop}
    kept["counters"] = {k: v for k, v in stats["counters"].items() if "time_us" not in k}
    kept.pop("steps", None)
    return kept


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The builtin pages as two WARC files and a byte tokenizer, and the chain on local disk."""
    from plugins.tokenizers.bytes import ByteTokenizer

    root = tmp_path_factory.mktemp("local")
    write_builtin_warc(root / "all.warc.gz")
    members = gzip_members((root / "all.warc.gz").read_bytes())
    (root / "raw").mkdir()
    for k in range(2):
        (root / "raw" / f"part{k}.warc.gz").write_bytes(b"".join(members[k::2]))
    ByteTokenizer().save(root / "tok")
    chain(None, str(root / "raw"), str(root / "tok"), str(root / "out"))
    return root


def test_data_dedup_tokenize_read_and_write_a_bucket(
    reference, gcs_bucket, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # nothing may land in a local folder named "gs:"
    for name, data in files(reference / "raw").items():
        paths.as_path(f"{gcs_bucket}/raw/{name}").write_bytes(data)
    paths.copy_tree(reference / "tok", f"{gcs_bucket}/tok")
    out = f"{gcs_bucket}/out"

    chain(capsys, f"{gcs_bucket}/raw", f"{gcs_bucket}/tok", out)

    assert not (tmp_path / "gs:").exists()
    for stage in ("data", "dedup", "tokens"):
        local, remote = files(reference / "out" / stage), files(f"{out}/{stage}")
        assert {"COMPLETED", "config.gin", "run_manifest.json"} <= set(remote), stage
        assert not [n for n in remote if n.startswith((".progress", ".minhash", ".tokenize"))]
        assert sorted(n for n in remote if n != "run_manifest.json") == sorted(
            n for n in local if n != "run_manifest.json"
        ), stage
        assert records(remote) == records(local), stage
        if stage != "tokens":
            stats = [json.loads(t["stats.json"]) for t in (local, remote)]
            assert without_timings(stats[1]) == without_timings(stats[0]), stage
            assert stats[1]["output_dir"] == f"{out}/{stage}"
    data = files(f"{out}/data")
    # every builtin page (their number depends on the Python docs they come from): kept,
    # removed or an error
    assert len(records(data)) == sum(1 for _ in builtin_pages())
    assert all(r[1].startswith("<urn:uuid:") for r in records(data))
    sources = {
        json.loads(line)["metadata"]["source"]
        for line in gzip.decompress(data["documents/00000.jsonl.gz"]).decode().splitlines()
    }
    assert sources == {f"{gcs_bucket}/raw/part0.warc.gz", f"{gcs_bucket}/raw/part1.warc.gz"}

    dedup_local, dedup_remote = files(reference / "out" / "dedup"), files(f"{out}/dedup")
    assert dedup_remote["clusters.jsonl"] == dedup_local["clusters.jsonl"] != b""

    tokens_local, tokens_remote = files(reference / "out" / "tokens"), files(f"{out}/tokens")
    manifest = json.loads(tokens_remote["manifest.json"])
    assert manifest["tokenizer"] == f"{gcs_bucket}/tok"
    assert manifest["splits"] == json.loads(tokens_local["manifest.json"])["splits"]
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    assert len(shards) == 3  # two train shards (one per input file), one validation
    for shard in shards:
        assert tokens_remote[shard] == tokens_local[shard], shard
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    source = ArrayRecordDataSource([f"{out}/tokens/{s}" for s in shards])  # gs:// read natively
    assert len(source) == sum(s["documents"] for s in manifest["splits"].values())

    # a rerun into a completed run refuses and rewrites nothing
    before = {n: paths.as_path(f"{out}/data/{n}").stat().mtime for n in ("COMPLETED", "stats.json")}
    code, _, err = deepdive(
        capsys, "data", INPUT=f"{gcs_bucket}/raw/*.warc.gz", OUTPUT_DIR=f"{out}/data"
    )
    assert code == 2 and "already holds a completed run" in err and "--overwrite" in err
    after = {n: paths.as_path(f"{out}/data/{n}").stat().mtime for n in before}
    assert after == before and files(f"{out}/data") == data

    # a rerun after a killed run: no COMPLETED, a stale shard and work files; it starts clean
    paths.as_path(f"{out}/dedup/COMPLETED").unlink()
    paths.as_path(f"{out}/dedup/documents/00009.jsonl.gz").write_bytes(b"stale")
    paths.as_path(f"{out}/dedup/.minhash_work/edges_r0/part-00000.jsonl").write_text("[]\n")
    code, _, err = deepdive(capsys, "dedup", INPUT=f"{out}/data", OUTPUT_DIR=f"{out}/dedup")
    assert code == 0, err[-3000:]
    rerun = files(f"{out}/dedup")
    assert "documents/00009.jsonl.gz" not in rerun and "COMPLETED" in rerun
    assert records(rerun) == records(dedup_local) != []


def test_a_missing_bucket_is_one_line_naming_the_url(gcs_bucket, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "some words here"}\n')
    missing = f"gs://deepdive-missing-{uuid.uuid4().hex[:8]}"
    for command, macros, what in (
        ("data", {"INPUT": tmp_path / "in.jsonl", "OUTPUT_DIR": f"{missing}/out"}, "OUTPUT_DIR"),
        ("dedup", {"INPUT": f"{missing}/data", "OUTPUT_DIR": f"{gcs_bucket}/d"}, "INPUT"),
        (
            "tokenize",
            {"TOKENIZER": f"{missing}/tok", "INPUT": tmp_path, "OUTPUT_DIR": f"{gcs_bucket}/t"},
            "TOKENIZER",
        ),
    ):
        code, _, err = deepdive(capsys, command, **macros)
        assert code == 2, (command, err)
        assert len(err.strip().splitlines()) == 1, err
        assert f"{what} {missing}/" in err and "does not exist" in err, err
    code, _, err = deepdive(
        capsys, "tokenize", TOKENIZER=f"{gcs_bucket}/no-tok", INPUT=tmp_path, OUTPUT_DIR=tmp_path
    )
    assert code == 2 and err.count("\n") == 1 and f"{gcs_bucket}/no-tok: tokenizer not found" in err
    assert not list(paths.walk(gcs_bucket)), "nothing written"
