"""One module per ``deepdive`` command (see framework/cli.py for the contract)."""
