"""``deepdive convert``: import external weights (Hugging Face checkpoints) into a run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from framework.cli import app as cli
from framework.core import paths
from framework.core.errors import InputError

HELP = "import external weights (Hugging Face GPT-2 / Llama) into a run directory"
DESCRIPTION = """Import a Hugging Face checkpoint folder into a deepdive run directory.

Reads config.json and model.safetensors (or a sharded model.safetensors.index.json) with the
safetensors numpy API — no torch, no pickle — and writes MODEL_DIR with model.json, tokenizer/,
checkpoints/0/ (orbax, fp32 parameters) and COMPLETED, so `deepdive sample` and `deepdive eval`
use it like a trained run.

The tokenizer comes from the folder itself, as Hugging Face publishes it: tokenizer.json (byte-level
BPE: Llama 3, GPT-2, ...), else a tiktoken rank file (*.tiktoken, or tokenizer.model /
original/tokenizer.model in tiktoken format, as Meta's Llama 3 release). It is checked to encode
as Hugging Face does (or refused, saying why) and saved in deepdive's format (tokenizers.hf_bpe).
--tokenizer replaces it with any deepdive tokenizer.

sources (plugins of kind `converters`; `deepdive plugins --kind converters` lists them all):
  hf_gpt2    GPT2LMHeadModel (gpt2, gpt2-medium, ..., or your own) -> models.gpt2
  hf_llama   LlamaForCausalLM (plain or Llama 3.1 "llama3" RoPE scaling) -> models.llama

examples:
  deepdive convert hf_llama --from ~/hf/Llama-3.2-1B --output runs/llama3-1b
  deepdive convert hf_gpt2 --from ~/hf/gpt2 --tokenizer gpt2.tiktoken --output runs/gpt2
  deepdive convert hf_gpt2 --from ~/hf/gpt2 --tokenizer tok_dir --output runs/gpt2 --dtype bfloat16
  deepdive sample --gin.MODEL_DIR='"runs/gpt2"' --prompt "Hello, my name is"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="CONVERTER", help="what kind of checkpoint to import (e.g. hf_gpt2)"
    )
    parser.add_argument(
        "--from",
        dest="from_dir",
        required=True,
        metavar="HF_DIR",
        help="Hugging Face checkpoint folder (config.json + model.safetensors)",
    )
    parser.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="tokenizer for the run instead of the folder's own: a deepdive tokenizer directory "
        "or a RANKS.tiktoken file",
    )
    parser.add_argument(
        "--output", required=True, metavar="MODEL_DIR", help="run directory to write"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype recorded in model.json (models.*.compute_dtype; parameters are "
        "stored as float32)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the checkpoints of an existing run directory",
    )
    cli.add_common_arguments(parser, gin_files=False)


def run(args: argparse.Namespace) -> int:
    from framework.core import discovery, registry
    from framework.models import hf_import
    from framework.tokenize.files import load_tokenizer
    from framework.train import checkpoint

    discovery.load_plugins(args.plugin_module, args.strict_plugins)
    registry.CONVERTERS.entry(args.source)  # unknown names: exit 2 with suggestions
    hf_dir = Path(args.from_dir).expanduser()
    if not hf_dir.is_dir():
        raise InputError(f"--from {hf_dir}: no such directory")
    paths.check_location(args.output, "--output")
    output = paths.as_path(args.output)
    existing = output / checkpoint.CHECKPOINTS
    if existing.exists() and any(existing.iterdir()):
        if not args.overwrite:
            raise InputError(
                f"--output {output}: already holds checkpoints; pass --overwrite to replace them"
            )
        existing.rmtree()
        if (output / "COMPLETED").exists():
            (output / "COMPLETED").unlink()

    if args.tokenizer is not None:
        tokenizer, source = load_tokenizer(args.tokenizer), f"--tokenizer {args.tokenizer}"
    else:
        tokenizer = _checkpoint_tokenizer(hf_dir)
        source = str(hf_dir / tokenizer.source)
    plugin, model_config, model = hf_import.load(
        hf_dir, converter=args.source, compute_dtype=args.dtype
    )
    if tokenizer.vocab_size > model_config.vocab_size:
        raise InputError(
            f"{source}: {tokenizer.vocab_size} token ids do not fit the model's vocab_size "
            f"{model_config.vocab_size}"
        )
    if args.tokenizer is None:
        checkpoint.save_tokenizer(tokenizer, output)
    checkpoint.write_inference_run(output, plugin, model_config, model, args.tokenizer)
    params = model_config.num_params(non_embedding=False)
    print(
        f"wrote {output}: models.{plugin} ({params:,} parameters, "
        f"{model_config.num_layers} layers × {model_config.d_model}), "
        f"tokenizer {tokenizer.vocab_size} ids ({source})",
        file=sys.stderr,
    )
    return 0


def _checkpoint_tokenizer(hf_dir: Path) -> Any:
    """The tokenizer the checkpoint folder publishes, from the first tokenizer plugin whose
    ``from_checkpoint`` finds one (``tokenizers.hf_bpe``: tokenizer.json, tiktoken files)."""
    from framework.core import registry

    looked = []
    for name in registry.TOKENIZERS.names():
        cls = registry.TOKENIZERS.get(name)
        if not hasattr(cls, "from_checkpoint"):
            continue
        try:
            tokenizer = cls.from_checkpoint(hf_dir)
        except InputError as error:
            raise InputError(f"{error}; pass --tokenizer PATH to use another tokenizer") from None
        if tokenizer is not None:
            return tokenizer
        looked.append(getattr(cls, "checkpoint_files", f"tokenizers.{name}'s files"))
    what = "; ".join(looked) or "nothing (no tokenizer plugin reads checkpoint folders)"
    raise InputError(f"{hf_dir}: no tokenizer found: looked for {what}; pass --tokenizer PATH")
