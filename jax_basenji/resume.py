"""Resumable long runs (`predict genome`, `variants score`): a partial directory and its progress record.

The run writes its results batch by batch into PARTIAL/ and, after each batch is
flushed, `progress.json` = its settings + the number of items done (written
atomically). A kill loses at most one batch; `--resume` continues only a run with
the same settings, and a partial run is never restarted silently.
"""

from __future__ import annotations

import json
import os

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


def resuming(partial: str, resume: bool) -> bool:
    """A --resume of an unfinished run (it may rewrite outputs a kill left half-way)."""
    return resume and os.path.exists(os.path.join(partial, "progress.json"))


def refuse_existing(outputs: list[str], partial: str, overwrite: bool, resume: bool) -> None:
    """InputError naming the first of `outputs` that exists, unless --overwrite, or a --resume of the run
    in `partial` (a killed run rewrites its own), allows replacing it."""
    existing = [p for p in outputs if os.path.exists(p)]
    if existing and not (overwrite or resuming(partial, resume)):
        raise InputError(f"{existing[0]} already exists; pass --overwrite to replace it")
