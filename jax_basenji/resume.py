"""Resumable long runs (`predict genome|regions`, `variants score`, `evaluate tss`): a partial
directory and its progress record.

The run writes its results batch by batch into PARTIAL/ (`Run`: one row per item, or its own
files) and, after each batch is on disk, `progress.json` = its settings + the number of items
done (written atomically). A kill loses at most one batch; `--resume` continues only a run with
the same settings, and a partial run is never restarted silently. Rows are written, never added
to, so rewriting a batch a kill left half-way gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from jax_basenji.atomic import write_json
from jax_basenji.errors import InputError


def items_done(partial: str, record: dict, resume: bool) -> int:
    """Items a resumed run has done (0 for a fresh one); InputError for an unfinished run without
    `resume`, a run with other settings, or a damaged record."""
    path = os.path.join(partial, "progress.json")
    if not os.path.exists(path):
        return 0
    if not resume:
        raise InputError(f"{partial} holds an unfinished run: pass --resume to continue it, or remove it")
    try:
        with open(path) as f:
            state = json.load(f)
    except ValueError:
        raise InputError(f"{path} is damaged; remove {partial} to start afresh") from None
    now = json.loads(json.dumps(record))
    then = {k: v for k, v in state.items() if k != "done"}
    changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if changed:
        k = changed[0]
        raise InputError(f"{partial} holds a run with other settings ({k}: {then.get(k)!r} then, {now.get(k)!r} "
                         f"now{', and ' + ', '.join(changed[1:]) if changed[1:] else ''}); rerun those, or "
                         f"remove it to start afresh")
    return int(state["done"])


def record_done(partial: str, record: dict, done: int) -> None:
    write_json(os.path.join(partial, "progress.json"), {**record, "done": done})


@dataclasses.dataclass(frozen=True)
class Run:
    """A resumable run whose results are one row per item: PARTIAL/rows.npy and PARTIAL/progress.json."""

    partial: str  # the run's folder until it is done
    record: dict  # what a resumed run must share with it (settings, inputs, shapes)
    resume: bool  # --resume

    def done(self) -> int:
        """Items done by the run this one continues (0 when fresh)."""
        return items_done(self.partial, self.record, self.resume)

    def rows(self, shape: tuple[int, ...], dtype, done: int) -> np.memmap:
        """PARTIAL/rows.npy, `[items, ...]` on disk (memory holds none of it): created for a fresh run
        (`done` 0), reopened with its first `done` rows for a resumed one."""
        os.makedirs(self.partial, exist_ok=True)
        path = os.path.join(self.partial, "rows.npy")
        try:
            rows = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=dtype, shape=shape)
        except (OSError, ValueError) as e:
            raise InputError(f"{path} is missing or damaged ({e}); remove {self.partial} to start afresh") from None
        if rows.shape != shape or rows.dtype != np.dtype(dtype):
            raise InputError(f"{path} holds {rows.dtype}{list(rows.shape)}, not {np.dtype(dtype)}{list(shape)}; "
                             f"remove {self.partial} to start afresh")
        return rows

    def save(self, rows: np.memmap, done: int) -> None:
        """Record `done` items once their rows are on disk (msync first: the record never claims rows a
        power loss could take)."""
        rows.flush()
        record_done(self.partial, self.record, done)

    def finish(self) -> None:
        """Everything made from the rows is written: the partial folder goes."""
        shutil.rmtree(self.partial, ignore_errors=True)


def resuming(partial: str, resume: bool) -> bool:
    """A --resume of an unfinished run (it may rewrite outputs a kill left half-way)."""
    return resume and os.path.exists(os.path.join(partial, "progress.json"))


def refuse_existing(outputs: list[str], partial: str, overwrite: bool, resume: bool) -> None:
    """InputError naming the first of `outputs` that exists, unless --overwrite, or a --resume of the run
    in `partial` (a killed run rewrites its own), allows replacing it."""
    existing = [p for p in outputs if os.path.exists(p)]
    if existing and not (overwrite or resuming(partial, resume)):
        raise InputError(f"{existing[0]} already exists; pass --overwrite to replace it")
