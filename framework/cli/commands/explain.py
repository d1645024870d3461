"""``deepdive explain``: every step's verdict and statistics vs thresholds for one page."""

from __future__ import annotations

import argparse
import json
import os
import sys

from framework.cli import app as cli
from framework.core.errors import InputError
from framework.data.document import Document
from framework.data.explain import format_step
from framework.data.readers import ReadItem, read_any

HELP = "each filter's statistics vs thresholds for one page or document"
DESCRIPTION = """Run one page through the data recipe of a gin file and show, step by step, the
verdict and every statistic next to its threshold, ending with KEPT or the first step that drops
it. The decisions are the pipeline's own (the same code `deepdive data` runs per page).

PAGE is an .html / .html.gz file, a WARC file (with --record: a WARC-Record-ID or a target URL),
a JSONL documents file (with --record: an id), or `-` / nothing for text on stdin (HTML when it
starts with `<`, else already-extracted text).

examples:
  deepdive explain --gin_file experiments/data/fineweb.gin page.html.gz
  deepdive explain --gin_file experiments/data/fineweb.gin crawl.warc.gz --record https://example.com/
  echo "Some English text ..." | deepdive explain --gin_file experiments/data/fineweb.gin -
  deepdive explain page.html --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_common_arguments(parser)
    parser.add_argument("page", nargs="?", default="-", help="file to explain, or - for stdin")
    parser.add_argument("--record", default=None, help="WARC-Record-ID, URL or JSONL id")
    parser.add_argument("--url", default=None, help="URL to use for stdin input (URL filter)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(_default_gin_file="data/fineweb.gin")


def _stdin_item(url: str | None) -> ReadItem:
    text = sys.stdin.read()
    meta = {"url": url} if url else {}
    kind = "page" if text.lstrip().startswith("<") else "text"
    return ReadItem(kind, Document(id="stdin", text=text, metadata=meta))


def select_item(page: str, record: str | None, url: str | None) -> ReadItem:
    """The one record to explain (InputError naming the file when it is missing/ambiguous)."""
    if page == "-":
        return _stdin_item(url)
    if not os.path.isfile(page):
        raise InputError(f"{page}: no such file")
    items = [it for it in read_any(page) if it.kind != "skip"]
    if record is not None:
        items = [
            it
            for it in items
            if it.doc is not None
            and record in (it.doc.id, it.doc.id.strip("<>"), it.doc.metadata.get("url"))
        ]
        if not items:
            raise InputError(f"{page}: no record with id or URL {record!r}")
    if not items:
        raise InputError(f"{page}: no page in this file")
    if len(items) > 1:
        raise InputError(
            f"{page}: {len(items)} records; choose one with --record ID_OR_URL "
            f"(e.g. --record {items[0].doc.id!r})"
        )
    item = items[0]
    if url and item.doc is not None:
        item.doc.metadata["url"] = url
    return item


def run(args: argparse.Namespace) -> int:
    from framework.cli.commands.data import build_pipeline

    given = {b.split("=", 1)[0].strip() for b in args.gin_bindings}
    if "INPUT" not in given:
        args.gin_bindings.append(f"INPUT={json.dumps(args.page)}")
    if "OUTPUT_DIR" not in given:
        args.gin_bindings.append('OUTPUT_DIR="(explain: nothing is written)"')
    _parsed, spec = build_pipeline(args)
    item = select_item(args.page, args.record, args.url)
    doc_id = item.doc.id if item.doc is not None else "?"
    url = item.doc.metadata.get("url", "") if item.doc is not None else ""
    try:
        outcome = spec.process_item(item, explain=True)
    finally:
        close = getattr(spec.extractor, "close", None)
        if callable(close):
            close()
    if outcome.category == "documents":
        final = "KEPT"
    elif outcome.category.startswith("removed/"):
        final = f"DROPPED by {outcome.category.split('/', 1)[1]} ({outcome.doc.metadata.get('filter_reason')})"
    elif outcome.category == "errors":
        final = f"ERROR: {outcome.doc.metadata.get('error')}"
    else:
        final = "SKIPPED (not a page)"
    if args.json:
        print(
            json.dumps(
                {
                    "id": doc_id,
                    "url": url,
                    "steps": outcome.trace,
                    "result": final,
                    "text": outcome.doc.text if outcome.category == "documents" else None,
                },
                ensure_ascii=False,
                indent=2,
                default=str,
            )
        )
        return 0
    print(f"page {doc_id}" + (f"  {url}" if url else ""))
    if item.kind == "error" and item.doc is not None:
        print(f"[read] ERROR ({item.doc.metadata.get('error')})")
    for entry in outcome.trace:
        print("\n".join(format_step(entry)))
    print(f"result: {final}")
    return 0
