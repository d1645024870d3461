"""``deepdive tokenize``: documents → ArrayRecord token shards + manifest.json (Beam)."""

from __future__ import annotations

import argparse

from framework.cli.commands import beam_command
from framework.core import config

HELP = "tokenize a corpus into ArrayRecord token shards for training (Beam)"
TOP_LEVEL = "tokenize.build"
DESCRIPTION = """Tokenize documents into the token shards training reads.

Reads documents (*.jsonl[.gz], or the output directory of `deepdive data` / `deepdive dedup`),
encodes each with the tokenizer (special-token names in the text stay ordinary text), appends
<|endoftext|>, and writes into OUTPUT_DIR:
  train/NNNNN.array_record, validation/NNNNN.array_record   one record per document: its ids as
      little-endian uint16 (uint32 for vocabularies over 65,536) bytes, ending in eot_id
  manifest.json   tokenizer, dtype, vocab_size, eot_id, per split documents/tokens/bytes/
      bytes_per_token/shards
  errors/         malformed input records with the error
  config.gin, run_manifest.json, COMPLETED (last)
The validation split is the documents whose sha1(id) falls below VALIDATION_FRACTION (default
0.005; never empty). Shards are assigned by a hash of the id and sorted by id: deterministic.

Everything after `--` goes to Apache Beam unchanged. Without --runner, the local DirectRunner
runs with --direct_num_workers=2 --direct_running_mode=multi_processing.

examples:
  deepdive tokenize --gin.TOKENIZER='"runs/tok"' --gin.INPUT='"out/dedup"' --gin.OUTPUT_DIR='"out/tokens"'
  deepdive tokenize --gin.TOKENIZER='"cl100k_base.tiktoken"' --gin.INPUT='"docs/*.jsonl.gz"' \\
      --gin.OUTPUT_DIR='"out/tokens"' --gin.tokenize.build.train_shards=16 -- --direct_num_workers=4"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    beam_command.add_arguments(parser, "base/tokenize.gin")


def register_configurables() -> None:
    """Make ``tokenize.build`` known to gin before any gin file is parsed."""
    from beam_pipelines import tokenize  # noqa: F401


def build_spec(args: argparse.Namespace):
    return beam_command.build_spec(args, "tokenize")


def validate_config(args: argparse.Namespace) -> None:
    _parsed, spec = build_spec(args)
    beam_command.check_locations(spec, ("TOKENIZER", spec.tokenizer))  # one line, exit 2
    spec.files()
    spec.load_tokenizer()


def run(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    from beam_pipelines import common, tokenize

    parsed, spec = build_spec(args)
    beam_command.check_locations(spec, ("TOKENIZER", spec.tokenizer))
    files = spec.files()
    tok = spec.load_tokenizer()
    if args.dry_run:
        config.build_references()
        print(f"ok: {len(files)} input files; tokenizer {tok.name} (vocab {tok.vocab_size})")
        return 0
    beam_command.prepare_outputs(args, spec, parsed, tokenize.OWNED_OUTPUTS, files)
    stats = spec.run(args.beam_options, progress=not args.no_progress)
    common.mark_completed(spec.output_dir)
    train, val = stats["splits"]["train"], stats["splits"]["validation"]
    print(
        f"{train['documents']} train documents ({train['tokens']} tokens, "
        f"{train['bytes_per_token']} bytes/token), {val['documents']} validation documents "
        f"({val['tokens']} tokens), {stats['malformed']} malformed, in {stats['wall_time_s']:.1f} s; "
        f"see {FileSystems.join(spec.output_dir, 'manifest.json')}"
    )
    return 0
