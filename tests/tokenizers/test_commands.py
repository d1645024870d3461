"""`deepdive tokenizer train|encode|show|serve` and `deepdive tokenize`, end to end."""

from __future__ import annotations

import io
import json
import threading
import urllib.request

import numpy as np

from framework.cli import app as cli
from framework.data.document import Document, write_jsonl_gz
from framework.tokenize.files import load_tokenizer


def run_cli(argv, monkeypatch, capsys, stdin=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_bpe_from_txt_and_load_in_tiktoken(tmp_path, shakespeare, monkeypatch, capsys):
    import tiktoken
    import tiktoken.load

    text_file = tmp_path / "in.txt"
    text_file.write_text(shakespeare[:100_000])
    out = tmp_path / "tok"
    code, stdout, err = run_cli(
        [
            "tokenizer",
            "train",
            "--gin_file",
            "tokenizers/bpe.gin",
            f"--gin.INPUT={json.dumps(str(text_file))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(out))}",
            "--gin.VOCAB_SIZE=600",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "saved" in stdout
    assert {"bpe.tiktoken", "tokenizer.json", "config.gin", "training.json"} <= {
        p.name for p in out.iterdir()
    }
    ours = load_tokenizer(out)
    assert ours.vocab_size == 601 and ours.eot_id == 600
    ranks = tiktoken.load.load_tiktoken_bpe(str(out / "bpe.tiktoken"))
    theirs = tiktoken.Encoding("t", pat_str=ours.pattern, mergeable_ranks=ranks, special_tokens={})
    sample = shakespeare[100_000:110_000]
    assert theirs.encode_ordinary(sample) == ours.encode_ordinary(sample)

    code, stdout, _ = run_cli(
        ["tokenizer", "encode", "--tokenizer", str(out)], monkeypatch, capsys, "First Citizen"
    )
    assert code == 0 and json.loads(stdout) == ours.encode("First Citizen")
    code, _, err = run_cli(
        ["tokenizer", "encode", "--tokenizer", str(out)], monkeypatch, capsys, "<|endoftext|>"
    )
    assert code == 2 and "disallowed" in err
    code, stdout, _ = run_cli(
        ["tokenizer", "encode", "--tokenizer", str(out), "--allowed_special", "all"],
        monkeypatch,
        capsys,
        "<|endoftext|>",
    )
    assert json.loads(stdout) == [600]

    code, stdout, _ = run_cli(
        ["tokenizer", "show", "--tokenizer", str(out), "--no_colour", "To be, or not"],
        monkeypatch,
        capsys,
    )
    n = len(ours.encode("To be, or not"))
    assert code == 0 and f"{n} tokens" in stdout and "[To]" in stdout


def test_train_rejects_small_vocab_and_missing_input(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        [
            "tokenizer",
            "train",
            f"--gin.INPUT={json.dumps(str(tmp_path / 'none*.txt'))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(tmp_path / 'o'))}",
            "--gin.VOCAB_SIZE=100",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "VOCAB_SIZE" in err
    code, _, err = run_cli(
        [
            "tokenizer",
            "train",
            f"--gin.INPUT={json.dumps(str(tmp_path / 'none*.txt'))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(tmp_path / 'o'))}",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "no files match" in err
    code, _, err = run_cli(
        ["tokenizer", "encode", "--tokenizer", str(tmp_path / "nope")], monkeypatch, capsys, "x"
    )
    assert code == 2 and "not found" in err


def test_explorer_server_encodes_for_every_tokenizer(small_bpe, byte_tok):
    from framework.tokenize.explorer import make_server

    server = make_server([small_bpe, byte_tok], port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        page = urllib.request.urlopen(f"http://{host}:{port}/").read().decode()
        assert "token explorer" in page and "/api/encode" in page
        body = json.dumps({"text": "To be, or not to be 😀"}).encode()
        request = urllib.request.Request(
            f"http://{host}:{port}/api/encode", body, {"Content-Type": "application/json"}
        )
        data = json.loads(urllib.request.urlopen(request).read())
        bpe_view, byte_view = data["tokenizers"]
        assert bpe_view["count"] == len(small_bpe.encode("To be, or not to be 😀"))
        assert [t["id"] for t in bpe_view["tokens"]] == small_bpe.encode("To be, or not to be 😀")
        assert byte_view["count"] == len("To be, or not to be 😀".encode())
        assert "<0xF0>" in "".join(t["text"] for t in byte_view["tokens"])
    finally:
        server.shutdown()
        server.server_close()


def test_tokenize_pipeline_writes_shards_grain_can_read(tmp_path, small_bpe, monkeypatch, capsys):
    import grain

    tok_dir = small_bpe.save(tmp_path / "tok")
    docs = [Document(f"doc{i:04d}", f"Document number {i}. " * (i % 7 + 1)) for i in range(300)]
    write_jsonl_gz(tmp_path / "in" / "00000.jsonl.gz", docs[:150])
    write_jsonl_gz(tmp_path / "in" / "00001.jsonl.gz", docs[150:])
    (tmp_path / "in" / "00002.jsonl").write_text('not json\n{"id": "z", "text": 3}\n')
    out = tmp_path / "tokens"
    code, stdout, err = run_cli(
        [
            "tokenize",
            f"--gin.TOKENIZER={json.dumps(str(tok_dir))}",
            f"--gin.INPUT={json.dumps(str(tmp_path / 'in' / '*.jsonl*'))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(out))}",
            "--gin.VALIDATION_FRACTION=0.05",
            "--no_progress",
            "--",
            "--direct_num_workers=1",
            "--direct_running_mode=in_memory",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert (out / "COMPLETED").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["eot_id"] == small_bpe.eot_id
    assert manifest["tokenizer"] == str(tok_dir.resolve())
    train, val = manifest["splits"]["train"], manifest["splits"]["validation"]
    assert train["documents"] + val["documents"] == 300 and val["documents"] >= 1
    assert len(train["shards"]) == 3  # one per input file

    by_id = {d.id: d for d in docs}
    from plugins.tokenizers.bpe import BPETokenizer  # noqa: F401 - same tokenizer, loaded

    decoded = []
    for split in ("train", "validation"):
        paths = [str(out / s) for s in manifest["splits"][split]["shards"]]
        source = grain.sources.ArrayRecordDataSource(paths)
        arrays = [np.frombuffer(source[i], dtype="<u2") for i in range(len(source))]
        assert sum(len(a) for a in arrays) == manifest["splits"][split]["tokens"]
        assert all(a[-1] == small_bpe.eot_id for a in arrays)
        decoded += [small_bpe.decode(a[:-1].tolist()) for a in arrays]
    assert sorted(decoded) == sorted(d.text for d in by_id.values())
    assert train["bytes"] + val["bytes"] == sum(len(d.text.encode()) for d in docs)
    errors = list((out / "errors").glob("*.jsonl.gz"))
    assert errors, "malformed records are written aside"
    assert "2 malformed" in stdout


def _train_bpe(tmp_path, text, vocab, monkeypatch, capsys):
    text_file = tmp_path / "in.txt"
    text_file.write_text(text)
    argv = ["tokenizer", "train", "--gin_file", "tokenizers/bpe.gin",
            f"--gin.INPUT={json.dumps(str(text_file))}",
            f"--gin.OUTPUT_DIR={json.dumps(str(tmp_path / 'tok'))}", f"--gin.VOCAB_SIZE={vocab}"]  # fmt: skip
    return run_cli(argv, monkeypatch, capsys)


def test_train_on_an_empty_corpus_exits_2_naming_the_input(tmp_path, monkeypatch, capsys):
    code, _, err = _train_bpe(tmp_path, "", 512, monkeypatch, capsys)
    assert code == 2
    assert "in.txt" in err and "no text" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "tok" / "bpe.tiktoken").exists()


def test_train_says_how_many_merges_a_small_corpus_allowed(tmp_path, monkeypatch, capsys):
    # "abab": the chunk "abab" has pairs ab, ba -> merge 1 (a,b) gives [ab ab], merge 2 (ab,ab):
    # then one token, nothing left to merge — 256 + 2 = 258 of the 512 asked (hand count).
    code, out, _ = _train_bpe(tmp_path, "abab", 512, monkeypatch, capsys)
    assert code == 0
    assert "asked for VOCAB_SIZE 512, made 258" in out
    stats = json.loads((tmp_path / "tok" / "training.json").read_text())
    assert "made 258" in stats["note"]
