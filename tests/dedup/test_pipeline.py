"""The Beam MinHash pipeline end to end: clusters, outputs, skewed buckets, connected components."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import apache_beam as beam
from apache_beam.testing.util import assert_that

from beam_pipelines import minhash as mh
from framework.data.document import Document, read_jsonl, write_jsonl_gz

FAST = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _read_dir(path) -> dict[str, Document]:
    return {d.id: d for f in sorted(path.glob("*.jsonl.gz")) for d in read_jsonl(f)}


def _edit(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, round(len(words) * fraction))):
        words[i] = f"qz{rng.randrange(10**9)}"
    return " ".join(words)


def test_pipeline_clusters_copies_and_writes_every_output(english_pages, tmp_path):
    rng = random.Random(7)
    docs = []
    for pid, text in english_pages[:8]:
        docs.append(Document(f"{pid}-b", text, {"url": pid}))
        docs.append(Document(f"{pid}-a", _edit(text, 0.005, rng)))  # smallest id: kept
        docs.append(Document(f"{pid}-c", text))  # exact copy
    docs.append(Document("short", "just four words here"))
    rng.shuffle(docs)
    write_jsonl_gz(tmp_path / "in" / "00000.jsonl.gz", docs[:13])
    write_jsonl_gz(tmp_path / "in" / "00001.jsonl.gz", docs[13:])
    with gzip.open(tmp_path / "in" / "00001.jsonl.gz", "at") as f:
        f.write("{broken json\n")
    out = tmp_path / "out"
    stats = mh.build(input=str(tmp_path / "in" / "*.jsonl.gz"), output_dir=str(out)).run(
        FAST, progress=False
    )

    clusters = [json.loads(line) for line in (out / "clusters.jsonl").read_text().splitlines()]
    expected = {f"{pid}-a": [f"{pid}-b", f"{pid}-c"] for pid, _ in english_pages[:8]}
    assert {c["kept"]: c["removed"] for c in clusters} == expected
    assert all(c["size"] == 3 for c in clusters)
    kept, removed = _read_dir(out / "documents"), _read_dir(out / "removed" / "minhash")
    assert set(kept) == set(expected) | {"short"}
    assert kept["short"].text == "just four words here"
    assert {d: removed[d].metadata["duplicate_of"] for d in removed} == {
        r: k for k, rs in expected.items() for r in rs
    }
    assert removed[f"{english_pages[0][0]}-b"].metadata["url"] == english_pages[0][0]
    errors = _read_dir(out / "errors")
    assert len(errors) == 1 and "malformed_record" in next(iter(errors.values())).metadata["error"]
    assert (stats["documents"], stats["signed"], stats["no_signature"], stats["malformed"]) == (
        25,
        24,
        1,
        1,
    )
    assert (stats["kept"], stats["removed"], stats["clusters"]) == (9, 16, 8)
    assert (out / "COMPLETED").exists() and json.loads((out / "stats.json").read_text())
    assert not (out / mh.WORK_DIR).exists()


def test_more_rounds_than_one_pipeline_gives_the_same_outputs(english_pages, tmp_path):
    """The first pipeline's speculative outputs are replaced when its rounds did not converge."""
    rng = random.Random(11)
    docs = []
    for pid, text in english_pages[:6]:
        chain = text  # a chain of near-copies: components need several rounds
        for k in range(4):
            chain = _edit(chain, 0.004, rng)
            docs.append(Document(f"{pid}-{k}", chain))
    rng.shuffle(docs)
    for s in range(3):
        write_jsonl_gz(tmp_path / "in" / f"{s:05d}.jsonl.gz", docs[s::3])
    runs = {}
    for rounds in (1, 4):
        out = tmp_path / f"out{rounds}"
        stats = mh.build(
            input=str(tmp_path / "in"), output_dir=str(out), rounds_per_pipeline=rounds
        ).run(FAST, progress=False)
        runs[rounds] = (out, stats)
    (one, one_stats), (four, four_stats) = runs[1], runs[4]
    assert one_stats["cc_rounds"] > 1 and "clusters_and_shards_s" in one_stats["timings_s"]
    assert "clusters_and_shards_s" not in four_stats["timings_s"]  # converged: one pipeline
    assert (one / "clusters.jsonl").read_text() == (four / "clusters.jsonl").read_text()
    for category in ("documents", "removed/minhash"):
        assert sorted(p.name for p in (one / category).iterdir()) == sorted(
            p.name for p in (four / category).iterdir()
        )
        assert _read_dir(one / category).keys() == _read_dir(four / category).keys()
    assert (one_stats["kept"], one_stats["removed"]) == (four_stats["kept"], four_stats["removed"])


def test_skewed_bucket_of_thousands_of_identical_documents(tmp_path):
    """3000 identical documents share every bucket: one group per band, one star cluster."""
    text = "the same boilerplate cookie banner text repeated on every single page of the site"
    docs = [Document(f"d{i:05d}", text) for i in range(3000)]
    rng = random.Random(5)
    docs += [  # digits would all become "0": unique pages use random letter words
        Document(f"u{i}", " ".join("".join(rng.choices("abcdefgh", k=6)) for _ in range(12)))
        for i in range(50)
    ]
    for s in range(3):
        write_jsonl_gz(tmp_path / "in" / f"{s:05d}.jsonl.gz", docs[s::3])
    stats = mh.build(input=str(tmp_path / "in"), output_dir=str(tmp_path / "out")).run(
        FAST, progress=False
    )
    (cluster,) = [json.loads(x) for x in (tmp_path / "out" / "clusters.jsonl").open()]
    assert cluster["kept"] == "d00000" and cluster["size"] == 3000
    assert cluster["removed"] == [f"d{i:05d}" for i in range(1, 3000)]
    assert stats["kept"] == 51 and stats["removed"] == 2999
    # candidate edges are stars (size - 1 per bucket), never all pairs
    assert stats["candidate_edges"] == 14 * 2999


def _union_find(nodes, edges):
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in nodes if find(n) != n}


def test_large_small_star_rounds_match_union_find():
    rng = random.Random(3)
    nodes = [(f"n{i:04d}", 0, i) for i in range(300)]
    order = nodes[:60]
    rng.shuffle(order)
    edges = list(zip(order, order[1:], strict=False))  # a 60-node path in random id order
    edges += [(rng.choice(nodes[60:]), rng.choice(nodes[60:])) for _ in range(150)]
    edges = [(a, b) for a, b in edges if a != b]
    expected = _union_find(nodes, edges)

    def check(pairs):
        got = {}
        for a, b in pairs:
            leaf, root = (a, b) if b < a else (b, a)
            got[leaf] = min(got.get(leaf, root), root)
        assert got == expected

    with beam.Pipeline(argv=FAST) as p:
        result = p | beam.Create(edges) | mh.ConnectedComponentRounds(1, 14)
        assert_that(result, check)


def test_cli_dry_run_and_bad_input(tmp_path):
    write_jsonl_gz(tmp_path / "in" / "00000.jsonl.gz", [Document("a", "x")])
    base = [sys.executable, "-m", "framework", "dedup", "--gin.OUTPUT_DIR", f'"{tmp_path}/o"']
    ok = subprocess.run(
        base + ["--gin.INPUT", f'"{tmp_path}/in"', "--dry_run"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "1 input files" in ok.stdout
    bad = subprocess.run(
        base + ["--gin.INPUT", f'"{tmp_path}/nothing/*.jsonl.gz"'], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no files match" in bad.stderr
