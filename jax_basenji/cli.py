"""Shared command-line plumbing: expected failures become one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import warnings
from typing import Callable

from jax_basenji.errors import InputError, UserError

__all__ = ["HelpFormatter", "InputError", "Parser", "USER_ERRORS", "one_line_errors"]

# Errors that mean "bad input", not "bug": reported as one line, exit code 2. The
# project's own types (InputError, DataError, RecordError, ConversionError,
# CheckpointError) all derive from UserError; a KeyError or a plain ValueError is a
# bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, FileExistsError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the module docstring's layout and shows every option's default (none where a
    missing option means "not used" or the help text names its default itself)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """ArgumentParser with `HelpFormatter`; its subcommands' parsers are Parsers too."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


@contextlib.contextmanager
def clean_warnings():
    """Warnings shown as one `warning: ...` line on stderr, not Python's file:line and source echo."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_args, **_kw: print(f"warning: {message}", file=sys.stderr)
        yield


def one_line_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so user errors print `error: ...` and exit 2, no traceback; warnings print as
    one line each."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            with clean_warnings():
                return main(*args, **kwargs) or 0
        except USER_ERRORS as e:
            print("error: " + " ".join(str(e).split("\n")), file=sys.stderr)
            return 2

    return wrapped
