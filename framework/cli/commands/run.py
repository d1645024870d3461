"""``deepdive run experiments/quickstart.gin``: every stage end to end, resumable."""

from __future__ import annotations

import argparse
import sys

from framework.cli import app as cli
from framework.cli import jobs as stages
from framework.core.errors import ConfigError

HELP = "run a multi-stage job (data → dedup → tokenizer → tokenize → train → sample)"
DESCRIPTION = """Run every stage of a job file in order, each in OUTPUT_DIR/<stage>/.

Stages whose folder holds COMPLETED are skipped, so rerunning after an interruption continues
where it stopped. With no INPUT, the built-in pages (generated from Python's own documentation
plus pages that show each filter at work) are used.

examples:
  deepdive run experiments/quickstart.gin
  deepdive run experiments/quickstart.gin --gin.OUTPUT_DIR='"runs/qs2"' --gin.INPUT='"crawl/*.warc.gz"'
  deepdive run experiments/quickstart.gin --gin.OUTPUT_DIR='"gs://bucket/runs/quickstart"'
  deepdive run experiments/quickstart.gin -- --direct_num_workers=2"""

TOP_LEVEL = "job"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "job_file", nargs="?", help="the job's gin file, e.g. experiments/quickstart.gin"
    )
    parser.add_argument("--dry_run", action="store_true", help="print the stage commands only")
    cli.add_common_arguments(parser)


def validate_config(args: argparse.Namespace) -> None:
    """A bucket OUTPUT_DIR (or INPUT) must be reachable before any stage starts."""
    from framework.core import config, paths

    for macro in ("OUTPUT_DIR", "INPUT"):
        value = config.query(macro, None)
        if isinstance(value, str):
            paths.check_location(value, macro)


def run(args: argparse.Namespace) -> int:
    if args.job_file:
        args.gin_file = [args.job_file, *args.gin_file]
    if not args.gin_file:
        raise ConfigError("deepdive run: name a job file, e.g. experiments/quickstart.gin")
    cli.configure(args)
    validate_config(args)
    try:
        stages.run_job(beam_options=args.beam_options, dry_run=args.dry_run)
    except stages.StageFailed as error:
        print(f"deepdive run: {error}", file=sys.stderr)
        return error.code
    return 0
