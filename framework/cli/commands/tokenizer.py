"""``deepdive tokenizer train|show|serve|encode``: build, inspect and use tokenizers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from framework.cli import app as cli
from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.tokenize import training

HELP = "train, show, serve or use a tokenizer"
DESCRIPTION = """Train, inspect and use tokenizers.

  train   learn a vocabulary from documents (*.jsonl.gz, a data-stage output dir) or *.txt files;
          the gin file picks the plugin (experiments/tokenizers/{bpe,sentencepiece,bytes}.gin).
          VOCAB_SIZE counts the 256 bytes plus the merges; special tokens come on top.
  show    print a text's tokens on coloured backgrounds, their ids and the count
  serve   token explorer web page on http://127.0.0.1:PORT (several --tokenizer: side by side)
  encode  token ids of stdin as a JSON list on stdout
  add-special  a copy of a tokenizer with special tokens added after its ids (no retraining):
          --tokens NAME... or --template NAME (a chat template's tokens, for fine-tuning)

--tokenizer takes a tokenizer directory, a tiktoken rank file (*.tiktoken[.gz]; OpenAI's r50k,
cl100k and o200k files are recognised), a folder with GPT-2's encoder.json + vocab.bpe, or a
SentencePiece *.model.

examples:
  deepdive tokenizer train --gin_file experiments/tokenizers/bpe.gin \\
      --gin.INPUT='"../shared/corpora/text/tinyshakespeare.txt"' --gin.OUTPUT_DIR='"runs/tok"' \\
      --gin.VOCAB_SIZE=4096
  deepdive tokenizer show --tokenizer runs/tok "To be, or not to be"
  echo "hello world" | deepdive tokenizer encode --tokenizer cl100k_base.tiktoken
  deepdive tokenizer serve --tokenizer runs/tok --tokenizer cl100k_base.tiktoken --port 8765
  deepdive tokenizer add-special runs/tok --template chatml --output runs/tok_chat"""

TOP_LEVEL = "tokenizer.train_tokenizer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a tokenizer (gin: INPUT, OUTPUT_DIR, VOCAB_SIZE)")
    cli.add_common_arguments(train)
    train.add_argument("--dry_run", action="store_true", help="check the configuration only")
    train.set_defaults(_default_gin_file="tokenizers/bpe.gin")

    show = sub.add_parser("show", help="coloured tokens, ids and count in the terminal")
    show.add_argument("--tokenizer", required=True, help="tokenizer dir or rank file")
    show.add_argument("text", nargs="?", help="text to show (default: stdin)")
    show.add_argument("--no_colour", action="store_true", help="brackets instead of colours")

    serve = sub.add_parser("serve", help="token explorer web page on 127.0.0.1")
    serve.add_argument(
        "--tokenizer", required=True, action="append", help="tokenizer (repeat to compare)"
    )
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")

    add = sub.add_parser(
        "add-special", help="add special tokens (e.g. a chat template's) without retraining"
    )
    add.add_argument("tokenizer", help="tokenizer dir or rank file to extend")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--tokens", nargs="+", metavar="TOKEN", help="special tokens to add")
    what.add_argument("--template", help="add this chat template's special tokens (chatml, ...)")
    add.add_argument("--output", required=True, help="the extended tokenizer's folder")

    encode = sub.add_parser("encode", help="stdin → token ids as a JSON list on stdout")
    encode.add_argument("--tokenizer", required=True, help="tokenizer dir or rank file")
    encode.add_argument(
        "--allowed_special",
        default="none",
        help="'all', 'none' (special-token text is an error, as in tiktoken), 'text' (encode it "
        "as ordinary text) or a comma-separated list",
    )


# -- train ----------------------------------------------------------------------------------------


def validate_config(args: argparse.Namespace) -> None:
    from framework.core import config

    vocab = config.query("train_tokenizer.vocab_size")
    if isinstance(vocab, int) and vocab < 256:
        raise ConfigError(f"VOCAB_SIZE = {vocab}: must be at least 256 (the byte alphabet)")
    output_dir = config.query("OUTPUT_DIR") or config.query("train_tokenizer.output_dir")
    if isinstance(output_dir, str):
        paths.check_location(output_dir, "OUTPUT_DIR")


def _run_train(args: argparse.Namespace) -> int:
    from framework.core import config

    parsed = cli.configure(args)
    config.build_references()
    validate_config(args)
    if args.dry_run:
        print("ok: configuration is valid (dry run)")
        return 0
    output_dir = config.query("OUTPUT_DIR") or config.query("train_tokenizer.output_dir")
    stats = training.train_tokenizer()
    config.write_run_files(output_dir, parsed, training=stats)
    paths.write_text(paths.as_path(output_dir) / "COMPLETED", "")  # last: a finished tokenizer
    print(
        f"saved {output_dir}: vocab {stats['vocab_size']}, {stats['bytes'] / 1e6:.2f} MB in "
        f"{stats['seconds']:.1f} s ({stats['mb_per_s']} MB/s)"
    )
    if stats.get("note"):
        print(f"note: {stats['note']}")
    return 0


# -- use ------------------------------------------------------------------------------------------


def _load(path: str) -> Any:
    from framework.tokenize.files import load_tokenizer

    return load_tokenizer(path)


def _allowed(value: str) -> dict[str, Any]:
    if value == "all":
        return {"allowed_special": "all"}
    if value == "none":
        return {}
    if value == "text":
        return {"disallowed_special": ()}
    return {"allowed_special": {s.strip() for s in value.split(",") if s.strip()}}


def _run_encode(args: argparse.Namespace) -> int:
    tok = _load(args.tokenizer)
    text = sys.stdin.read()
    try:
        ids = tok.encode(text, **_allowed(args.allowed_special))
    except ValueError as error:
        raise InputError(f"stdin: {error}") from None
    sys.stdout.write(json.dumps(ids) + "\n")
    return 0


def _run_add_special(args: argparse.Namespace) -> int:
    from framework.core import discovery, registry

    names = args.tokens
    if args.template:
        discovery.load_builtin_kind("templates")
        names = list(registry.TEMPLATES.build(args.template).special_tokens)
    paths.check_location(args.output, "--output")
    tok = _load(args.tokenizer)
    if not hasattr(tok, "add_special_tokens"):
        raise ConfigError(f"{args.tokenizer}: this tokenizer kind cannot take new special tokens")
    before = tok.vocab_size
    ids = tok.add_special_tokens(names)
    paths.save_folder(args.output, tok.save)
    paths.write_text(paths.as_path(args.output) / "COMPLETED", "")
    listed = ", ".join(f"{name} = {sid}" for name, sid in ids.items())
    print(f"saved {args.output}: vocab {before} -> {tok.vocab_size} ({listed})")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from framework.tokenize.explorer import ansi_render

    tok = _load(args.tokenizer)
    text = args.text if args.text is not None else sys.stdin.read()
    print(ansi_render(tok, text, colour=not args.no_colour))
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from framework.tokenize.explorer import make_server

    toks = [_load(path) for path in args.tokenizer]
    try:
        server = make_server(toks, port=args.port)
    except OSError as error:
        raise ConfigError(f"--port {args.port}: cannot listen on 127.0.0.1: {error}") from None
    host, port = server.server_address[:2]
    print(f"token explorer on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run(args: argparse.Namespace) -> int:
    return {
        "train": _run_train,
        "encode": _run_encode,
        "add-special": _run_add_special,
        "show": _run_show,
        "serve": _run_serve,
    }[args.action](args)
