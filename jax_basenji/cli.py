"""Shared command-line plumbing: expected failures become one-line errors."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from typing import Callable

from jax_basenji.errors import InputError, UserError

__all__ = ["InputError", "USER_ERRORS", "atomic_output", "one_line_errors"]

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


def atomic_output(path: str, overwrite: bool) -> str:
    """A temporary path beside `path`; `os.replace` it onto `path` once complete.

    Refuses an existing `path` unless `overwrite`, so nothing written before is lost.
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
    os.close(fd)
    return tmp
