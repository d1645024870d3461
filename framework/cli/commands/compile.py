"""``deepdive compile``: compile a training run for a TPU slice from this machine, before the bill."""

from __future__ import annotations

import argparse
import json
import sys

from framework.cli import app as cli
from framework.core import paths
from framework.train import input as _input  # noqa: F401 - registers the data sources for gin
from framework.train import loop as _loop  # noqa: F401 - registers train, sharding.MeshConfig

HELP = "compile a training run for a TPU slice or GPU hosts ahead of time: memory per chip, fits"
DESCRIPTION = """Compile the train step of a `deepdive train` configuration for a TPU slice this
machine does not have (libtpu's compile-only devices: `pip install 'deepdive[tpu]'`).

Takes the same gin files as `deepdive train`. The experiment's mesh is laid over the slice's
chips; the real train step is built from abstract state (nothing is allocated, no data is read)
and compiled. Prints the memory per chip (XLA's memory_analysis: arguments + outputs - aliased
+ temporaries + code) and whether the compiler accepted it; a program that does not fit exits 2
with how much it needs.

--topology takes slice names as Google Cloud spells them: v5e-16 (= v5litepod-16), v5p-8,
v6e-256, v4-8 (v4 and v5p count TensorCores, two per chip; v5e and v6e count chips); GPU hosts
as h100x8, h200x8, a100x8 (h100x8x4: four hosts), with jax's CUDA plugin installed
(pip install "jax[cuda12]"; no GPU needed).

MODEL_DIR and the training data need not exist: nothing is read or written but --json.

examples:
  deepdive compile --gin_file experiments/pretrain/llama2_7b.gin --topology v5p-8 --json out.json
  deepdive compile --gin_file experiments/pretrain/llama2_7b.gin --topology v5e-16 \\
      --gin.BATCH_SIZE=16 --decode
  deepdive compile --gin_file experiments/bench/gpt2_124m.gin \\
      --gin_file experiments/mesh/tpu_v5e_8.gin --topology v5e-8 --gin.BATCH_SIZE=8"""

TOP_LEVEL = "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_common_arguments(parser)
    parser.set_defaults(_default_gin_file="base/train.gin")
    parser.add_argument(
        "--topology",
        required=True,
        metavar="NAME",
        help="TPU slice (v5e-16, v5p-8) or GPUs (h100x8)",
    )
    parser.add_argument(
        "--num_slices", type=int, default=1, metavar="N", help="slices (multi-slice over DCN)"
    )
    parser.add_argument(
        "--decode",
        action="store_true",
        help="also compile the sampler's decode loop (a batch of BATCH_SIZE prompts of SEQ_LEN/2 "
        "tokens generating SEQ_LEN/2 more)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the report as JSON ('-': stdout)"
    )


def run(args: argparse.Namespace) -> int:
    import gin

    from framework.core import config
    from framework.train import loop as train
    from framework.train import topologies
    from framework.train.aot import format_report

    target = topologies.compile_target(args.topology, args.num_slices)  # a bad name fails fast
    # No data is read and nothing is written: the input and the run directory need not exist.
    cli.configure(args, check_required=False)
    packed = _packed_batches()
    gin.bind_parameter("train.data", _NoData(packed))
    if config.query("train.model_dir", None) in (None, gin.REQUIRED):
        gin.bind_parameter("train.model_dir", "unused-by-deepdive-compile")
    print(
        f"deepdive compile: {len(target.devices)} {target.devices[0].device_kind} devices "
        f"({target.name}); compiling the train step ...",
        file=sys.stderr,
        flush=True,
    )
    report = train.train(compile_for=target)
    if args.decode:
        report["decode"] = _compile_decode(target)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if args.json:
            paths.write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


class _NoData:
    """Stands in for the run's data source, which is never read: only whether its batches are
    packed (segment ids and a loss mask) shapes the compiled step."""

    def __init__(self, packed: bool):
        self.packed = packed


def _packed_batches() -> bool:
    """Whether the configured data source yields packed batches, from the configuration alone
    (building the source would check inputs that need not exist here)."""
    import gin

    from framework.core import config

    try:
        reference = gin.query_parameter("train.data")
    except ValueError:
        return False
    while isinstance(reference, gin.config.ConfigurableReference):
        selector = reference.configurable.selector
        if selector.endswith("macro"):  # %DATA: follow the macro
            reference = gin.query_parameter(f"{'/'.join(reference.scopes)}/macro.value")
            continue
        packed = getattr(reference.configurable.wrapped, "packed", False)
        if isinstance(packed, bool) and packed:
            return True
        return bool(config.query(f"{selector}.segment_ids", False))  # e.g. token shards
    return False


def _compile_decode(target) -> dict:
    """The decode loop of ``deepdive sample`` for the run's model over the same mesh."""
    import time

    from flax import nnx

    from framework.core import config
    from framework.models.layers import build_unsharded
    from framework.sample.generate import Generator
    from framework.train import aot, sharding

    model_config = config.query("train.model")
    seq_len = int(config.query("train.seq_len", 256))
    batch = int(config.query("train.batch_size", 8))
    mesh = (config.query("train.mesh", None) or sharding.MeshConfig()).make(target.devices)
    rules = tuple((str(k), v) for k, v in config.query("train.logical_axis_rules", sharding.FSDP))
    model = nnx.eval_shape(lambda: build_unsharded(model_config, nnx.Rngs(0)))
    generator = Generator(model, model_config, None, batch_size=batch, mesh=mesh, rules=rules)
    start = time.perf_counter()
    lowered = generator.lower_decode(seq_len // 2, seq_len - seq_len // 2)
    memory, _ = aot.compile_lowered(
        lowered, f"the decode loop on {target.name}", target.hbm_bytes_per_chip
    )
    return {
        "per_chip_bytes": memory.as_dict(),
        "batch": batch,
        "prompt_tokens": seq_len // 2,
        "new_tokens": seq_len - seq_len // 2,
        "compile_s": round(time.perf_counter() - start, 2),
    }
