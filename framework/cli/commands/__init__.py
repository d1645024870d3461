"""One module per ``deepdive`` command (see framework/cli/app.py for the contract)."""
