"""``deepdive eval``: validation loss and bits per byte of a run on token shards or a text file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from framework.cli import app as cli
from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.train.evaluate import EvalConfig, Split, WholeText

HELP = "validation loss and bits per byte of a run on a token split or a text file"
TOP_LEVEL = "evaluate"
DESCRIPTION = """Evaluate a run directory: mean next-token loss (nats) and bits per byte.

--tokens DIR evaluates the validation split (or --split train) of a `deepdive tokenize` output:
packed windows of SEQ_LEN + 1 tokens, bits per byte from the manifest's bytes per token.
--text FILE evaluates a whole UTF-8 text file tokenized with the run's own tokenizer, in
consecutive non-overlapping windows; bits per byte from the file's bytes per token.
The loss and bits-per-byte arithmetic are the trainer's (framework/train/evaluate.py).

examples:
  deepdive eval --gin.MODEL_DIR='"runs/shakespeare"' --text data/tinyshakespeare.txt
  deepdive eval --gin.MODEL_DIR='"runs/x"' --tokens tokens/fineweb --num_batches 50 --json -"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tokens", metavar="DIR", help="token shards (deepdive tokenize output)")
    source.add_argument("--text", metavar="FILE", help="a UTF-8 text file, evaluated whole")
    parser.add_argument("--split", default="validation", choices=["validation", "train"])
    parser.add_argument("--num_batches", type=int, help="batches to evaluate")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the result as JSON ('-': stdout)"
    )
    parser.add_argument("--dry_run", action="store_true", help="check the configuration only")
    cli.add_common_arguments(parser)
    parser.set_defaults(_default_gin_file="base/eval.gin")


def settings(args: argparse.Namespace) -> EvalConfig:
    config = EvalConfig()
    if getattr(args, "num_batches", None) is not None:
        config = dataclasses.replace(config, num_batches=args.num_batches)
    if getattr(args, "step", None) is not None:
        config = dataclasses.replace(config, step=args.step)
    if not config.model_dir:
        raise ConfigError("evaluate.model_dir is not set; pass --gin.MODEL_DIR='\"DIR\"'")
    if config.batch_size < 1 or (config.num_batches is not None and config.num_batches < 1):
        raise ConfigError("evaluate.batch_size and evaluate.num_batches must be >= 1")
    return config


def validate_config(args: argparse.Namespace) -> None:
    config = settings(args)
    paths.check_location(config.model_dir, "MODEL_DIR")
    model_dir = paths.as_path(config.model_dir)
    if not (model_dir / "model.json").exists():
        raise InputError(f"{model_dir}: no model.json (not a run directory of deepdive train)")
    if getattr(args, "text", None) and not Path(args.text).is_file():
        raise InputError(f"--text {args.text}: no such file")
    if getattr(args, "tokens", None) and not (Path(args.tokens) / "manifest.json").is_file():
        raise InputError(f"--tokens {args.tokens}: no manifest.json (run deepdive tokenize)")


def run(args: argparse.Namespace) -> int:
    cli.configure(args)
    config = settings(args)
    if not args.tokens and not args.text:
        raise ConfigError("deepdive eval: give --tokens DIR or --text FILE")
    validate_config(args)
    if args.dry_run:
        print(f"ok: evaluate {config.model_dir}")
        return 0
    from framework.train import checkpoint, evaluate

    began = time.perf_counter()
    model, tokenizer, model_config, step = checkpoint.load_for_inference(
        config.model_dir, config.step
    )
    seq_len = int(config.seq_len or model_config.max_seq_len)
    if seq_len > model_config.max_seq_len:
        raise ConfigError(
            f"SEQ_LEN {seq_len} exceeds the model's context {model_config.max_seq_len}"
        )
    if args.text:
        if tokenizer is None:
            raise InputError(f"{config.model_dir}: no tokenizer/ to tokenize --text with")
        data = WholeText(Path(args.text), tokenizer)
        available = data.windows(seq_len) // config.batch_size
        if available < 1:
            raise InputError(
                f"--text {args.text}: {len(data.tokens)} tokens, fewer than one batch of "
                f"{config.batch_size} windows of {seq_len} + 1"
            )
        num_batches = min(config.num_batches or available, available)
        source = f"{args.text} ({len(data.tokens)} tokens)"
    else:
        from framework.train.input import TokenShards

        shards = TokenShards(args.tokens, shuffle=False)
        manifest = shards.manifest
        if manifest.get("vocab_size", 0) > model_config.vocab_size:
            raise InputError(
                f"--tokens {args.tokens}: vocabulary {manifest['vocab_size']} is larger than the "
                f"model's {model_config.vocab_size} (tokenized with another tokenizer?)"
            )
        data = Split(shards, args.split)
        num_batches = config.num_batches or 50
        source = f"{args.tokens} [{args.split}]"
    result = evaluate.evaluate_model(model, data, config.batch_size, seq_len, num_batches)
    elapsed = time.perf_counter() - began
    result.update(
        model_dir=str(config.model_dir), step=step, source=source, seq_len=seq_len,
        perplexity=math.exp(result["val_loss"]), seconds=elapsed,
    )  # fmt: skip
    bpb = result["val_bpb"]
    print(
        f"{config.model_dir} step {step} on {source}: loss {result['val_loss']:.4f} nats/token, "
        f"perplexity {result['perplexity']:.2f}, "
        + (f"{bpb:.4f} bits/byte" if bpb is not None else "bits/byte unknown (no byte counts)")
        + f" ({result['tokens']} tokens, {elapsed:.1f}s)",
        file=sys.stderr if args.json == "-" else sys.stdout,
    )
    if args.json:
        text = json.dumps(result, indent=1)
        if args.json == "-":
            print(text)
        else:
            paths.write_text(args.json, text + "\n")
    return 0
