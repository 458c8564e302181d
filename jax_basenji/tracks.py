"""A head's tracks: their table, unambiguous names, selection, and the transform they were trained on.

A track is identified by its assay and its name, (assay, identifier): a fine-tuned head
holds `ATAC:Epiblast` and `RNA:Epiblast`, both with the identifier `Epiblast`. Where a
name is ambiguous a command refuses it and lists the candidates, never takes the first.

The table of a head comes, in this order, from `--targets-txt`, the checkpoint (training
records the targets of every head it trains, so a fine-tuned head knows its tracks), or
the store being evaluated; without any, tracks are `t0`, `t1`, ...
"""

from __future__ import annotations

import os

import numpy as np

from jax_basenji.errors import InputError
from jax_basenji.metrics import assays


def recorded_targets(meta: dict, head: str) -> list[dict[str, str]] | None:
    """The targets table a checkpoint records for `head` (written by training), or None."""
    return (meta.get("head_targets") or {}).get(head)


def head_targets(meta: dict, head: str, targets_txt: str | None = None,
                 fallback: list[dict[str, str]] | None = None) -> list[dict[str, str]] | None:
    """The table naming `head`'s tracks: `targets_txt`, else the checkpoint's record, else `fallback`."""
    if targets_txt:
        from jax_basenji.data.layout import read_targets_file

        return read_targets_file(targets_txt)
    return recorded_targets(meta, head) or fallback


def basenji2_targets(head_tracks: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """The Basenji2 data set's targets tables (shipped in jax_basenji/data/reference) for the heads of
    `head_tracks` named human / mouse with its track counts: every published and seed model was trained
    on them, so a converted file knows its tracks' names, assays and strand pairs."""
    from jax_basenji.data.layout import read_targets_file
    from jax_basenji.data.synth import REFERENCE_DIR, REFERENCE_TARGETS

    return {head: read_targets_file(os.path.join(REFERENCE_DIR, name))
            for head, (name, count) in REFERENCE_TARGETS.items() if head_tracks.get(head) == count}


def inherited_targets(meta: dict | None, head_tracks: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """The heads' tables that initial weights bring along (a checkpoint's record in `meta`, else, for a
    foreign file, the Basenji2 tables), for the heads of `head_tracks` that kept their track counts."""
    recorded = basenji2_targets(head_tracks) if meta is None else (meta.get("head_targets") or {})
    return {h: rows for h, rows in recorded.items() if head_tracks.get(h) == len(rows)}


def track_table(n: int, targets: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """index / identifier / description / assay / label per track; `t<i>` names without a table.

    `label` is the identifier when the identifiers are unique, else `ASSAY:identifier`: the
    column names of every table the evaluations write.
    """
    if targets is not None and len(targets) != n:
        raise InputError(f"the targets table has {len(targets)} tracks; the head has {n}")
    rows = targets or [{"identifier": f"t{i}", "description": ""} for i in range(n)]
    kinds = assays(rows)
    ids = [r.get("identifier", f"t{i}") for i, r in enumerate(rows)]
    unique = len(set(ids)) == len(ids)
    return [{"index": str(i), "identifier": ident, "description": r.get("description", ""), "assay": a,
             "label": ident if unique else f"{a}:{ident}"} for i, (r, a, ident) in enumerate(zip(rows, kinds, ids))]


def assay_columns(kinds: list[str], name: str) -> list[int]:
    """Tracks of assay `name` (case-insensitive); CHIP takes both CHIP_HISTONE and CHIP_TF."""
    name = name.upper()
    return [i for i, k in enumerate(kinds) if k == name or (name == "CHIP" and k.startswith("CHIP_"))]


def select_tracks(names: list[str], spec: list[str], targets: list[dict[str, str]] | None) -> list[int]:
    """Column indices for `spec`: labels or identifiers, indices, or assays (via the targets' descriptions).

    An identifier shared by tracks of several assays is refused with the candidates listed.
    CHIP selects CHIP_HISTONE and CHIP_TF together; assay names are case-insensitive. Every command
    takes both `--tracks 674 675` and `--tracks 674,675`: items are split at commas.
    """
    spec = [part for item in spec for part in item.split(",") if part]
    kinds = assays(targets) if targets is not None else None
    if kinds is not None and len(kinds) != len(names):
        raise InputError(f"the targets table has {len(kinds)} tracks; the predictions have {len(names)}")
    ids = [t.get("identifier") for t in targets] if targets is not None else names
    chosen: list[int] = []
    for item in spec:
        same_id = [i for i, n in enumerate(ids) if n == item]
        if item in names:
            chosen.append(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            chosen.append(int(item))
        elif kinds is not None and assay_columns(kinds, item):
            chosen += assay_columns(kinds, item)
        elif len(same_id) > 1:
            raise InputError(f"--tracks {item!r} is ambiguous: it names {', '.join(names[i] for i in same_id)}; "
                             f"write one of these or select an assay")
        elif same_id:
            chosen.append(same_id[0])
        else:
            hint = "" if kinds is not None else " (no targets table names the head's assays: see --targets-txt)"
            raise InputError(f"--tracks {item!r} is neither a track name or index nor an assay{hint}")
    if not chosen:
        raise InputError("--tracks selects no track")
    return sorted(set(chosen))


def assay_mask(table: list[dict[str, str]], names: list[str], flag: str) -> np.ndarray:
    """`[tracks]` bool: the tracks of the assays `names`; an assay the head lacks is an error."""
    mask = np.zeros(len(table), bool)
    kinds = [t["assay"] for t in table]
    for name in names:
        cols = assay_columns(kinds, name)
        if not cols:
            raise InputError(f"{flag} {name!r} matches no track; the head's assays are "
                             f"{', '.join(sorted(set(kinds)))} (case does not matter)")
        mask[cols] = True
    return mask


def trained_log1p(meta: dict, head: str, n: int) -> np.ndarray:
    """`[tracks]` bool: the tracks `head` was trained on as log(x+1) (`finetune --log1p`), from the
    checkpoint's train_config; its predictions of them are on that scale."""
    tc = meta.get("train_config") or {}
    mask = np.zeros(n, bool)
    if list(tc.get("species") or []) != [head] or not tc.get("modalities"):
        return mask
    start = 0
    for _name, tracks, _weight, log1p in tc["modalities"]:
        mask[start:start + int(tracks)] = bool(log1p)
        start += int(tracks)
    if start != n:  # a record of another head layout: trust nothing from it
        return np.zeros(n, bool)
    return mask


def log1p_tracks(meta: dict, head: str, table: list[dict[str, str]], override: list[str] | None,
                 flag: str = "--log1p-assay") -> np.ndarray:
    """`[tracks]` bool of the tracks compared on the log(x+1) scale: the assays of `override`
    when given (`none` for no track), else those the head was trained on as log(x+1)."""
    if override is None:
        return trained_log1p(meta, head, len(table))
    if [o.lower() for o in override] == ["none"]:
        return np.zeros(len(table), bool)
    return assay_mask(table, override, flag)


def assays_of(table: list[dict[str, str]], mask: np.ndarray) -> list[str]:
    """The assays of the tracks in `mask`, in table order."""
    return list(dict.fromkeys(t["assay"] for t, m in zip(table, mask) if m))
