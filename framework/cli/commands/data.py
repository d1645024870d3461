"""``deepdive data``: FineWeb-style processing of web pages on Apache Beam."""

from __future__ import annotations

import argparse

from framework.cli.commands import beam_command
from framework.core import config
from framework.core.errors import ConfigError

HELP = "FineWeb-style processing of web pages: WARC/HTML/JSONL → clean documents (Beam)"
TOP_LEVEL = "fineweb.build"
OWNED_OUTPUTS = ["documents", "removed", "errors", "stats.json"]
DESCRIPTION = """Turn web pages into clean documents with the recipe in a gin file
(default experiments/data/fineweb.gin: url → trafilatura → language(en) → gopher_repetition →
gopher_quality → c4_quality → fineweb_quality).

Writes into OUTPUT_DIR: documents/NNNNN.jsonl.gz (kept), removed/<step>/ (each dropped document
with metadata.filter_reason), errors/ (records that could not be read or extracted, with
metadata.error), stats.json (per step: in, kept, dropped per reason, errors, time), config.gin,
run_manifest.json, and COMPLETED last.

Everything after `--` goes to Apache Beam unchanged. Without --runner, the local DirectRunner
runs with --direct_num_workers=2 --direct_running_mode=multi_processing (and shows progress).

examples:
  deepdive data --gin.INPUT='"crawl/*.warc.gz"' --gin.OUTPUT_DIR='"out/fineweb"'
  deepdive data --gin.INPUT='"crawl/*.warc.gz"' --gin.OUTPUT_DIR='"out/fineweb"' \\
      -- --direct_num_workers=8
  deepdive data --gin.INPUT='"gs://bucket/crawl/*.warc.gz"' --gin.OUTPUT_DIR='"gs://bucket/out"' \\
      -- --runner=DataflowRunner --project=P --region=us-central1 \\
         --temp_location=gs://bucket/tmp --setup_file=./setup.py
  deepdive data ... -- --runner=FlinkRunner --flink_master=localhost:8081 --environment_type=LOOPBACK
  deepdive data ... -- --runner=SparkRunner --spark_master_url=spark://host:7077
  deepdive data ... --gin.filters.language.languages='["en", "de"]'
  deepdive data ... --gin.fineweb.build.formatters='[@formatters.pii()]'   # anonymise here"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    beam_command.add_arguments(parser, "data/fineweb.gin")


def register_configurables() -> None:
    """Make ``fineweb.build`` known to gin before any gin file is parsed."""
    from beam_pipelines import fineweb  # noqa: F401


def build_pipeline(args: argparse.Namespace, check_required: bool = True):
    """Parse the configuration and return (parsed config, FinewebPipeline)."""
    return beam_command.build_spec(args, "fineweb", check_required)


def validate_config(args: argparse.Namespace) -> None:
    _parsed, spec = build_pipeline(args)
    beam_command.check_locations(spec)  # a missing bucket: one line, exit 2
    files = spec.files()  # InputError when nothing matches
    if spec.extractor is None and any(not f.endswith((".jsonl", ".jsonl.gz")) for f in files):
        raise ConfigError("fineweb.build.extractor is None but the input has HTML/WARC files")


def quiet_beam_logs() -> None:
    """Beam's INFO/WARNING chatter (worker start-up, unused options) hides the progress bar."""
    import logging

    for name in ("apache_beam", "root"):
        logging.getLogger(None if name == "root" else name).setLevel(logging.ERROR)


def run(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    quiet_beam_logs()
    parsed, spec = build_pipeline(args)
    beam_command.check_locations(spec)
    files = spec.files()
    if args.dry_run:
        config.build_references()
        print(
            f"ok: {len(files)} input files; steps: "
            + " → ".join(name for name, _ in spec.ordered_steps())
        )
        return 0
    beam_command.prepare_outputs(args, spec, parsed, OWNED_OUTPUTS, files)
    stats = spec.run(args.beam_options, progress=not args.no_progress)
    removed = sum(stats["removed"].values())
    print(
        f"{stats['pages']} pages → {stats['documents']} documents kept, {removed} removed, "
        f"{stats['errors']} errors in {stats['wall_time_s']:.1f} s "
        f"({stats['pages_per_s'] or 0:.1f} pages/s); "
        f"see {FileSystems.join(spec.output_dir, 'stats.json')}"
    )
    return 0
