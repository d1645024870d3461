"""Decision-for-decision agreement of deepdive's FineWeb filters and PII formatter with datatrove's.

Texts: Trafilatura extractions of the shared web corpus pages (``shared/corpora/web/html``, with the
page URLs from ``pages.jsonl``) plus synthetic variants of them that push every rule to its boundary
(truncations, duplicated lines, bullets, ellipses, citations, curly brackets, ...) and synthetic
URLs. Every filter sees every text on its own (not chained). datatrove runs in its own virtual
environment through ``_datatrove_filters.py`` (``--datatrove_python``, else
``$DEEPDIVE_DATATROVE_PYTHON``, else one created in deepdive's cache directory: ``_peer_env.py``);
its language filter is pointed at the same ``lid.176.ftz`` and its URL filter at deepdive's default
lists (``use_integrated_lists=False``), so both sides judge the same model and lists.

    python benchmarks/filters_vs_datatrove.py [--limit N] [--no_synthetic] [--json OUT]
        [--datatrove_python PATH]

Prints, per filter: documents, agreement (same keep/drop and same reason; for ``c4_quality`` also the
same rewritten text), and the seconds each side spent in that filter. Target: >= 99.5 % each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._peer_env import DATATROVE, add_peer_argument, peer_python  # noqa: E402

FILTERS = [
    "url",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4_quality",
    "fineweb_quality",
]


def _shared() -> Path:
    from tests.helpers import shared_dir

    base = shared_dir()
    if base is None:
        sys.exit("shared/corpora not found (set DEEPDIVE_SHARED)")
    return base / "corpora" / "web"


def _extract(path: str) -> str:
    import trafilatura

    html = gzip.open(path, "rb").read()
    try:
        return (
            trafilatura.extract(
                html, favor_precision=True, include_comments=False, deduplicate=False
            )
            or ""
        )
    except Exception:  # noqa: BLE001 - a page that cannot be extracted is simply skipped
        return ""


def corpus_texts(cache: Path, limit: int | None) -> list[dict]:
    """[{id, url, text}] of the extracted pages (cached: extraction takes a minute or two)."""
    if cache.exists():
        rows = [json.loads(line) for line in cache.open()]
    else:
        web = _shared()
        pages = [json.loads(line) for line in (web / "pages.jsonl").open()]
        paths = [str(web / "html" / f"{p['id']}.html.gz") for p in pages]
        from tqdm import tqdm

        with ProcessPoolExecutor(2) as pool:
            texts = list(tqdm(pool.map(_extract, paths, chunksize=8), total=len(paths),
                              desc="extracting"))  # fmt: skip
        rows = [
            {"id": p["id"], "url": p["url"], "text": t}
            for p, t in zip(pages, texts, strict=True)
            if t
        ]
        with cache.open("w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows[:limit] if limit else rows


def synthetic(rows: list[dict], seed: int = 0) -> list[dict]:
    """Variants of the corpus texts that land on and around each rule's threshold."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        lines = row["text"].split("\n")
        n = len(lines)
        base = {"url": row["url"]}

        def add(kind: str, text: str, base: dict = base, row: dict = row) -> None:
            out.append({**base, "id": f"{row['id']}:{kind}", "text": text})

        for k in sorted({1, 2, 3, 5, max(1, n // 3), max(1, n // 2)}):
            add(f"head{k}", "\n".join(lines[:k]))
        dup = [line for line in lines for _ in range(2 if rng.random() < 0.3 else 1)]
        add("dup_lines", "\n".join(dup))
        add("paragraphs", "\n\n".join(lines))
        add("bullets", "\n".join(("- " + s) if rng.random() < 0.9 else s for s in lines))
        add("ellipsis", "\n".join((s + "...") if rng.random() < 0.35 else s for s in lines))
        add("hashes", "\n".join(("# " + s) if rng.random() < 0.5 else s for s in lines))
        add("citations", "\n".join(s + rng.choice(["[1]", "[edit]", "[]", " [citation needed]", ""])
                                   for s in lines))  # fmt: skip
        add("no_punct", "\n".join(s.rstrip(".!?") for s in lines))
        if n > 2:
            i = rng.randrange(n)
            add("curly", "\n".join(s + (" {x}" if j == i else "") for j, s in enumerate(lines)))
            add(
                "lorem",
                "\n".join(s + (" Lorem Ipsum" if j == i else "") for j, s in enumerate(lines)),
            )
            add(
                "javascript",
                "\n".join(s + (" JavaScript" if j % 3 == 0 else "") for j, s in enumerate(lines)),
            )
            add(
                "cookies",
                "\n".join(
                    s + (" This site uses cookies." if j % 4 == 0 else "")
                    for j, s in enumerate(lines)
                ),
            )
        words = row["text"].split()
        if len(words) > 20:
            add("one_line", " ".join(words))
            add("word_per_line", "\n".join(words[:200]))
            add("caps", row["text"].replace("the ", "The ").replace("and ", "And "))
    # URL variants built from list words in different cases and places.
    from plugins.filters.url import ASSETS, read_list

    hard = read_list(ASSETS / "banned_words.txt")
    soft = read_list(ASSETS / "soft_banned_words.txt")
    sub = read_list(ASSETS / "banned_subwords.txt")
    dom = read_list(ASSETS / "domains.txt")
    for i in range(600):
        kind = i % 6
        if kind == 0:
            url = f"https://example{i}.com/{rng.choice(hard)}/page"
        elif kind == 1:
            url = f"https://example{i}.org/{rng.choice(hard).upper()}-x"
        elif kind == 2:
            url = f"http://site{i}.net/{rng.choice(soft)}-{rng.choice(soft)}.html"
        elif kind == 3:
            url = f"http://site{i}.net/a{rng.choice(sub)}b?q={rng.choice(soft)}"
        elif kind == 4:
            url = f"https://{rng.choice(['www.', 'm.', 'de.', ''])}{rng.choice(dom)}/video/{i}"
        else:
            url = f"https://{rng.choice(['forums.', ''])}example.co.uk/{rng.choice(soft)}_{i}"
        out.append({"id": f"url{i}", "url": url, "text": "x"})
    out.append({"id": "empty", "url": "https://example.com/", "text": ""})
    return out


def run_deepdive(rows: list[dict]) -> tuple[list[dict], dict[str, float]]:
    from framework.core import discovery
    from framework.core.registry import FILTERS as REG
    from framework.core.registry import FORMATTERS
    from framework.data.document import Document

    discovery.load_plugins()
    filters = {name: REG.build(name) for name in FILTERS}
    pii = FORMATTERS.build("pii")
    times = dict.fromkeys([*FILTERS, "pii"], 0.0)
    results = []
    for rec in rows:
        row = {"id": rec["id"]}
        for name, flt in filters.items():
            doc = Document(rec["id"], rec["text"], {"url": rec.get("url") or ""})
            t = time.perf_counter()
            try:
                res = flt.filter(doc)
            except Exception as e:  # noqa: BLE001
                res = (False, f"EXCEPTION {type(e).__name__}")
            times[name] += time.perf_counter() - t
            keep, reason = (res, None) if isinstance(res, bool) else res
            row[name] = [bool(keep), reason]
            if name == "c4_quality" and keep:
                row["c4_text"] = doc.text
            if name == "language":
                row["lang"] = [doc.metadata.get("language"), doc.metadata.get("language_score")]
        t = time.perf_counter()
        row["pii_text"] = pii.format_text(rec["text"])
        times["pii"] += time.perf_counter() - t
        results.append(row)
    return results, times


def run_datatrove(rows: list[dict], dt_python: str) -> tuple[list[dict], dict[str, float]]:
    from plugins.filters.language import default_model_path
    from plugins.filters.url import ASSETS

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        with open(inp, "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        script = Path(__file__).with_name("_datatrove_filters.py")
        proc = subprocess.run(
            [dt_python, str(script), inp, out, default_model_path(), str(ASSETS)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            sys.exit(f"datatrove side failed:\n{proc.stderr[-3000:]}")
        times = json.loads(proc.stdout.strip().splitlines()[-1])
        return [json.loads(line) for line in open(out)], times


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    report: dict = {}
    for name in [*FILTERS, "pii"]:
        agree, diffs = 0, []
        for a, b in zip(ours, theirs, strict=True):
            if name == "pii":
                same = a["pii_text"] == b["pii_text"]
            else:
                same = a[name] == b[name]
                if same and name == "c4_quality" and a[name][0]:
                    same = a.get("c4_text") == b.get("c4_text")
            agree += same
            if not same:
                diffs.append({"id": a["id"], "deepdive": a.get(name), "datatrove": b.get(name)})
        report[name] = {"docs": len(ours), "agree": agree, "rate": agree / len(ours),
                        "disagreements": diffs[:20]}  # fmt: skip
    score_diffs = [
        abs(a["lang"][1] - b["lang"][1])
        for a, b in zip(ours, theirs, strict=True)
        if a["lang"][1] is not None and b["lang"][1] is not None
    ]
    report["language_max_score_diff"] = max(score_diffs, default=0.0)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N pages only")
    parser.add_argument("--no_synthetic", action="store_true", help="corpus texts only")
    add_peer_argument(parser, DATATROVE, "--dt_python")
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "deepdive_web_texts.jsonl")
    )
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args()

    dt_python = peer_python(DATATROVE, args.datatrove_python)
    rows = corpus_texts(Path(args.cache), args.limit)
    n_corpus = len(rows)
    if not args.no_synthetic:
        rows = rows + synthetic(rows)
    print(f"texts: {n_corpus} extracted pages + {len(rows) - n_corpus} synthetic variants")
    ours, t_ours = run_deepdive(rows)
    theirs, t_theirs = run_datatrove(rows, dt_python)
    report = compare(ours, theirs)
    print(
        f"{'filter':<20}{'docs':>7}{'agree':>8}{'rate':>9}{'deepdive s':>12}{'datatrove s':>13}{'speed-up':>10}"
    )
    for name in [*FILTERS, "pii"]:
        r = report[name]
        a, b = t_ours[name], t_theirs[name]
        print(f"{name:<20}{r['docs']:>7}{r['agree']:>8}{100 * r['rate']:>8.2f}%{a:>12.2f}{b:>13.2f}"
              f"{(b / a if a else float('nan')):>9.2f}x")  # fmt: skip
    tot_a = sum(t_ours[n] for n in FILTERS)
    tot_b = sum(t_theirs[n] for n in FILTERS)
    print(f"{'all filters':<40}{tot_a:>12.2f}{tot_b:>13.2f}{tot_b / tot_a:>9.2f}x")
    print(f"max |language score difference|: {report['language_max_score_diff']:.2e}")
    for name in [*FILTERS, "pii"]:
        for d in report[name]["disagreements"][:3]:
            print(
                f"  {name} differs on {d['id']}: deepdive={d['deepdive']} datatrove={d['datatrove']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    worst = min(report[n]["rate"] for n in [*FILTERS, "pii"])
    return 0 if worst >= 0.995 else 1


if __name__ == "__main__":
    raise SystemExit(main())
