"""The project's input-error types: what a command reports as one line (exit 2).

Everything else — a KeyError, a ValueError from a bug — keeps its traceback, so
programming errors are never disguised as bad input. Imports nothing.
"""


class UserError(ValueError):
    """Bad input: a file, its content or an option value. The message names the culprit."""


class InputError(UserError):
    """Bad user input (file content, shape, option value)."""
