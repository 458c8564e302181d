"""Shared command-line plumbing: expected failures become one-line errors."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from jax_basenji.errors import InputError, UserError

__all__ = ["InputError", "USER_ERRORS", "one_line_errors"]

# Errors that mean "bad input", not "bug": reported as one line, exit code 2. The
# project's own types (InputError, DataError, RecordError, ConversionError,
# CheckpointError) all derive from UserError; a KeyError or a plain ValueError is a
# bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, FileExistsError)


def one_line_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so user errors print `error: ...` and exit 2, no traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except USER_ERRORS as e:
            print("error: " + " ".join(str(e).split("\n")), file=sys.stderr)
            return 2

    return wrapped
