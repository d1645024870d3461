"""``deepdive chat``: talk to a fine-tuned run through its chat template (streaming, the KV cache
kept across turns), or answer a JSONL file of conversations in batches."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from framework.cli import app as cli
from framework.cli.commands import sample as sample_command
from framework.core import paths
from framework.core.errors import ConfigError, InputError

HELP = "chat with a fine-tuned run (chat template, streaming, KV cache kept across turns)"
DESCRIPTION = """Chat with a run directory (written by `deepdive train` or `deepdive convert`).

MODEL_DIR (or --gin.MODEL_DIR='"DIR"') is read as by `deepdive sample`: the newest checkpoint
(--step N for another), model.json and the run's tokenizer. The chat template comes from
MODEL_DIR/chat.json ({"template": "chatml"}, written by supervised fine-tuning), else from
--template NAME (`deepdive plugins list --kind templates`). The sampler chain, --seed and
--max_new_tokens are `deepdive sample`'s (gin `sample.*`, default temperature 0.8 → top-p 0.95).

Interactive: each line read from stdin is a user message; the reply streams to stdout token by
token and ends at the template's end-of-turn token, at --max_new_tokens, or when the model's
context is full (a line on stderr says which). The KV cache is kept across turns: a turn feeds
only its new tokens. Commands: /reset, /system TEXT, /help, /quit (or end of input).

Batch (--json FILE): one conversation per line, {"messages": [{"role": ..., "content": ...},
...]} with the user's message last; one JSON line per conversation on stdout (or --output PATH):
{"index", "completion", "tokens", "logprobs", "finish_reason": "end_of_turn" | "length"}, or
{"index", "error"} for a line that cannot be read (counted on stderr; the run goes on).

examples:
  deepdive chat runs/sft
  deepdive chat runs/base --template chatml --system "Answer in one sentence." --seed 1
  deepdive chat runs/base --template chatml --tokenizer runs/chat_tokenizer   # a base model
  deepdive chat runs/sft --json conversations.jsonl --output answers.jsonl \\
      --gin.sample.sampler='@samplers.greedy()'"""

COMMANDS_HELP = """commands:
  /reset          forget the conversation (the system prompt stays)
  /system TEXT    set the system prompt and start over (/system alone clears it)
  /help           this list
  /quit           leave (so does end of input, Ctrl-D)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", nargs="?", metavar="MODEL_DIR", help="the run directory (or --gin.MODEL_DIR)"
    )
    parser.add_argument("--template", metavar="NAME", help="chat template when no chat.json")
    parser.add_argument("--system", metavar="TEXT", help="system prompt to start with")
    parser.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="use this tokenizer instead of the run's (e.g. a base run's with the template's "
        "tokens added by `deepdive tokenizer add-special`)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="batch mode: a JSONL file of conversations to answer"
    )
    parser.add_argument(
        "--output", metavar="PATH", help="batch mode: write the answers here (default: stdout)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="a line per turn on stderr: tokens fed, speed"
    )
    sample_command.add_generation_arguments(parser)
    cli.add_common_arguments(parser)
    parser.set_defaults(_default_gin_file="base/sample.gin", num_samples=None, stop=None)


def _bind_model_dir(args: argparse.Namespace) -> None:
    """The positional MODEL_DIR as the gin macro ``deepdive sample`` reads."""
    if args.model_dir:
        args.gin_bindings = [*getattr(args, "gin_bindings", []), f"MODEL_DIR = {args.model_dir!r}"]


def choose_template(model_dir: Any, flag: str | None) -> tuple[str, Any]:
    """``(name, template)``: MODEL_DIR/chat.json's template, else ``--template``."""
    from framework.core.registry import TEMPLATES

    chat_json = paths.as_path(model_dir) / "chat.json"
    if chat_json.exists():
        try:
            name = json.loads(chat_json.read_text())["template"]
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f'{chat_json}: not {{"template": NAME}} ({error})') from None
        if flag and flag != name:
            _note(f"--template {flag} ignored: {chat_json} names the run's template, {name}")
    elif flag:
        name = flag
    else:
        raise ConfigError(
            f"{model_dir}: no chat.json names the chat template; pass --template NAME "
            f"(known: {', '.join(TEMPLATES.names())})"
        )
    return name, TEMPLATES.build(name)


def read_conversations(path: str) -> list[str]:
    """The non-blank lines of the ``--json`` file."""
    source = paths.as_path(path)
    if not source.exists():
        raise InputError(f"--json {path}: no such file")
    try:
        lines = source.read_text().splitlines()
    except UnicodeDecodeError as error:
        raise InputError(f"--json {path}: not UTF-8 ({error})") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise InputError(f"--json {path}: no conversations (one JSON object per line)")
    return lines


def check_inputs(args: argparse.Namespace):
    """No compute: settings, run directory, template vs tokenizer, the ``--json`` file.
    Returns ``(config, template_name, template, tokenizer, end_of_turn_id, conversations)``."""
    from framework.sample import chat
    from framework.train import checkpoint

    config = sample_command.settings(args)
    paths.check_location(config.model_dir, "MODEL_DIR")
    model_dir = paths.as_path(config.model_dir)
    if not model_dir.is_dir():
        raise InputError(f"MODEL_DIR {config.model_dir}: no such run directory")
    sample_command.validate_config(args)  # sampler chain, model.json, checkpoints/, tokenizer/
    name, template = choose_template(model_dir, args.template)
    if args.tokenizer:
        from framework.tokenize.files import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    else:
        tokenizer = checkpoint.load_run_tokenizer(model_dir)
    _, model_config = checkpoint.read_model_config(model_dir)
    end_id = chat.check_compatible(tokenizer, template, name, int(model_config.vocab_size))
    conversations = read_conversations(args.json) if args.json else None
    return config, name, template, tokenizer, end_id, conversations


def validate_config(args: argparse.Namespace) -> None:
    """``--dry_run``: the checks of :func:`check_inputs`."""
    check_inputs(args)


def run(args: argparse.Namespace) -> int:
    _bind_model_dir(args)
    cli.configure(args)
    config, name, template, tokenizer, end_id, conversations = check_inputs(args)
    if args.dry_run:
        print(f"ok: chat with {config.model_dir} (template {name})")
        return 0
    from framework.sample import generate as sample
    from framework.train import checkpoint

    chain = sample.canonical_chain(config.sampler)
    began = time.perf_counter()
    model, _, model_config, step = checkpoint.load_for_inference(config.model_dir, config.step)
    generator = sample_command.make_generator(
        config, model, model_config, chain, tokenizer, eos_id=end_id,
        rows=len(conversations or [1]), batch_size=1 if conversations is None else None,
    )  # fmt: skip
    _note(
        f"{config.model_dir} step {step} ({type(model_config).__name__}, loaded in "
        f"{time.perf_counter() - began:.1f}s); template {name}; sampler: "
        f"{sample.describe_chain(chain)}; seed {config.seed}"
        + ("" if conversations is not None else "; /help lists the commands")
    )
    if conversations is not None:
        return answer_file(args, config, generator, tokenizer, template, conversations)
    return repl(args, config, generator, tokenizer, template)


# ------------------------------------------------------------------------------------------------
# Interactive


def repl(args, config, generator, tokenizer, template) -> int:
    """Read user lines from stdin until /quit or end of input; stream each reply to stdout."""
    from framework.sample import chat
    from framework.sample.generate import CachedDecoder

    session = chat.ChatSession(
        CachedDecoder(generator),
        tokenizer,
        template,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        system=args.system,
    )
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            if _command(session, line):
                break
            continue
        try:
            turn = session.send(line, on_text=_write, on_note=_note)
        except InputError as error:
            _note(str(error))
            continue
        _write("\n")
        if turn.finish_reason == "length":
            _note(f"(the reply stopped at --max_new_tokens {config.max_new_tokens})")
        elif turn.finish_reason == "context":
            _note(
                f"(the reply stopped at the model's context of {session.context} tokens; the "
                "next turn drops the oldest turns)"
            )
        if args.verbose:
            s = turn.stats
            _note(
                f"turn {session.turns}: fed {turn.fed} tokens on top of {turn.cached} cached; "
                f"generated {len(turn.tokens)} ({turn.finish_reason}) in "
                f"{s.prefill_s + s.decode_s:.2f}s, {s.tokens_per_s:.1f} tokens/s; "
                f"conversation {len(session.tokens)}/{session.context} tokens"
            )
    return 0


def _command(session: Any, line: str) -> bool:
    """Run a /command; True when the session should end."""
    command, _, rest = line.strip().partition(" ")
    if command in ("/quit", "/exit"):
        return True
    if command == "/reset":
        session.reset()
        _note("(conversation cleared)")
    elif command == "/system":
        session.set_system(rest)
        _note("(system prompt set; new conversation)" if rest.strip() else
              "(system prompt cleared; new conversation)")  # fmt: skip
    elif command == "/help":
        print(COMMANDS_HELP, file=sys.stderr)
    else:
        _note(f"unknown command {command}; /help lists the commands")
    return False


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text: str) -> None:
    print(f"deepdive chat: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Batch


def parse_conversation(line: str, template: Any) -> str:
    """The chat text of one JSONL line (rendered with the generation prompt); InputError for a
    line that is not a conversation ending in a user message."""
    from framework.sample import chat

    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"not JSON ({error})") from None
    if not isinstance(record, dict):
        raise InputError(f"not a JSON object but {type(record).__name__}")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError('no messages (want {"messages": [{"role": ..., "content": ...}, ...]})')
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputError(f"message {index} is not an object")
    if messages[-1].get("role") != "user":
        raise InputError(f"the last message is {messages[-1].get('role')!r}, not the user's")
    return chat.render_text(template, messages, generation_prompt=True)


def answer_file(args, config, generator, tokenizer, template, lines: list[str]) -> int:
    """Answer every conversation of ``lines`` (batched, grouped by how many tokens each may
    generate); write one JSON line each, in order."""
    from framework.sample import chat
    from framework.sample.generate import GenerationStats

    context = generator.max_seq_len
    records: dict[int, dict[str, Any]] = {}
    groups: dict[int, list[tuple[int, list[int]]]] = {}  # tokens allowed -> (index, prompt)
    for index, line in enumerate(lines):
        try:
            prompt = chat.encode(tokenizer, template, parse_conversation(line, template))
        except (InputError, ValueError) as error:
            records[index] = {"index": index, "error": str(error)}
            continue
        room = context - len(prompt) if context else config.max_new_tokens
        if room < 1:
            error = f"{len(prompt)} tokens: the model's context is {context}"
            records[index] = {"index": index, "error": error}
            continue
        groups.setdefault(min(config.max_new_tokens, room), []).append((index, prompt))
    stats = GenerationStats()
    for budget, members in sorted(groups.items(), reverse=True):
        completions = generator.generate(
            [prompt for _, prompt in members],
            max_new_tokens=budget,
            seed=config.seed,
            decode=tokenizer.decode,
            stats=stats,
        )
        for (index, _), c in zip(members, completions, strict=True):
            records[index] = {
                "index": index,
                "completion": c.text,
                "tokens": c.tokens,
                "logprobs": c.logprobs,
                "finish_reason": "end_of_turn" if c.finish_reason == "eos" else "length",
            }
    text = "".join(json.dumps(records[i], ensure_ascii=False) + "\n" for i in range(len(lines)))
    if args.output:
        paths.write_text(args.output, text)
    else:
        _write(text)
    errors = sum("error" in r for r in records.values())
    _note(
        f'{len(lines)} conversations, {errors} malformed (their lines carry "error"); '
        f"{stats.tokens} tokens in {stats.prefill_s + stats.decode_s:.2f}s "
        f"({stats.tokens_per_s:.1f} tokens/s)" + (f"; wrote {args.output}" if args.output else "")
    )
    return 0
