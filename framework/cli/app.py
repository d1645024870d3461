"""The ``deepdive`` command: argument parsing and dispatch to ``framework/cli/commands/<name>.py``.

Every command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; it may define ``TOP_LEVEL`` (its top-level gin configurable) and
``validate_config(args)`` (checks ``deepdive validate`` and ``--dry_run`` run without compute).
Command modules are imported when the parser is built; one that fails to import is listed with
its error, and the others stay usable.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import traceback
from collections.abc import Sequence

from framework.core.errors import ConfigError

# name -> module (in the order `deepdive --help` lists them)
COMMANDS: dict[str, str] = {
    name: f"framework.cli.commands.{module}"
    for name, module in (
        ("plugins", "plugins"),
        ("validate", "validate"),
        ("data", "data"),
        ("dedup", "dedup"),
        ("explain", "explain"),
        ("tokenizer", "tokenizer"),
        ("tokenize", "tokenize"),
        ("train", "train"),
        ("compile", "compile"),
        ("eval", "eval"),
        ("convert", "convert"),
        ("sample", "sample"),
        ("chat", "chat"),
        ("skill", "skill"),
        ("sweep", "sweep"),
        ("run", "run"),
    )
}


def command_available(name: str) -> bool:
    """Whether ``deepdive NAME`` exists (tests use it to skip what a build leaves out)."""
    return name in COMMANDS


def split_gin_bindings(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Separate ``--gin.X=Y`` bindings and the Beam options after ``--`` from other arguments."""
    rest: list[str] = []
    bindings: list[str] = []
    beam: list[str] = []
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        argv, beam = argv[:cut], argv[cut + 1 :]
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--gin.") and arg != "--gin_file":
            body = arg[len("--gin.") :]
            if "=" not in body and i + 1 < len(argv):
                body = f"{body}={argv[i + 1]}"
                i += 1
            bindings.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, bindings, beam


def add_common_arguments(parser: argparse.ArgumentParser, gin_files: bool = True) -> None:
    """Options shared by every gin-driven command."""
    group = parser.add_argument_group("configuration")
    if gin_files:
        group.add_argument(
            "--gin_file",
            action="append",
            default=[],
            metavar="FILE",
            help="gin file (repeatable, applied in order; resolved against the working directory, "
            "then experiments/)",
        )
        group.add_argument(
            "--gin.NAME=VALUE",
            dest="_gin_placeholder",
            metavar="",
            help="bind a macro or parameter after the files, e.g. --gin.MODEL_DIR='\"runs/x\"' "
            "(repeatable)",
        )
    group.add_argument(
        "--plugin_module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module to register more plugins (repeatable)",
    )
    group.add_argument(
        "--strict_plugins",
        action="store_true",
        help="fail when a third-party plugin cannot be loaded (default: report and skip)",
    )


def version() -> str:
    """deepdive's installed version, with the jax it runs on."""
    from importlib import metadata

    import jax

    try:
        ours = metadata.version("deepdive")
    except metadata.PackageNotFoundError:
        ours = "unknown (not installed)"
    return f"deepdive {ours} (jax {jax.__version__}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepdive",
        description="deepdive: web pages → tokenizer → trained model → sampled text. Every part is "
        "a plugin chosen in a gin file (see `deepdive plugins`).",
        epilog="Exit codes: 0 success, 2 bad input or configuration, 1 internal error.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001 - keep the other commands usable
            p = sub.add_parser(name, help=f"[failed to import: {error}]")
            p.set_defaults(_module=None)
            continue
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, bindings, beam = split_gin_bindings(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(rest)
        if args.version:
            print(version())
            return 0
        if args.command is None:
            parser.print_help()
            return 0
        args.gin_bindings = bindings
        args.beam_options = beam
        if args._module is None:
            importlib.import_module(COMMANDS[args.command])  # the import error, with traceback
        return int(args._module.run(args) or 0)
    except ConfigError as error:
        print(f"deepdive: error: {_without_gin_context(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepdive: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last resort: internal error with a traceback
        if (message := storage_error(error)) is not None:
            print(f"deepdive: error: {message}", file=sys.stderr)
            return 1
        traceback.print_exc()
        print("deepdive: internal error (the traceback above)", file=sys.stderr)
        return 1


def _without_gin_context(message: str) -> str:
    """The message without the "In call to configurable ..." lines gin appends to an error
    raised inside a configurable (the first line already names the input)."""
    return message.split("\n  In call to configurable")[0]


# errno of a full disk, a file over the size limit (RLIMIT_FSIZE) and an exceeded quota
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left",
    errno.EFBIG: "file too large",
    errno.EDQUOT: "quota exceeded",
}


def storage_error(error: BaseException) -> str | None:
    """One line for a write that failed for lack of space (also when wrapped, e.g. by orbax /
    tensorstore, which report ``[os_error_code='28']``); None for any other error."""
    seen: BaseException | None = error
    while seen is not None:
        code = getattr(seen, "errno", None)
        if code not in _STORAGE_ERRNOS:
            found = re.search(r"os_error_code='?(\d+)", str(seen))
            code = int(found.group(1)) if found else None
        if code in _STORAGE_ERRNOS:
            detail = " ".join(str(seen).split())
            return (
                f"out of disk space ({_STORAGE_ERRNOS[code]}): {detail[:500]} — completed "
                "checkpoints and finished outputs are left as they were; free space and rerun"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def import_command_modules() -> None:
    """Import every built command module and call its ``register_configurables()`` hook, so every
    command's top-level gin configurable is known before any gin file is parsed."""
    for name, module_name in COMMANDS.items():
        try:
            hook = getattr(importlib.import_module(module_name), "register_configurables", None)
            if callable(hook):
                hook()
        except Exception as error:  # noqa: BLE001 - one broken command must not block others
            print(f"warning: command {name!r} failed to import: {error}", file=sys.stderr)


def configure(args: argparse.Namespace, check_required: bool = True):
    """Load plugins and parse the gin files and bindings of ``args``; returns ParsedConfig."""
    from framework.core import config, discovery

    discovery.load_plugins(
        getattr(args, "plugin_module", []), getattr(args, "strict_plugins", False)
    )
    import_command_modules()
    files = list(getattr(args, "gin_file", []) or [])
    default_file = getattr(args, "_default_gin_file", None)
    if not files and default_file:
        files = [default_file]
    return config.parse(files, getattr(args, "gin_bindings", []), check_required=check_required)


if os.environ.get("DEEPDIVE_DEBUG"):  # pragma: no cover - developer aid
    import faulthandler

    faulthandler.enable()
