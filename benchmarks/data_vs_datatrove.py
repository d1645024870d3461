"""deepdive's FineWeb chain vs datatrove's on the same WARC: pages/s and decision agreement.

    python benchmarks/data_vs_datatrove.py [--warc FILE] [--workers 2] [--datatrove_python PATH]

datatrove runs in its own virtual environment (``--datatrove_python``, else
``$DEEPDIVE_DATATROVE_PYTHON``, else one in deepdive's cache directory, created on first use with
``pip install 'datatrove[processing]' spacy lxml_html_clean ...``: see ``_peer_env.py``). Both
sides run offline: datatrove's LanguageFilter is pointed at the ``lid.176.ftz`` that deepdive's
language filter uses (datatrove would download ``lid.176.bin``), and its URLFilter uses its
integrated block lists.

Runs, each with ``--workers`` workers (datatrove: LocalPipelineExecutor tasks = workers = N;
deepdive: ``deepdive data`` on Beam's DirectRunner, multi_processing, N workers):

1. whole chain: WarcReader → URLFilter → Trafilatura(favour_precision) → LanguageFilter(["en"])
   → GopherRepetition → GopherQuality → C4Quality(filter_no_terminal_punct=False)
   → FineWebQuality; every filter's drops saved, so each page's fate is known on both sides;
2. filters only: both chains minus URL filter and extraction, on the same extracted texts
   (deepdive's extraction of the WARC, written by an extraction-only deepdive run).

Throughput is pages (input records) / wall seconds of the pipeline run itself (datatrove:
``executor.run()``; deepdive: ``stats.json`` wall time, Beam start-up and worker start included),
measured in separate processes one after the other on the same machine. One-time preparation
is outside both timings: datatrove's download of its block lists, deepdive's cached hash index
of them (``plugins/filters/blocklist.py``). Agreement: keep-agreement
= pages whose kept/dropped verdict matches; first-drop agreement = pages dropped by datatrove that
deepdive drops at the same step (a page that Trafilatura returns empty for, or times out on, counts
as dropped by ``trafilatura``).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._peer_env import DATATROVE, add_peer_argument, peer_python  # noqa: E402

DEFAULT_WARC = "../shared/corpora/web/warc/trafilatura-pages.warc.gz"
STEPS = ["url", "language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]

DATATROVE_RUNNER = textwrap.dedent(
    '''
    """Run datatrove's FineWeb chain (written by benchmarks/data_vs_datatrove.py)."""
    import json, os, sys, time

    from fasttext.FastText import _FastText
    from datatrove.utils import lid

    CONFIG = json.loads(sys.argv[1])


    def _model(self):  # offline: the same lid.176.ftz deepdive's language filter uses
        if self._model is None:
            self._model = _FastText(CONFIG["ftz"])
        return self._model


    lid.FastTextLID.model = property(_model)

    if __name__ == "__main__":
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.filters import (
            C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
            GopherRepetitionFilter, LanguageFilter, URLFilter,
        )
        from datatrove.pipeline.readers import JsonlReader, WarcReader
        from datatrove.pipeline.writers import JsonlWriter

        out = CONFIG["output"]

        def removed(name):
            return JsonlWriter(f"{out}/removed/{name}", output_filename="${rank}.jsonl.gz")

        if CONFIG["mode"] == "chain":
            steps = [
                WarcReader(CONFIG["input_dir"], glob_pattern=CONFIG["glob"]),
                URLFilter(exclusion_writer=removed("url")),
                Trafilatura(favour_precision=True, timeout=CONFIG["timeout"]),
            ]
        else:
            steps = [JsonlReader(CONFIG["input_dir"], glob_pattern=CONFIG["glob"])]
        steps += [
            LanguageFilter(languages=["en"], exclusion_writer=removed("language")),
            GopherRepetitionFilter(exclusion_writer=removed("gopher_repetition")),
            GopherQualityFilter(exclusion_writer=removed("gopher_quality")),
            C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=removed("c4_quality")),
            FineWebQualityFilter(exclusion_writer=removed("fineweb_quality")),
            JsonlWriter(f"{out}/documents", output_filename="${rank}.jsonl.gz"),
        ]
        executor = LocalPipelineExecutor(
            pipeline=steps, tasks=CONFIG["workers"], workers=CONFIG["workers"],
            logging_dir=f"{out}/logs", skip_completed=False,
        )
        start = time.time()
        executor.run()
        print(json.dumps({"wall_s": time.time() - start}))
    '''
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# runs


def run_datatrove(
    python: str, mode: str, input_glob: str, out: Path, workers: int, ftz: str, timeout: float = 1.0
):
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = out / "run_datatrove.py"
    script.write_text(DATATROVE_RUNNER)
    config = {
        "mode": mode,
        "input_dir": os.path.dirname(input_glob),
        "glob": os.path.basename(input_glob),
        "output": str(out),
        "workers": workers,
        "ftz": ftz,
        "timeout": timeout,
    }
    start = time.time()
    proc = subprocess.run(
        [python, str(script), json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=out,
    )
    if proc.returncode != 0:
        sys.exit(f"datatrove run failed:\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])["wall_s"], time.time() - start


def datatrove_url_lists(python: str) -> list[str]:
    """gin bindings pointing deepdive's url filter at the lists datatrove used in this run."""
    probe = (
        "import json; from datatrove.io import cached_assets_path; "
        "from datatrove.pipeline.filters.url_filter import ASSETS_PATH; "
        "print(json.dumps([str(cached_assets_path(library_name='datatrove', namespace='filters', "
        "subfolder='url_filter')), str(ASSETS_PATH)]))"
    )
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    cache, assets = json.loads(proc.stdout.strip().splitlines()[-1])
    return [
        f"--gin.filters.url.domain_files={json.dumps([cache + '/domains'])}",
        f"--gin.filters.url.url_files={json.dumps([cache + '/urls'])}",
        f"--gin.filters.url.banned_words_file={json.dumps(assets + '/banned_words.txt')}",
        f"--gin.filters.url.soft_banned_words_file={json.dumps(assets + '/soft_banned_words.txt')}",
        f"--gin.filters.url.banned_subwords_file={json.dumps(assets + '/banned_subwords.txt')}",
    ]


def warm_block_lists(bindings: list[str]) -> None:
    """Build deepdive's cached index of the large block lists before timing (once per list file,
    as datatrove's download and extraction of its lists happen before its timed run)."""
    from plugins.filters.blocklist import BlockList

    for binding in bindings:
        name, _, value = binding.partition("=")
        if name.endswith(("domain_files", "url_files")):
            BlockList(json.loads(value))


def run_deepdive(input_glob: str, out: Path, workers: int, bindings: list[str]):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "framework",
        "data",
        "--gin_file",
        "data/fineweb.gin",
        f"--gin.INPUT={json.dumps(input_glob)}",
        f"--gin.OUTPUT_DIR={json.dumps(str(out))}",
        "--no_progress",
        *bindings,
        "--",
        f"--direct_num_workers={workers}",
        "--direct_running_mode=multi_processing",
    ]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"deepdive run failed:\n{proc.stderr[-4000:]}")
    stats = json.loads((out / "stats.json").read_text())
    return stats["wall_time_s"], time.time() - start, stats


# ----------------------------------------------------------------------------------------------
# decisions


def ids_in(pattern: str) -> list[str]:
    ids = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            ids += [json.loads(line)["id"] for line in f if line.strip()]
    return ids


def decisions(out: Path, all_ids: list[str]) -> dict[str, str]:
    """id → "keep" | first dropping step ("trafilatura" when the page vanished at extraction)."""
    fate = {}
    for step in STEPS:
        for doc_id in ids_in(str(out / "removed" / step / "*.jsonl.gz")):
            fate[doc_id] = step
    for doc_id in ids_in(str(out / "removed" / "trafilatura" / "*.jsonl.gz")):
        fate[doc_id] = "trafilatura"
    for doc_id in ids_in(str(out / "documents" / "*.jsonl.gz")):
        fate[doc_id] = "keep"
    return {i: fate.get(i, "trafilatura") for i in all_ids}


def agreement(dt: dict[str, str], dd: dict[str, str]) -> dict:
    ids = sorted(dt)
    keep_same = sum((dt[i] == "keep") == (dd[i] == "keep") for i in ids)
    dropped = [i for i in ids if dt[i] != "keep"]
    first_same = sum(dt[i] == dd[i] for i in dropped)
    diffs = [(i, dt[i], dd[i]) for i in ids if dt[i] != dd[i]]
    return {
        "pages": len(ids),
        "kept": {
            "datatrove": sum(v == "keep" for v in dt.values()),
            "deepdive": sum(v == "keep" for v in dd.values()),
        },
        "keep_agreement": keep_same / len(ids) if ids else 1.0,
        "first_drop_agreement": first_same / len(dropped) if dropped else 1.0,
        "dropped_by_datatrove": len(dropped),
        "differences": diffs,
    }


def all_record_ids(warc: str) -> list[str]:
    from framework.data.readers import read_any

    return [it.doc.id for it in read_any(warc) if it.kind in ("page", "error")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warc", default=str((REPO / DEFAULT_WARC).resolve()))
    parser.add_argument("--workers", type=int, default=2)
    add_peer_argument(parser, DATATROVE, "--dtvenv")
    parser.add_argument("--work_dir", default=None, help="keep outputs here (default: temp)")
    parser.add_argument("--skip_filters_only", action="store_true")
    parser.add_argument(
        "--datatrove_timeout",
        type=float,
        default=1.0,
        help="datatrove's Trafilatura time limit in wall seconds (FineWeb: 1); on a loaded "
        "machine wall-clock timeouts drop pages that deepdive (CPU-time limit) extracts",
    )
    parser.add_argument(
        "--deepdive_timeout", type=float, default=1.0, help="deepdive's limit (CPU seconds)"
    )
    parser.add_argument(
        "--url_lists",
        choices=["datatrove", "deepdive"],
        default="datatrove",
        help="block lists for deepdive's url filter: datatrove's (its integrated UT1-derived "
        "lists and word files, as in this comparison's datatrove run) or deepdive's defaults",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from plugins.filters.language import default_model_path

    ftz = default_model_path()
    python = peer_python(DATATROVE, args.datatrove_python)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="data_vs_datatrove-"))
    warc = os.path.abspath(args.warc)
    load = os.getloadavg()[0]
    ids = all_record_ids(warc)
    log(f"{len(ids)} pages in {warc}; {args.workers} workers each; load average {load:.1f}")

    log("datatrove: whole chain ...")
    dt_s, dt_total = run_datatrove(
        python, "chain", warc, work / "dt_chain", args.workers, ftz, args.datatrove_timeout
    )
    log("deepdive: whole chain ...")
    timeout_binding = [f"--gin.extractors.trafilatura.timeout={args.deepdive_timeout}"]
    url_binding = datatrove_url_lists(python) if args.url_lists == "datatrove" else []
    warm_block_lists(url_binding)
    dd_s, dd_total, dd_stats = run_deepdive(
        warc, work / "dd_chain", args.workers, timeout_binding + url_binding
    )
    agree = agreement(decisions(work / "dt_chain", ids), decisions(work / "dd_chain", ids))
    result = {
        "pages": len(ids),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "url_lists": args.url_lists,
        "errors": {"deepdive": dd_stats["errors"]},
        "timeouts": {
            "datatrove_wall_s": args.datatrove_timeout,
            "deepdive_cpu_s": args.deepdive_timeout,
        },
        "chain": {
            "datatrove_pages_per_s": len(ids) / dt_s,
            "deepdive_pages_per_s": len(ids) / dd_s,
            "ratio": dt_s / dd_s,
            "datatrove_wall_s": dt_s,
            "deepdive_wall_s": dd_s,
            "datatrove_process_s": dt_total,
            "deepdive_command_s": dd_total,
        },
        "agreement": agree,
    }
    if not args.skip_filters_only:
        log("deepdive: extraction only (texts for the filters-only runs) ...")
        _s, _t, ext_stats = run_deepdive(
            warc,
            work / "dd_extract",
            args.workers,
            [
                "--gin.fineweb.build.filters=[]",
                "--gin.fineweb.build.pre_filters=[]",
                *timeout_binding,
            ],
        )
        texts = str(work / "dd_extract" / "documents" / "*.jsonl.gz")
        n_texts = ext_stats["documents"]
        log(f"datatrove: filters only on {n_texts} texts ...")
        fdt_s, _ = run_datatrove(python, "filters", texts, work / "dt_filters", args.workers, ftz)
        log("deepdive: filters only ...")
        fdd_s, _, _ = run_deepdive(
            texts,
            work / "dd_filters",
            args.workers,
            ["--gin.fineweb.build.extractor=None", "--gin.fineweb.build.pre_filters=[]"],
        )
        text_ids = ids_in(texts)
        result["filters_only"] = {
            "documents": n_texts,
            "datatrove_docs_per_s": n_texts / fdt_s,
            "deepdive_docs_per_s": n_texts / fdd_s,
            "ratio": fdt_s / fdd_s,
            "agreement": {
                k: v
                for k, v in agreement(
                    decisions(work / "dt_filters", text_ids),
                    decisions(work / "dd_filters", text_ids),
                ).items()
                if k != "differences"
            },
        }

    c = result["chain"]
    print(
        f"pages: {len(ids)}  workers: {args.workers} each  (load average {load:.1f}, "
        f"{os.cpu_count()} CPUs)"
    )
    print(f"{'':24}{'datatrove':>12}{'deepdive':>12}{'ratio':>8}")
    print(
        f"{'whole chain pages/s':24}{c['datatrove_pages_per_s']:12.1f}"
        f"{c['deepdive_pages_per_s']:12.1f}{c['ratio']:8.2f}x"
    )
    if "filters_only" in result:
        f = result["filters_only"]
        print(
            f"{'filters only docs/s':24}{f['datatrove_docs_per_s']:12.1f}"
            f"{f['deepdive_docs_per_s']:12.1f}{f['ratio']:8.2f}x"
        )
    print(f"kept: datatrove {agree['kept']['datatrove']}, deepdive {agree['kept']['deepdive']}")
    print(
        f"keep agreement: {agree['keep_agreement']:.2%}   first-drop agreement: "
        f"{agree['first_drop_agreement']:.2%} of {agree['dropped_by_datatrove']} dropped pages"
    )
    for doc_id, a, b in agree["differences"][:40]:
        print(f"  differs: {doc_id}  datatrove={a}  deepdive={b}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    log(f"outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
