"""Variant effect statistics, computed batch by batch into a resumable partial directory.

Per variant x track, from the predictions of the REF and ALT windows (after the
--rc/--shifts ensemble average), as upstream basenji_sad.py defines those it shares:
  SAD     = sum over bins of (alt - ref)                      (upstream's SAD)
  D2      = sqrt(sum over bins of (alt - ref)^2)               (upstream's D2)
  SAR     = log2(sum(alt) + 1) - log2(sum(ref) + 1)            (older basenji's SAD ratio)
  REF_SUM = sum(ref), ALT_SUM = sum(alt)                       (upstream's REF/ALT keep the bins)

A batch's REF and ALT windows go to the device as uint8 base indices in one jitted
call, which also computes the statistics there (float32): only `[batch, tracks]`
per statistic comes back. The VCF is streamed; windows are built on worker
threads while the device computes. Statistics go to memory-mapped arrays in
OUT.partial/ with a status per row (scored, flipped, skipped); every
RECORD_EVERY_S seconds they are flushed and progress.json records the rows done,
so a kill costs at most that much work: `--resume` continues.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Iterator

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jax_basenji.errors import InputError
from jax_basenji.predict.windows import prefetched
from jax_basenji.resume import items_done, record_done
from jax_basenji.variants import output, plan
from jax_basenji.variants.alleles import N_INDEX, window_pair
from jax_basenji.variants.incremental import MAX_EDIT, IncrementalScorer
from jax_basenji.variants.plan import FLIPPED, SCORED, SKIPPED
from jax_basenji.variants.vcf import Variant, variants

STATS = ("SAD", "SAR", "D2", "REF_SUM", "ALT_SUM")
RECORD_EVERY_S = 10.0  # seconds between progress records (each flushes every array)


def window_conventions(cfg, meta: dict, n_value: float | None = None) -> tuple[float, float | None]:
    """(N value, shift padding) of variant windows: upstream basenji_sad.py's for the published
    architecture (N 0.25, positions a shift vacates 0), else the checkpoint's own N encoding (the
    vacated positions N too); `n_value` (--n-value) overrides the N value."""
    from jax_basenji.checkpoint import n_value_of

    published = cfg.variant == "basenji2"
    if n_value is None:
        n_value = 0.25 if published else n_value_of(meta)
    return n_value, 0.0 if published else None


def statistics(ref: jnp.ndarray, alt: jnp.ndarray, names: tuple[str, ...]) -> dict[str, jnp.ndarray]:
    """{stat: `[variants, tracks]`} from `[variants, bins, tracks]` REF and ALT predictions. SAD sums the
    per-bin differences and SAR is computed from it: no cancellation of two large float32 sums."""
    r, a, sad = ref.sum(axis=1), alt.sum(axis=1), (alt - ref).sum(axis=1)
    every = {"SAD": lambda: sad, "REF_SUM": lambda: r, "ALT_SUM": lambda: a,
             "SAR": lambda: jnp.log1p(sad / (r + 1)) / np.log(2),  # = log2(a + 1) - log2(r + 1), no cancellation
             "D2": lambda: jnp.sqrt(jnp.square(alt - ref).sum(axis=1))}
    return {s: every[s]() for s in names}


def reducer(batch_size: int, columns: list[int] | None, names: tuple[str, ...]):
    """The device-side part of a batch: `[2 * batch_size, bins, tracks]` predictions -> {stat: `[batch_size,
    kept tracks]`}, REF windows first."""
    cols = None if columns is None else np.asarray(columns)

    def reduce(pred):
        ref, alt = pred[:batch_size], pred[batch_size:]
        if cols is not None:
            ref, alt = ref[..., cols], alt[..., cols]
        return statistics(ref, alt, names)

    return reduce


def pair_batch(genome, batch: list[Variant], batch_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(`[2 * batch_size, length]` uint8 base indices: the REF windows of `batch`, then their ALT windows, N
    in unused slots; `[len(batch)]` int8 status). A skipped variant leaves its slots N. (The full path's
    windows for every variant: what torch_ref is benchmarked on.)"""
    windows = np.full((2 * batch_size, length), N_INDEX, np.uint8)
    status = np.full(len(batch), SKIPPED, np.int8)
    for k, v in enumerate(batch):
        pair = window_pair(genome, v, length)
        if pair is not None:
            windows[k], windows[batch_size + k], flipped = pair
            status[k] = FLIPPED if flipped else SCORED
    return windows, status


def batched(stream: Iterator, first: int, size: int) -> Iterator[tuple[int, list]]:
    """(row of the batch's first item, up to `size` items) from a stream whose first row is `first`."""
    while batch := [v for _, v in zip(range(size), stream)]:
        yield first, batch
        first += len(batch)


def _waiting(items: Iterator, timing: dict) -> Iterator:
    """`items`, adding to timing["wait_s"] the time spent waiting for each one after the first (the
    first batch's wait is part of start-up, timed with it)."""
    timing["wait_s"], first = 0.0, True
    while True:
        asked = time.monotonic()
        item = next(items, None)
        if item is None:
            return
        if not first:
            timing["wait_s"] += time.monotonic() - asked
        first = False
        yield item


def _partial_arrays(partial: str, stats: tuple[str, ...], rows: int, tracks: int,
                    fresh: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({stat: `[rows, tracks]` float32}, `[rows]` int8 status), memory-mapped in `partial`."""
    def open_(name, dtype, shape):
        return np.lib.format.open_memmap(os.path.join(partial, f"{name}.npy"), mode="w+" if fresh else "r+",
                                         dtype=dtype, shape=shape)

    os.makedirs(partial, exist_ok=True)
    return ({s: open_(s, np.float32, (rows, tracks)) for s in stats}, open_("status", np.int8, (rows,)))


class GroupScorer:
    """Statistics of a planned group's rows, `batch_size` windows or edits per device call:
    {row of the group: {stat: `[kept tracks]`}} as `(rows, {stat: [rows, kept tracks]})` pieces."""

    def __init__(self, predictor, length: int, columns: list[int] | None, stats: tuple[str, ...],
                 batch_size: int, incremental: bool):
        self.predictor, self.batch_size = predictor, batch_size
        self.reduce = reducer(batch_size, columns, stats)
        self.incremental = (IncrementalScorer(predictor, length, columns, functools.partial(statistics, names=stats))
                            if incremental else None)

    def __call__(self, group: plan.Group) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        size = self.batch_size
        if group.edits and self.incremental is not None:
            base = self.incremental.base(group.windows)
            for _, edits in batched(iter(group.edits), 0, size):
                pad = edits + [edits[0]] * (size - len(edits))
                fields = {f: np.asarray([getattr(e, f) for e in pad]) for f in ("parent", "at", "bases", "lo", "hi", "swap")}
                yield np.asarray([e.row for e in edits]), self.incremental.edits(base, **fields)
        elif group.edits:  # the full path on the cluster windows, edits written in on the host
            full = []
            for e in group.edits:
                window, changed = group.windows[e.parent], plan.edited(group.windows[e.parent], e)
                full.append((e.row, changed, window) if e.swap else (e.row, window, changed))
            yield from self._pairs(full, group.windows.shape[1])
        yield from self._pairs(group.full, group.windows.shape[1])

    def _pairs(self, pairs: list, length: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The full path: each (row, REF window, ALT window) through the whole model, both in one batch."""
        size = self.batch_size
        for _, chunk in batched(iter(pairs), 0, size):
            windows = np.full((2 * size, length), N_INDEX, np.uint8)
            for k, (_, ref, alt) in enumerate(chunk):
                windows[k], windows[size + k] = ref, alt
            values = self.predictor(windows, reduce=self.reduce)
            yield np.asarray([row for row, _, _ in chunk]), {s: v[:len(chunk)] for s, v in values.items()}


def score_variants(predictor, genome, vcf: str, rows: range, partial: str, *, length: int,
                   columns: list[int] | None, stats: tuple[str, ...], record: dict, batch_size: int,
                   resume: bool, cluster_distance: int = 0, incremental: bool = True, progress: bool = True,
                   timing: dict | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Score VCF rows `rows` into OUT.partial/{stat}.npy `[rows, tracks]` float32 and status.npy `[rows]`
    int8; returns them (memory-mapped). Rows within `cluster_distance` bp share a window (plan.clusters);
    `incremental` scores edits of a window from its conv tower output (variants.incremental), else
    through the whole model. `timing`, if given, gets `first_batch_s` (the first group, compilation
    included) and its `first_group_rows`, `total_s`, and `wait_s`: the time after the first group
    spent waiting for windows from the host."""
    done = items_done(partial, record, resume)
    tracks = len(columns) if columns is not None else predictor.model.cfg.head_tracks[record["head"]]
    arrays, status = _partial_arrays(partial, stats, len(rows), tracks, fresh=not done)
    scorer = GroupScorer(predictor, length, columns, stats, batch_size, incremental)

    def build(item: tuple[int, list]) -> plan.Group:
        return plan.plan(genome, item[0], item[1], batch_size, length, MAX_EDIT)

    def checkpoint(upto: int) -> None:
        for a in (*arrays.values(), status):
            a.flush()
        record_done(partial, record, upto)

    timing = {} if timing is None else timing
    stream = variants(vcf, rows.start + done, rows.stop)
    groups = _waiting(prefetched(build, plan.groups(stream, done, cluster_distance, batch_size)), timing)
    bar = tqdm(total=len(rows), initial=done, unit="variant", disable=not progress, file=sys.stderr,
               desc="variants")
    start = last = time.monotonic()
    upto = done
    for _, group in groups:
        status[group.first:group.first + len(group.rows)] = group.status
        for offsets, values in scorer(group):
            for s, v in values.items():
                arrays[s][group.first + offsets] = v[:len(offsets)]
        upto = group.first + len(group.rows)
        bar.update(len(group.rows))
        timing.setdefault("first_batch_s", time.monotonic() - start)
        timing.setdefault("first_group_rows", len(group.rows))
        if time.monotonic() - last >= RECORD_EVERY_S:
            checkpoint(upto)
            last = time.monotonic()
    checkpoint(upto)
    bar.close()
    timing["total_s"] = time.monotonic() - start
    if upto != len(rows):  # the VCF changed under the run
        raise InputError(f"{vcf} gave {upto} variant rows where its first reading gave {len(rows)}")
    return arrays, status


def scored_chunks(vcf: str, rows: range, arrays: dict[str, np.ndarray],
                  status: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """The scored rows with their VCF fields, `output.ROWS` VCF rows at a time (skipped rows left out),
    for `output.write_h5`."""
    size = output.ROWS
    stream = variants(vcf, rows.start, rows.stop)
    for lo in range(0, len(rows), size):
        flags = np.asarray(status[lo:lo + size])
        keep = flags != SKIPPED
        vs = [v for k, v in zip(keep, stream) if k]  # `keep` first: zip stops before reading past the chunk
        yield {"snp": np.array([v.id for v in vs], "S"), "chr": np.array([v.chrom for v in vs], "S"),
               "pos": np.array([v.pos for v in vs], np.uint32), "ref_allele": np.array([v.ref for v in vs], "S"),
               "alt_allele": np.array([v.alt for v in vs], "S"), "flipped": flags[keep] == FLIPPED,
               **{s: np.asarray(a[lo:lo + size])[keep] for s, a in arrays.items()}}
