"""``deepdive train``: pretrain or fine-tune a model from a gin configuration (top-level
``train``)."""

from __future__ import annotations

import argparse
import inspect
import sys

from framework.cli import app as cli
from framework.core import paths
from framework.core.errors import ConfigError
from framework.train import input as _input  # noqa: F401 - registers the data sources for gin
from framework.train import loop as _loop  # noqa: F401 - registers train, sharding.MeshConfig

HELP = "train a model from token shards (resumes from MODEL_DIR's newest checkpoint)"
DESCRIPTION = """Train (or resume training) a model configured in gin.

The run file experiments/base/train.gin declares the macros (MODEL_DIR is required):
DATA, TRAIN_STEPS, BATCH_SIZE, SEQ_LEN, LEARNING_RATE, WARMUP_STEPS, EVAL_EVERY,
CHECKPOINT_EVERY, SEED. A MODEL_DIR that already holds a checkpoint resumes from the newest.
Fine-tuning (experiments/sft/*.gin) starts from another run's checkpoint (INIT_FROM) on
conversations rendered by a chat template; only the assistant's tokens are learned.
SIGTERM / Ctrl-C saves a checkpoint before exiting; a non-finite loss stops the run (exit 3)
leaving the last good checkpoint.

examples:
  deepdive train --gin_file experiments/pretrain/shakespeare_char_cpu.gin --gin.MODEL_DIR='"runs/sh"'
  deepdive train --gin_file experiments/bench/baby_gpt.gin --gin.MODEL_DIR='"/tmp/b"' --gin.TRAIN_STEPS=20
  deepdive train --gin_file F --gin.MODEL_DIR='"runs/x"' --dry_run     # checks only, no compute
  deepdive train --gin_file experiments/sft/chatml.gin --gin.MODEL_DIR='"runs/sft"' \
      --gin.INIT_FROM='"runs/base"' --gin.CONVERSATIONS='"chats.jsonl"' --gin.TOKENIZER='"tok"'
  # multi-host: jax.distributed from flags, else SkyPilot env, else one host
  deepdive train ... --coordinator 10.0.0.1:8476 --num_processes 2 --process_id 0"""

TOP_LEVEL = "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_common_arguments(parser)
    parser.set_defaults(_default_gin_file="base/train.gin")
    parser.add_argument("--dry_run", action="store_true", help="validate the configuration only")
    group = parser.add_argument_group("multi-host (jax.distributed)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="coordinator address")
    group.add_argument("--num_processes", type=int, help="number of processes (hosts)")
    group.add_argument("--process_id", type=int, help="this process's index")
    group.add_argument(
        "--distributed_auto",
        action="store_true",
        help="let JAX auto-detect the cluster (Cloud TPU, SLURM, ...)",
    )


def _bound(name: str):
    """The value gin gives ``train.<name>`` (the function default when unbound)."""
    from framework.core import config
    from framework.train import loop as train

    value = config.query(f"train.{name}", inspect.Parameter.empty)
    if value is inspect.Parameter.empty:
        default = inspect.signature(train.train.__wrapped__).parameters[name].default
        return default
    return value


def validate_config(args: argparse.Namespace) -> None:
    """Mesh vs devices, batch vs data axes, sequence length vs context — no compute."""
    import jax

    from framework.train import loop as train
    from framework.train import sharding

    mesh = _bound("mesh") or sharding.MeshConfig()
    shape = mesh.resolved_shape(mesh.num_devices or jax.device_count())
    rules = tuple(_bound("logical_axis_rules"))
    divisor = sharding.batch_divisor_for_shape(dict(zip(mesh.axes, shape, strict=True)), rules)
    model = _bound("model")
    if model is None or model is inspect.Parameter.empty:
        raise ConfigError("train.model is not set (e.g. train.model = @models.gpt2())")
    model_dir = _bound("model_dir")
    if isinstance(model_dir, str) and model_dir:
        paths.check_location(model_dir, "MODEL_DIR")
    train.check_shapes(
        model, int(_bound("batch_size")), int(_bound("seq_len")), int(_bound("grad_accum_steps")),
        divisor,
    )  # fmt: skip
    init_from = _bound("init_from")
    if isinstance(init_from, str) and init_from:
        paths.check_location(init_from, "INIT_FROM")
        if not (paths.as_path(init_from) / "model.json").exists():
            raise ConfigError(f"INIT_FROM {init_from}: not a run directory (no model.json)")
    data = _bound("data")
    if hasattr(data, "check"):  # e.g. conversations: the template's special tokens exist
        data.check()
    tokenizer, vocab = getattr(data, "tokenizer", None), getattr(model, "vocab_size", None)
    if tokenizer is not None and vocab and int(tokenizer.vocab_size) > int(vocab):
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {vocab}: "
            "ids past it would have no embedding (pretrain with a vocab_size rounded up to leave "
            "room for special tokens added later)"
        )


def run(args: argparse.Namespace) -> int:
    from framework.core import distributed

    spec = distributed.resolve(
        args.coordinator, args.num_processes, args.process_id,
        auto=True if args.distributed_auto else None,
    )  # fmt: skip
    distributed.initialize(spec)  # before any other JAX operation
    parsed = cli.configure(args)
    validate_config(args)
    if args.dry_run:
        print("ok: configuration valid (dry run)")
        return 0
    from framework.train import loop as train

    try:
        train.train(parsed_config=parsed)
    except train.NonFiniteError as error:
        print(f"deepdive train: {error}", file=sys.stderr)
        return 3
    except train.Stopped as stopped:
        print(f"deepdive train: {stopped}; checkpoint saved, run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 128 + int(stopped.signum)
    return 0
