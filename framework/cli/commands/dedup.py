"""``deepdive dedup``: MinHash near-duplicate removal (FineWeb's settings) on Apache Beam."""

from __future__ import annotations

import argparse

from framework.cli.commands import beam_command
from framework.core import config

HELP = "MinHash near-duplicate removal of documents, FineWeb's settings (Beam)"
TOP_LEVEL = "minhash.build"
DESCRIPTION = """Remove near-duplicate documents with MinHash, as FineWeb does (word 5-grams,
14 bands × 8 hashes, signatures identical to datatrove's sha1 configuration), with every stage
parallel on Apache Beam: signatures → band buckets → candidate edges → connected components
(large-star / small-star rounds) → one kept document per cluster (the smallest id).

Reads the documents/ shards of `deepdive data` (or any .jsonl[.gz] documents). Writes into
OUTPUT_DIR: documents/NNNNN.jsonl.gz (kept; one shard per input file), removed/minhash/ (each
removed document with metadata.filter_reason="minhash" and metadata.duplicate_of = the kept id),
errors/ (malformed input records), clusters.jsonl (one line per cluster: kept, removed, size),
stats.json, config.gin, run_manifest.json and COMPLETED last. Documents with fewer than 5 words
get no signature and are kept unchanged (counted as no_signature).

Everything after `--` goes to Apache Beam unchanged. Without --runner, the local DirectRunner
runs with --direct_num_workers=2 --direct_running_mode=multi_processing.

examples:
  deepdive dedup --gin.INPUT='"out/fineweb"' --gin.OUTPUT_DIR='"out/dedup"'
  deepdive dedup --gin.INPUT='"out/fineweb/documents/*.jsonl.gz"' --gin.OUTPUT_DIR='"out/dedup"' \\
      --gin.minhash.build.verify_jaccard=True -- --direct_num_workers=8
  deepdive dedup ... --gin.minhash.build.formatters='[@formatters.pii()]'
  deepdive dedup --gin.INPUT='"gs://b/fineweb/documents/*"' --gin.OUTPUT_DIR='"gs://b/dedup"' \\
      -- --runner=DataflowRunner --project=P --region=us-central1 --temp_location=gs://b/tmp"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    beam_command.add_arguments(parser, "data/minhash.gin")


def register_configurables() -> None:
    """Make ``minhash.build`` known to gin before any gin file is parsed."""
    from beam_pipelines import minhash  # noqa: F401


def build_pipeline(args: argparse.Namespace, check_required: bool = True):
    """Parse the configuration and return (parsed config, MinhashPipeline)."""
    return beam_command.build_spec(args, "minhash", check_required)


def validate_config(args: argparse.Namespace) -> None:
    _parsed, spec = build_pipeline(args)
    beam_command.check_locations(spec)  # a missing bucket: one line, exit 2
    spec.files()  # InputError when nothing matches


def run(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    from beam_pipelines import minhash

    parsed, spec = build_pipeline(args)
    beam_command.check_locations(spec)
    files = spec.files()
    if args.dry_run:
        config.build_references()
        print(f"ok: {len(files)} input files; MinHash {spec.config}")
        return 0
    beam_command.prepare_outputs(args, spec, parsed, minhash.OWNED_OUTPUTS, files)
    stats = spec.run(args.beam_options, progress=not args.no_progress)
    print(
        f"{stats['documents']} documents → {stats['kept']} kept, {stats['removed']} removed in "
        f"{stats['clusters']} clusters ({stats['no_signature']} too short to sign, "
        f"{stats['malformed']} malformed) in {stats['wall_time_s']:.1f} s "
        f"({stats['documents_per_s'] or 0:.1f} docs/s); "
        f"see {FileSystems.join(spec.output_dir, 'stats.json')}"
    )
    return 0
