"""What the Beam-backed commands (data, dedup, tokenize) share: options and spec building.

Each of those commands has a pipeline module in ``beam_pipelines/`` whose gin-configurable
``build()`` returns a pipeline spec; this module turns command-line arguments into that spec.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from framework.cli import app as cli
from framework.core import config, paths
from framework.core.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser, default_gin_file: str) -> None:
    """Options of every Beam command; ``default_gin_file`` is used when no --gin_file is given."""
    cli.add_common_arguments(parser)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of a completed run"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry_run", action="store_true", help="parse, build every plugin and list inputs; no run"
    )
    parser.set_defaults(_default_gin_file=default_gin_file)


def build_spec(
    args: argparse.Namespace, pipeline: str, check_required: bool = True
) -> tuple[config.ParsedConfig, Any]:
    """Parse the configuration and call ``beam_pipelines.<pipeline>.build()``."""
    module = importlib.import_module(f"beam_pipelines.{pipeline}")  # registers <pipeline>.build
    parsed = cli.configure(args, check_required=check_required)
    try:
        spec = module.build()
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{pipeline}.build: {' '.join(str(error).split())}") from None
    return parsed, spec


def check_locations(spec: Any, *more: tuple[str, Any]) -> None:
    """One line (exit 2) when INPUT, OUTPUT_DIR or a ``(macro, value)`` of ``more`` is a bucket
    URL whose bucket does not exist or cannot be listed; local paths pass. Nothing is written."""
    inputs = spec.input if isinstance(spec.input, list | tuple) else [spec.input]
    named = [*(("INPUT", p) for p in inputs), ("OUTPUT_DIR", spec.output_dir), *more]
    for macro, value in named:
        paths.check_location(str(value), macro)


def prepare_outputs(
    args: argparse.Namespace, spec: Any, parsed: config.ParsedConfig, owned: list[str], files
) -> None:
    """Refuse a completed run (unless --overwrite), clear a previous run's outputs and write
    config.gin + run_manifest.json; OUTPUT_DIR may be local or a bucket URL (``gs://``)."""
    from beam_pipelines import common

    common.prepare_output_dir(spec.output_dir, args.overwrite, owned)
    config.write_run_files(spec.output_dir, parsed, input_files=files)
