"""``deepdive skill``: synthetic-skill data for fine-tuning, and scoring what a model answers."""

from __future__ import annotations

import argparse
import json

from framework.core import paths
from framework.core.errors import ConfigError, InputError

HELP = "make synthetic-skill conversations for SFT, or score chat completions on held-out prompts"
DESCRIPTION = """Synthetic skills (plugins of kind `skills`, e.g. sort_numbers) for post-training.

  make    write OUTPUT/train.jsonl (conversations with the assistant's answers, some of
          several turns or with a system prompt, for
          `deepdive train --gin_file experiments/sft/...`) and OUTPUT/heldout.jsonl (questions
          never seen in training, each with its "answer"), then OUTPUT/COMPLETED
  score   exact-match accuracy of `deepdive chat --json` completions against heldout.jsonl, and
          the share that ended with the template's end-of-turn token

examples:
  deepdive skill make --skill sort_numbers --output runs/skill
  deepdive chat runs/sft --json runs/skill/heldout.jsonl --output runs/sft_answers.jsonl
  deepdive skill score runs/skill/heldout.jsonl --completions base=runs/base_answers.jsonl \\
      sft=runs/sft_answers.jsonl --output runs/score.json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    make = sub.add_parser("make", help="write train.jsonl and heldout.jsonl for a skill")
    make.add_argument(
        "--skill", default="sort_numbers", help="a skills plugin (default %(default)s)"
    )
    make.add_argument("--output", required=True, help="output folder (local or a bucket URL)")
    make.add_argument("--train", type=int, default=20000, help="training questions")
    make.add_argument("--heldout", type=int, default=200, help="held-out prompts")
    make.add_argument("--seed", type=int, default=0, help="seed of the draw")

    score = sub.add_parser("score", help="exact match of chat --json completions")
    score.add_argument("heldout", help="heldout.jsonl written by `deepdive skill make`")
    score.add_argument(
        "--completions", nargs="+", required=True, metavar="NAME=FILE",
        help="`deepdive chat --json` outputs to score, each named (e.g. base=a.jsonl sft=b.jsonl)",
    )  # fmt: skip
    score.add_argument("--output", help="write the scores as JSON here too")


def _skill(name: str):
    from framework.core import discovery, registry

    discovery.load_plugins()
    return registry.SKILLS.build(name)  # an unknown name: one line with suggestions


def _write_jsonl(path, records) -> None:
    paths.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _run_make(args: argparse.Namespace) -> int:
    from framework.data import skills

    if args.train < 1 or args.heldout < 1:
        raise ConfigError("--train and --heldout must be at least 1")
    skill = _skill(args.skill)
    paths.check_location(args.output, "--output")
    heldout = skills.draw(skill, args.heldout, seed=args.seed + 1)
    questions = {e["messages"][-1]["content"] for e in heldout}
    train = skills.draw(skill, args.train, seed=args.seed, exclude=questions)
    out = paths.as_path(args.output)
    conversations = skills.as_training(train, seed=args.seed)
    _write_jsonl(out / "train.jsonl", conversations)
    _write_jsonl(out / "heldout.jsonl", heldout)
    paths.write_text(out / "COMPLETED", "")
    print(f"{args.skill}: {len(conversations)} training conversations ({len(train)} questions) "
          f"and {len(heldout)} held-out prompts in {out}")  # fmt: skip
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from framework.data import skills

    examples = skills.read_jsonl(args.heldout)
    result = {}
    for item in args.completions:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--completions {item}: expected NAME=FILE")
        if not paths.as_path(path).exists():
            raise InputError(f"--completions {path}: no such file")
        result[name] = skills.score(examples, skills.read_jsonl(path))
    width = max(len(n) for n in result)
    print(f"{'':{width}}  exact match  ended with end-of-turn  ({len(examples)} held-out prompts)")
    for name, s in result.items():
        print(f"{name:{width}}  {s['exact_match']:11.1%}  {s['ended_with_end_of_turn']:21.1%}")
    if args.output:
        paths.write_text(args.output, json.dumps(result, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"make": _run_make, "score": _run_score}[args.action](args)
