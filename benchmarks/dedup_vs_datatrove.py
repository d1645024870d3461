"""deepdive's MinHash dedup (Beam) vs datatrove's four MinHash stages, on the same documents.

Both sides: FineWeb settings (sha1, 5-grams, 14 × 8), 2 workers, the same input shards, in the
same run. Prints documents/s of each side, the ratio, and cluster agreement (the fraction of
documents whose duplicate cluster — the set of ids clustered together — is the same on both
sides; datatrove's clusters come from MinhashDedupCluster(save_cluster_id=True)).

Documents: main text of the pages in ../shared/corpora/web (trafilatura), plus edited copies
(1 % and 3 % of the words replaced, and exact copies) so that clusters exist.

    python benchmarks/dedup_vs_datatrove.py [--copies 3] [--shards 8]
        [--datatrove_python PATH] [--workdir /tmp/dedup_bench]

datatrove's Python: ``--datatrove_python``, else ``$DEEPDIVE_DATATROVE_PYTHON``, else a virtual
environment created in deepdive's cache directory on first use (``benchmarks/_peer_env.py``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import _peer_env  # noqa: E402

DATATROVE = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
inp, work, tasks, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1"))
times = {}
def run(name, pipeline, n):
    t = time.time()
    LocalPipelineExecutor(pipeline=pipeline, tasks=n, workers=min(workers, n),
                          logging_dir=f"{work}/logs/{name}").run()
    times[name] = time.time() - t
run("signatures", [JsonlReader(inp), MinhashDedupSignature(f"{work}/sigs", config=cfg)], tasks)
run("buckets", [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
    cfg.num_buckets)
run("cluster", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg,
                                    save_cluster_id=True)], 1)
run("filter", [JsonlReader(inp), MinhashDedupFilter(f"{work}/remove", load_cluster_ids=True,
               exclusion_writer=JsonlWriter(f"{work}/removed")), JsonlWriter(f"{work}/kept")],
    tasks)
print(json.dumps(times))
"""


def build_documents(workdir: Path, copies: int, shards: int) -> tuple[Path, int]:
    import trafilatura

    from tests.helpers import shared_dir

    base = shared_dir()
    if base is None:
        sys.exit("../shared/corpora is not available")
    cache = workdir / "pages.jsonl.gz"
    if not cache.exists():
        rows = [json.loads(x) for x in (base / "corpora/web/pages.jsonl").read_text().splitlines()]
        with gzip.open(cache, "wt") as f:
            for row in rows:
                html = gzip.decompress(
                    (base / f"corpora/web/html/{row['id']}.html.gz").read_bytes()
                )
                text = trafilatura.extract(html.decode("utf-8", errors="replace"))
                if text:
                    f.write(json.dumps({"id": row["id"], "text": text}) + "\n")
    pages = [json.loads(x) for x in gzip.open(cache, "rt")]
    rng = random.Random(0)
    docs = []
    for page in pages:
        docs.append({"id": page["id"], "text": page["text"], "metadata": {}})
        words = page["text"].split()
        for c in range(copies):
            edited = list(words)
            fraction = (0.0, 0.01, 0.03)[c % 3]
            for i in rng.sample(range(len(words)), int(len(words) * fraction)):
                edited[i] = f"qz{rng.randrange(10**9)}"
            docs.append({"id": f"{page['id']}-c{c}", "text": " ".join(edited), "metadata": {}})
    rng.shuffle(docs)
    inp = workdir / "input"
    shutil.rmtree(inp, ignore_errors=True)
    inp.mkdir(parents=True)
    for s in range(shards):
        with gzip.open(inp / f"{s:05d}.jsonl.gz", "wt") as f:
            for d in docs[s::shards]:
                f.write(json.dumps(d) + "\n")
    return inp, len(docs)


def clusters_from_deepdive(out: Path, ids: list[str]) -> dict[str, frozenset]:
    member = {i: frozenset([i]) for i in ids}
    for line in (out / "clusters.jsonl").read_text().splitlines():
        c = json.loads(line)
        group = frozenset([c["kept"], *c["removed"]])
        for i in group:
            member[i] = group
    return member


def clusters_from_datatrove(work: Path, ids: list[str]) -> dict[str, frozenset]:
    by_cluster: dict[tuple, set] = {}
    member = {i: frozenset([i]) for i in ids}
    for folder in ("kept", "removed"):
        for f in sorted((work / folder).glob("*.jsonl.gz")):
            for line in gzip.open(f, "rt"):
                d = json.loads(line)
                cid = d["metadata"].get("minhash_cluster_id", -1)
                if cid != -1:
                    by_cluster.setdefault(cid, set()).add(d["id"])
    for group in by_cluster.values():
        g = frozenset(group)
        for i in g:
            member[i] = g
    return member


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    _peer_env.add_peer_argument(ap, _peer_env.DATATROVE)
    ap.add_argument("--workdir", default="/tmp/dedup_bench")
    args = ap.parse_args()
    dt_python = _peer_env.peer_python(_peer_env.DATATROVE, args.datatrove_python)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    inp, n = build_documents(workdir, args.copies, args.shards)
    ids = [json.loads(x)["id"] for f in sorted(inp.glob("*.gz")) for x in gzip.open(f, "rt")]
    print(f"{n} documents in {args.shards} shards, {args.workers} workers each side")

    from beam_pipelines import minhash

    out = workdir / "deepdive"
    shutil.rmtree(out, ignore_errors=True)
    t = time.time()
    stats = minhash.build(input=str(inp / "*.jsonl.gz"), output_dir=str(out)).run(
        [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"],
        progress=False,
    )
    dd_time = time.time() - t

    dt_work = workdir / "datatrove"
    shutil.rmtree(dt_work, ignore_errors=True)
    t = time.time()
    proc = subprocess.run(
        [
            dt_python,
            "-c",
            DATATROVE,
            str(inp),
            str(dt_work),
            str(args.shards),
            str(args.workers),
        ],
        capture_output=True,
        text=True,
    )
    dt_time = time.time() - t
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    dt_stages = json.loads(proc.stdout.strip().splitlines()[-1])

    mine, theirs = clusters_from_deepdive(out, ids), clusters_from_datatrove(dt_work, ids)
    agree = sum(mine[i] == theirs[i] for i in ids) / len(ids)
    dt_removed = sum(1 for f in (dt_work / "removed").glob("*.gz") for _ in gzip.open(f, "rt"))
    print(f"{'':28s}{'deepdive':>12s}{'datatrove':>12s}{'ratio':>9s}")
    print(
        f"{'whole dedup, docs/s':28s}{n / dd_time:12.1f}{n / dt_time:12.1f}"
        f"{dt_time / dd_time:8.2f}x"
    )
    print(f"{'wall time, s':28s}{dd_time:12.1f}{dt_time:12.1f}")
    print(f"{'removed documents':28s}{stats['removed']:12d}{dt_removed:12d}")
    for name, sec in dt_stages.items():
        print(f"  datatrove {name:18s}{'':12s}{sec:12.1f}")
    for name, sec in stats["timings_s"].items():
        print(f"  deepdive {name:30s}{sec:7.1f}")
    print(f"cluster agreement: {agree:.4%} of {len(ids)} documents")


if __name__ == "__main__":
    main()
