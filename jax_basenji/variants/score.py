"""Variant effect statistics, computed batch by batch into a resumable partial directory.

Per variant x track, from the predictions of the REF and ALT windows summed
over the output bins (after the --rc/--shifts ensemble average):
  SAD = sum(alt) - sum(ref)          REF = sum(ref)          ALT = sum(alt)
  SAR = log2(sum(alt) + 1) - log2(sum(ref) + 1)
  D2  = sqrt(sum over bins of (alt - ref)^2)

REF and ALT windows of a batch go through the model together (one jitted
batch of 2 x batch windows, one compilation). Statistics go to memory-mapped
arrays in OUT.partial/ and progress.json records the variants done after each
flushed batch, so a kill costs at most one batch: `--resume` continues.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.predict.windows import prefetched
from jax_basenji.resume import items_done, record_done
from jax_basenji.variants.alleles import Prepared, window_pair

STATS = ("SAD", "REF", "ALT", "SAR", "D2")


def statistics(ref: np.ndarray, alt: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """{stat: `[variants, tracks]` float64} from `[variants, bins, tracks]` REF and ALT predictions."""
    ref, alt = np.asarray(ref, np.float64), np.asarray(alt, np.float64)
    r, a = ref.sum(axis=1), alt.sum(axis=1)
    every = {"SAD": lambda: a - r, "REF": lambda: r, "ALT": lambda: a,
             "SAR": lambda: np.log2(a + 1) - np.log2(r + 1),
             "D2": lambda: np.sqrt(((alt - ref) ** 2).sum(axis=1))}
    return {s: every[s]() for s in names}


def pair_batch(genome, prepared: list[Prepared], first: int, batch_size: int, length: int) -> np.ndarray:
    """`[2 * batch_size, length, 4]` uint8: the REF windows of `prepared[first:first + batch_size]`, then
    their ALT windows (zero rows pad a short last batch), so both go through one jitted batch."""
    batch = np.zeros((2 * batch_size, length, 4), np.uint8)
    for k, p in enumerate(prepared[first:first + batch_size]):
        batch[k], batch[batch_size + k] = window_pair(genome, p.variant, length)
    return batch


def score_variants(predictor, genome, prepared: list[Prepared], partial: str, *, length: int,
                   columns: list[int] | None, stats: tuple[str, ...], record: dict, batch_size: int,
                   resume: bool, progress: bool = True) -> dict[str, np.ndarray]:
    """Fill OUT.partial/{stat}.npy `[variants, tracks]` float32; returns them (memory-mapped)."""
    done = items_done(partial, record, resume)
    os.makedirs(partial, exist_ok=True)
    tracks = len(columns) if columns is not None else predictor.model.cfg.head_tracks[record["head"]]
    arrays = {s: np.lib.format.open_memmap(os.path.join(partial, f"{s}.npy"), mode="r+" if done else "w+",
                                           dtype=np.float32, shape=(len(prepared), tracks)) for s in stats}

    def build(first: int) -> np.ndarray:
        return pair_batch(genome, prepared, first, batch_size, length)

    bar = tqdm(total=len(prepared), initial=done, unit="variant", disable=not progress, file=sys.stderr,
               desc="variants")
    for first, batch in prefetched(build, range(done, len(prepared), batch_size)):
        n = min(batch_size, len(prepared) - first)
        pred = predictor(batch)
        ref, alt = pred[:n], pred[batch_size:batch_size + n]
        if columns is not None:
            ref, alt = ref[..., columns], alt[..., columns]
        for s, values in statistics(ref, alt, stats).items():
            arrays[s][first:first + n] = values
            arrays[s].flush()
        record_done(partial, record, first + n)
        bar.update(n)
    bar.close()
    return arrays
