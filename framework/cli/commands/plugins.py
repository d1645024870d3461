"""``deepdive plugins [list] [--kind K]`` and ``deepdive plugins describe KIND.NAME``."""

from __future__ import annotations

import argparse
import inspect

import gin

from framework.cli import app as cli
from framework.core import discovery, registry

HELP = "list registered plugins by kind, or describe one (signature, defaults, bindings)"
DESCRIPTION = """List every registered plugin by kind with its origin, or describe one.

examples:
  deepdive plugins
  deepdive plugins list --kind filters
  deepdive plugins describe filters.gopher_quality --gin_file experiments/data/fineweb.gin"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=["list", "describe"])
    parser.add_argument("name", nargs="?", help="KIND.NAME for describe")
    parser.add_argument("--kind", help="only this kind (filters, models, ...)")
    cli.add_common_arguments(parser)


def _signature(obj) -> inspect.Signature:
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return sig.replace(parameters=params)


def list_plugins(kind_filter: str | None) -> None:
    kinds = [registry.kind(kind_filter)] if kind_filter else list(registry.REGISTRIES.values())
    for reg in kinds:
        print(f"{reg.kind} ({len(reg.names())})")
        for entry in reg.entries():
            doc = (inspect.getdoc(entry.obj) or "").split("\n")[0]
            print(f"  {entry.name:<24} {doc}")
            print(f"  {'':<24} from {entry.origin}")
    if discovery.FAILURES:
        print("failed to load (skipped):")
        for source, error in discovery.FAILURES:
            print(f"  {source}: {error}")


def describe(qualified: str) -> None:
    entry = registry.lookup(qualified)
    print(f"{entry.qualified_name}")
    print(f"  origin: {entry.origin}")
    doc = inspect.getdoc(entry.obj)
    if doc:
        print("  " + doc.replace("\n", "\n  "))
    print("  parameters (gin: " + entry.qualified_name + ".PARAM = VALUE):")
    for p in _signature(entry.obj).parameters.values():
        default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
        annotation = "" if p.annotation is inspect.Parameter.empty else f": {p.annotation}"
        print(f"    {p.name}{annotation}{default}")
    bindings = gin.get_bindings(entry.qualified_name)
    if bindings:
        print("  current bindings:")
        for key, value in bindings.items():
            print(f"    {key} = {value!r}")


def run(args: argparse.Namespace) -> int:
    cli.configure(args, check_required=False)
    if args.action == "describe":
        if not args.name:
            from framework.core.errors import ConfigError

            raise ConfigError("plugins describe: name a plugin as KIND.NAME")
        describe(args.name)
    else:
        list_plugins(args.kind)
    return 0
