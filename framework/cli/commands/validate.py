"""``deepdive validate``: parse, check required macros, build every plugin; no compute."""

from __future__ import annotations

import argparse
import contextlib
import importlib
from pathlib import Path
from typing import Any

from framework.cli import app as cli
from framework.core import config, discovery

HELP = "parse a configuration, find unset required macros, build every plugin (no compute)"
DESCRIPTION = """Check a configuration without running it.

Parses the gin files and bindings, fails on unset %gin.REQUIRED macros, builds every plugin
the configuration selects, and runs the command's own checks (mesh vs devices, batch vs data
axes, sequence length vs context, ...).

example:
  deepdive validate --gin_file experiments/pretrain/shakespeare_char_cpu.gin --gin.MODEL_DIR='"/tmp/x"'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_common_arguments(parser)


def run_command_checks(args: argparse.Namespace) -> list[str]:
    """Run ``validate_config`` of every command whose top-level configurable is bound."""
    import gin

    bound = {selector for (_scope, selector) in gin.config._CONFIG}  # noqa: SLF001
    checked = []
    for name, module_name in cli.COMMANDS.items():
        module = importlib.import_module(module_name)
        top = getattr(module, "TOP_LEVEL", None)
        check = getattr(module, "validate_config", None)
        if (
            top
            and check
            and any(s == top or s.startswith(top + ".") or s.endswith("." + top) for s in bound)
        ):
            check(command_args(module, args))
            checked.append(name)
    return checked


def command_args(module, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` completed with the defaults of ``module``'s own options, for its checks."""
    parser = argparse.ArgumentParser(add_help=False)
    module.add_arguments(parser)
    defaults = {
        a.dest: a.default
        for a in parser._actions  # noqa: SLF001
        if a.dest not in (argparse.SUPPRESS, "help")
    }
    return argparse.Namespace(**{**defaults, **vars(args)})


def run(args: argparse.Namespace) -> int:
    parsed = cli.configure(args)
    built = config.build_references()
    checked = run_command_checks(args)
    files = ", ".join(str(p) for p in parsed.gin_files) or "(no files)"
    print(f"ok: {files}; {len(built)} plugins built; checks: {', '.join(checked) or 'parse only'}")
    return 0


def validate_run_file(run_gin: Path, root: Path, bindings: list[str] = ()) -> dict[str, Any]:
    """``deepdive validate --gin_file run_gin`` in-process, for a rendered sweep run; returns
    the facts the launchers use."""
    discovery.load_plugins()
    cli.import_command_modules()  # every command's top-level configurable, as configure() does
    args = argparse.Namespace(
        gin_file=[str(run_gin)],
        gin_bindings=list(bindings),
        beam_options=[],
        plugin_module=[],
        strict_plugins=False,
        dry_run=True,
        _default_gin_file=None,
    )
    with contextlib.chdir(root):
        config.parse(args.gin_file, args.gin_bindings)
        config.build_references()
        run_command_checks(args)  # includes deepdive train's checks
        steps = config.query("TRAIN_STEPS")
        trains = config.query("train.model", None) is not None
    return {"train_steps": steps if isinstance(steps, int) else None, "trains": trains}
