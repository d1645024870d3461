"""Errors that the command line turns into a one-line message and exit code 2."""


class ConfigError(Exception):
    """Bad input or configuration: the user can fix it; the message names the input and the fix."""


class InputError(ConfigError):
    """A bad input file or record (named in the message)."""
