"""Write files so that a reader never sees a half-written one: the one write-then-rename helper.

Every output goes to a temporary file beside its destination (same directory, so the
rename is atomic) and is renamed onto it only when complete; on any failure the
temporary file is removed and whatever was at the destination before is untouched.
The file's data is fsynced before the rename and the directory after it, so that after
a power loss the name never points at data that did not reach the disk (a progress
record never claims rows that were lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: setting it later would race with writer threads


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside `path` (same extension, for writers that read it);
    rename it onto `path` when the block completes.

    `overwrite=False` refuses an existing `path` (FileExistsError, a user error).
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    ext = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-", suffix=ext)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):  # mkstemp makes 0600 files: give the output the usual umask mode
            os.chmod(tmp, 0o666 & ~_UMASK)
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        _fsync(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", overwrite: bool = True) -> Iterator[IO]:
    """`open(path, mode)` through `atomic_path`."""
    with atomic_path(path, overwrite) as tmp, open(tmp, mode) as f:
        yield f


def write_json(path: str, obj: Any, indent: int | None = 2) -> str:
    """JSON written atomically; returns `path`."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent)
    return path
