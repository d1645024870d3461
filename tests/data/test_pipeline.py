"""`deepdive data` end to end on real WARC records plus bad inputs; `deepdive explain`."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys

import pytest

from framework.cli import app as cli
from tests.data.warc_utils import gzip_members, warc_record, write_warc_gz
from tests.helpers import corpus

LOCAL = ["--", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def read_docs(pattern_dir):
    docs = []
    for root, _dirs, files in os.walk(pattern_dir):
        for name in sorted(files):
            if name.endswith(".jsonl.gz"):
                with gzip.open(os.path.join(root, name), "rt", encoding="utf-8") as f:
                    docs += [json.loads(line) for line in f if line.strip()]
    return docs


def run_data(input_glob, output_dir, *extra):
    return cli.main(
        [
            "data",
            "--gin_file",
            "data/fineweb.gin",
            f"--gin.INPUT={json.dumps(str(input_glob))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(output_dir))}",
            "--no_progress",
            *extra,
            *LOCAL,
        ]
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One run over an English WARC and every kind of bad input."""
    inp = tmp_path_factory.mktemp("input")
    good = corpus("web", "warc", "dolma-sample-0001.warc.gz")
    (inp / "good.warc.gz").write_bytes(good.read_bytes())
    members = gzip_members(corpus("web", "warc", "dolma-sample-0000.warc.gz").read_bytes())
    (inp / "cut.warc.gz").write_bytes(b"".join(members[:4]) + members[4][: len(members[4]) // 2])
    write_warc_gz(
        inp / "garbage.warc.gz",
        [warc_record(bytes(range(256)) * 64, url="http://garbage.example/", record_id="<urn:g>")],
    )
    (inp / "empty.warc.gz").write_bytes(b"")
    para = "<p>" + "A long page with many words in it. " * 20 + "</p>\n"
    (inp / "huge.html").write_text(
        "<html><body>" + para * (50_000_000 // len(para)) + "</body></html>"
    )
    out = tmp_path_factory.mktemp("out") / "run"
    assert run_data(inp / "*", out) == 0
    return inp, out


def test_outputs_follow_design_section_5(run_dir):
    _inp, out = run_dir
    for name in (
        "documents",
        "removed",
        "errors",
        "stats.json",
        "COMPLETED",
        "config.gin",
        "run_manifest.json",
    ):
        assert (out / name).exists(), name
    assert os.path.getmtime(out / "COMPLETED") >= os.path.getmtime(out / "stats.json")
    assert all(
        p.name.endswith(".jsonl.gz") and len(p.name) == len("00000.jsonl.gz")
        for p in (out / "documents").iterdir()
    )
    kept = read_docs(out / "documents")
    assert kept, "the English WARC keeps some pages"
    for doc in kept:
        assert set(doc) == {"id", "text", "metadata"} and doc["text"].strip()
        assert doc["metadata"]["language"] == "en" and doc["metadata"]["language_score"] > 0.65
        assert doc["metadata"]["url"].startswith("http") and doc["id"].startswith("<urn:uuid:")
    for step_dir in (out / "removed").iterdir():
        for doc in read_docs(step_dir):
            assert doc["metadata"]["filter_reason"], step_dir.name


def test_every_page_lands_exactly_once(run_dir):
    inp, out = run_dir
    from framework.data.readers import read_any

    expected = [it.doc.id for it in read_any(str(inp / "good.warc.gz")) if it.kind == "page"]
    seen = [d["id"] for d in read_docs(out)]
    assert len(seen) == len(set(seen))
    assert set(expected) <= set(seen)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == len(read_docs(out / "documents"))
    assert stats["errors"] == len(read_docs(out / "errors"))
    assert stats["pages"] == stats["documents"] + sum(stats["removed"].values()) + sum(
        sum(s["errors"].values()) for s in stats["steps"] if s["name"] != "read"
    )
    names = [s["name"] for s in stats["steps"]]
    assert names == [
        "read",
        "url",
        "trafilatura",
        "language",
        "gopher_repetition",
        "gopher_quality",
        "c4_quality",
        "fineweb_quality",
    ]
    read = stats["steps"][0]
    assert read["skipped"]["request"] >= 15


def test_bad_inputs_land_in_errors_with_a_reason(run_dir):
    _inp, out = run_dir
    reasons = {d["metadata"]["error"].split(":")[0] for d in read_docs(out / "errors")}
    assert {"truncated_gzip", "garbage_payload", "empty_file", "page_too_large"} <= reasons
    for doc in read_docs(out / "errors"):
        assert doc["metadata"]["stage"] and doc["metadata"]["source"]


def test_completed_run_is_not_overwritten_without_the_flag(run_dir, capsys):
    inp, out = run_dir
    assert run_data(inp / "good.warc.gz", out) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_extraction_timeout_goes_to_errors(tmp_path):
    page = corpus("web", "html", sorted(os.listdir(corpus("web", "html")))[0])
    out = tmp_path / "run"
    assert run_data(page, out, "--gin.extractors.trafilatura.timeout=0.001") == 0
    [err] = read_docs(out / "errors")
    assert (
        err["metadata"]["error"].startswith("timeout") and err["metadata"]["stage"] == "trafilatura"
    )
    assert (out / "COMPLETED").exists()


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert run_data(tmp_path / "nothing-*.warc.gz", tmp_path / "o") == 2
    assert "no files match" in capsys.readouterr().err


def explain(args, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(["explain", "--gin_file", "data/fineweb.gin", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_matches_the_pipeline_verdicts(run_dir, capsys):
    inp, out = run_dir
    fate = {d["id"]: "KEPT" for d in read_docs(out / "documents")}
    for step_dir in (out / "removed").iterdir():
        for d in read_docs(step_dir):
            fate[d["id"]] = f"DROPPED by {step_dir.name}"
    for doc_id in sorted(fate)[:3]:
        code, text, _ = explain([str(inp / "good.warc.gz"), "--record", doc_id], capsys)
        assert code == 0
        result = text.strip().splitlines()[-1]
        assert result.startswith(f"result: {fate[doc_id]}"), (doc_id, result)
        assert "[url] KEEP" in text and "[trafilatura]" in text


def test_explain_text_on_stdin_and_ambiguous_warc(capsys, monkeypatch):
    text = "Short text."
    code, out, _ = explain(["-"], capsys, stdin=text, monkeypatch=monkeypatch)
    assert code == 0 and "[language]" in out and out.strip().splitlines()[-1].startswith("result:")
    assert "[trafilatura]" not in out  # plain text is not extracted
    code, _, err = explain([str(corpus("web", "warc", "dolma-sample-0001.warc.gz"))], capsys)
    assert code == 2 and "--record" in err


def test_shard_writers_racing_on_one_new_directory_all_succeed(tmp_path):
    """Workers writing shards of one category create its directory at once; none may fail."""
    import threading

    from beam_pipelines.common import write_shard
    from framework.data.document import Document

    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def write(shard: int) -> None:
        barrier.wait()
        try:
            doc = Document(id=f"doc-{shard}", text="some text")
            write_shard(str(tmp_path / "removed" / "language" / f"{shard:05d}.jsonl.gz"), [doc])
        except BaseException as exc:  # noqa: BLE001 — the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(read_docs(tmp_path / "removed" / "language")) == 8
