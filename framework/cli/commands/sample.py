"""``deepdive sample``: generate text from a run directory, streaming it to the terminal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from framework.cli import app as cli
from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.sample import generate as _generate  # noqa: F401 - registers the `sample` configurable

HELP = "generate text from a trained run (KV cache, sampler plugins, streaming)"
TOP_LEVEL = "sample"
DESCRIPTION = """Generate text from a run directory (written by `deepdive train` or `deepdive convert`).

The newest checkpoint, the model config (model.json) and the run's own tokenizer (tokenizer/)
are read from MODEL_DIR; nothing else is needed. Text streams to the terminal as it is produced
when there is one sequence; with several, each is printed when its batch finishes. tokens/s goes
to stderr at the end. The sampler chain comes from gin (default: temperature 0.8 → top-p 0.95)
and is applied in the order penalties → temperature → top-k → top-p → min-p.

examples:
  deepdive sample --gin.MODEL_DIR='"runs/shakespeare"' --prompt "ROMEO:"
  deepdive sample --gin.MODEL_DIR='"runs/x"' --prompt "Once" --num_samples 4 --seed 1 \\
      --gin.sample.sampler='@samplers.greedy()'
  deepdive sample --gin.MODEL_DIR='"runs/x"' --prompts_file prompts.txt --json out.json \\
      --gin.sample.sampler='[@samplers.top_k(), @samplers.temperature()]' \\
      --gin.samplers.top_k.k=40"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="the prompt text (default: start from <|endoftext|>)")
    source.add_argument("--prompts_file", help="a UTF-8 file with one prompt per line")
    parser.add_argument(
        "--num_samples", type=int, help="completions per prompt (sample.num_samples)"
    )
    add_generation_arguments(parser)
    parser.add_argument("--stop", action="append", help="stop string (repeatable)")
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write prompts, completions and per-token log-probabilities as JSON ('-': stdout)",
    )
    parser.add_argument("--no_stream", action="store_true", help="print each text when done")
    cli.add_common_arguments(parser)
    parser.set_defaults(_default_gin_file="base/sample.gin")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The generation options ``deepdive sample`` shares with ``deepdive chat`` (one spelling)."""
    parser.add_argument("--seed", type=int, help="sampling seed (sample.seed)")
    parser.add_argument("--max_new_tokens", type=int, help="tokens per completion")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    parser.add_argument("--dry_run", action="store_true", help="check the configuration only")


def settings(args: argparse.Namespace):
    """The gin ``sample`` settings with the command-line overrides applied."""
    from framework.sample.generate import SampleConfig

    config = SampleConfig()
    overrides = {
        "num_samples": args.num_samples,
        "seed": args.seed,
        "max_new_tokens": args.max_new_tokens,
        "step": args.step,
        "stop": tuple(args.stop) if args.stop else None,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if not config.model_dir:
        raise ConfigError("sample.model_dir is not set; pass --gin.MODEL_DIR='\"DIR\"'")
    for name in ("num_samples", "max_new_tokens", "batch_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"sample.{name} = {getattr(config, name)}: must be >= 1")
    return config


def make_generator(config, model, model_config, chain, tokenizer, *, eos_id, rows: int,
                   batch_size: int | None = None):  # fmt: skip
    """The generator ``sample`` and ``chat`` decode with: on the configured mesh (batches of
    ``batch_size``, default ``sample.batch_size``), else on one device with no more rows than
    there are (``rows``); never drawing ids the tokenizer lacks."""
    from framework.sample import generate as sample

    batch_size = config.batch_size if batch_size is None else batch_size
    mesh = config.mesh.make() if config.mesh is not None else None
    return sample.Generator(
        model, model_config, chain, eos_id=eos_id,
        batch_size=min(batch_size, rows) if mesh is None else batch_size,
        mesh=mesh, rules=config.logical_axis_rules, token_limit=int(tokenizer.vocab_size),
    )  # fmt: skip


def read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise InputError(f"--prompts_file {path}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise InputError(f"--prompts_file {path}: not UTF-8 ({error})") from None
        prompts = [line for line in lines if line.strip()]
        if not prompts:
            raise InputError(f"--prompts_file {path}: no prompts (one per line)")
        return prompts
    return [args.prompt if args.prompt is not None else ""]


def validate_config(args: argparse.Namespace) -> None:
    """No compute: the settings, the sampler chain and the run directory's files."""
    from framework.sample import generate as sample

    config = settings(args)
    sample.canonical_chain(config.sampler)
    paths.check_location(config.model_dir, "MODEL_DIR")
    model_dir = paths.as_path(config.model_dir)
    if not (model_dir / "model.json").exists():
        raise InputError(f"{model_dir}: no model.json (not a run directory of deepdive train)")
    if not (model_dir / "checkpoints").is_dir():
        raise InputError(f"{model_dir}: no checkpoints/ directory")
    if not (model_dir / "tokenizer").is_dir():
        raise InputError(f"{model_dir}: no tokenizer/ directory to encode the prompts with")


def _encode(tokenizer: Any, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, allowed_special="all"))
    except TypeError:
        return list(tokenizer.encode(text))


class _Streamer:
    """Prints one sequence's new text as it grows (holding back an incomplete UTF-8 character
    and any tail that could be the start of a stop string)."""

    def __init__(self, stop: tuple[str, ...], out=sys.stdout):
        self.printed = 0
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.out = out

    def update(self, completions: list[Any]) -> None:
        (completion,) = completions
        text = completion.text or ""
        end = len(text) if completion.finish_reason == "stop" else len(text) - self.hold
        while end > self.printed and text[end - 1] == "\ufffd":
            end -= 1
        if end > self.printed:
            self.out.write(text[self.printed : end])
            self.out.flush()
            self.printed = end

    def finish(self, completion: Any) -> None:
        text = completion.text or ""
        self.out.write(text[self.printed :] + "\n")
        self.out.flush()


def _continue_past_context(
    generator, tokenizer, config, first, requested, context, streamer, stats
):
    """One sequence longer than the model's context: when a segment ends by length, start the
    next from the last half-context of tokens (llama.cpp's context shift, by re-prefilling)."""
    done = first
    segment = 1
    while done.finish_reason == "length" and len(done.tokens) < requested:
        history = (done.prompt_tokens + done.tokens)[-(context // 2) :]
        budget = min(requested - len(done.tokens), context - len(history))
        offset_text = done.text or ""

        def update(parts, offset_text=offset_text):
            part = parts[0]
            streamer.update([dataclasses.replace(part, text=offset_text + (part.text or ""))])

        (part,) = generator.generate(
            [history],
            max_new_tokens=budget,
            seed=config.seed + segment,
            stop_strings=config.stop,
            decode=tokenizer.decode,
            stream_every=config.stream_every if streamer else 0,
            on_update=update if streamer else None,
            stats=stats,
        )
        done = dataclasses.replace(
            done,
            tokens=done.tokens + part.tokens,
            logprobs=done.logprobs + part.logprobs,
            finish_reason=part.finish_reason,
            text=offset_text + (part.text or ""),
        )
        segment += 1
    return done


def run(args: argparse.Namespace) -> int:
    cli.configure(args)
    config = settings(args)
    if args.dry_run:
        validate_config(args)
        print(f"ok: sample from {config.model_dir}")
        return 0
    from framework.sample import generate as sample
    from framework.train import checkpoint

    chain = sample.canonical_chain(config.sampler)
    prompts = read_prompts(args)
    began = time.perf_counter()
    model, tokenizer, model_config, step = checkpoint.load_for_inference(
        config.model_dir, config.step
    )
    if tokenizer is None:
        raise InputError(f"{config.model_dir}: no tokenizer/ directory to encode the prompts with")
    try:
        eos_id = getattr(tokenizer, "eot_id", None)
    except ConfigError:  # a vocabulary without <|endoftext|>: stop at max_new_tokens only
        eos_id = None
    encoded = [_encode(tokenizer, p) if p else [] for p in prompts]
    context = int(getattr(model_config, "max_seq_len", 0) or 0)
    longest = max(len(e) or 1 for e in encoded)
    requested = config.max_new_tokens
    single = len(prompts) * config.num_samples == 1
    if context and longest + config.max_new_tokens > context:
        fit = max(1, context - longest)
        if not single:
            print(
                f"deepdive sample: the model's context is {context} tokens and the longest "
                f"prompt has {longest}: generating {fit} tokens, not {config.max_new_tokens} "
                "(one prompt and one sample continue past the context instead)",
                file=sys.stderr,
            )
        config = dataclasses.replace(config, max_new_tokens=fit)
    generator = make_generator(
        config, model, model_config, chain, tokenizer,
        eos_id=eos_id if config.stop_at_eos else None, rows=len(prompts) * config.num_samples,
    )  # fmt: skip
    print(
        f"deepdive sample: {config.model_dir} step {step} "
        f"({type(model_config).__name__}, loaded in {time.perf_counter() - began:.1f}s); "
        f"sampler: {sample.describe_chain(chain)}; seed {config.seed}",
        file=sys.stderr,
    )
    to_stdout_json = args.json == "-"
    stream = single and not args.no_stream and not to_stdout_json
    streamer = _Streamer(config.stop) if stream else None
    if stream:
        sys.stdout.write(prompts[0])
        sys.stdout.flush()
    stats = sample.GenerationStats()
    completions = generator.generate(
        encoded,
        max_new_tokens=config.max_new_tokens,
        num_samples=config.num_samples,
        seed=config.seed,
        stop_strings=config.stop,
        decode=tokenizer.decode,
        stream_every=config.stream_every if stream else 0,
        on_update=streamer.update if stream else None,
        stats=stats,
    )
    if single and context:
        completions = [
            _continue_past_context(
                generator, tokenizer, config, completions[0], requested, context, streamer, stats
            )
        ]
    if stream:
        streamer.finish(completions[0])
    elif not to_stdout_json:
        for c in completions:
            header = f"--- prompt {c.prompt_index + 1}, sample {c.sample_index + 1} "
            print(f"{header}({c.finish_reason}) " + "-" * max(0, 60 - len(header)))
            print(prompts[c.prompt_index] + (c.text or ""))
    print(
        f"{stats.tokens} tokens in {stats.prefill_s + stats.decode_s:.2f}s: "
        f"{stats.tokens_per_s:.1f} tokens/s (prefill {stats.prefill_s:.2f}s incl. compilation, "
        f"decode {stats.decode_s:.2f}s)",
        file=sys.stderr,
    )
    if args.json:
        document = {
            "model_dir": str(config.model_dir),
            "step": step,
            "sampler": sample.describe_chain(chain),
            "seed": config.seed,
            "max_new_tokens": requested,  # as asked; the completions may continue past the context
            "max_new_tokens_per_pass": config.max_new_tokens,  # fitted to the context
            "tokens_per_s": stats.tokens_per_s,
            "samples": [
                {
                    "prompt": prompts[c.prompt_index],
                    "prompt_index": c.prompt_index,
                    "sample_index": c.sample_index,
                    "prompt_tokens": c.prompt_tokens,
                    "completion": c.text,
                    "tokens": c.tokens,
                    "token_texts": [tokenizer.decode([t]) for t in c.tokens],
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason,
                }
                for c in completions
            ],
        }
        text = json.dumps(document, indent=1, ensure_ascii=False)
        if to_stdout_json:
            print(text)
        else:
            paths.write_text(args.json, text + "\n")
    return 0
