"""The command line: ``deepdive COMMAND`` (``app``), the ``deepdive run`` job runner (``jobs``),
and one thin module per command (``commands/``: parse arguments, call library functions)."""

from framework.cli.app import main

__all__ = ["main"]
