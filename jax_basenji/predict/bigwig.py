"""Predictions as browser tracks: bigWig (pyBigWig) and bedGraph at the model's bin resolution.

Each output bin is one entry of `pool` bp; bins wholly before a chromosome's start
or past its end are dropped, and the bins across them are clipped to the
chromosome (a bigWig cannot hold positions outside its chromosomes). Files are
written under temporary names and renamed when complete.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from jax_basenji.atomic import atomic_open, atomic_path
from jax_basenji.errors import InputError


def clipped_bins(start: int, n_bins: int, pool: int, size: int) -> tuple[np.ndarray, np.ndarray, slice]:
    """(starts, ends, kept) of `n_bins` bins from `start`, restricted to [0, size)."""
    starts = start + pool * np.arange(n_bins, dtype=np.int64)
    kept = np.flatnonzero((starts + pool > 0) & (starts < size))
    if not len(kept):
        return starts[:0], starts[:0], slice(0, 0)
    sl = slice(int(kept[0]), int(kept[-1]) + 1)
    s = np.maximum(starts[sl], 0)
    return s, np.minimum(starts[sl] + pool, size), sl


def write_bigwig(path: str, chrom_sizes: list[tuple[str, int]], entries: Iterable[tuple[str, int, int]],
                 values: Callable[[int], np.ndarray], pool: int, overwrite: bool = True) -> str:
    """A bigWig of `entries` (chrom, first bin start, bins), in header order; `values(k)` gives entry k's
    `[bins]` values."""
    import pyBigWig

    sizes = dict(chrom_sizes)
    with atomic_path(path, overwrite) as tmp:
        bw = pyBigWig.open(tmp, "w")
        try:
            bw.addHeader([(c, int(n)) for c, n in chrom_sizes], maxZooms=10)
            for k, (chrom, start, n_bins) in enumerate(entries):
                s, e, sl = clipped_bins(start, n_bins, pool, sizes[chrom])
                if len(s):
                    v = np.asarray(values(k), np.float64)[sl]
                    bw.addEntries([chrom] * len(s), s.tolist(), ends=e.tolist(), values=v.tolist())
        except RuntimeError as e:  # pyBigWig's only error type (e.g. entries out of order)
            raise InputError(f"{path}: pyBigWig refused the entries ({e})") from None
        finally:
            bw.close()
    return path


def write_bedgraph(path: str, chrom_sizes: list[tuple[str, int]], entries: Iterable[tuple[str, int, int]],
                   values: Callable[[int], np.ndarray], pool: int, overwrite: bool = True) -> str:
    """The same entries as `write_bigwig`, as a bedGraph text file."""
    sizes = dict(chrom_sizes)
    with atomic_open(path, "w", overwrite) as f:
        for k, (chrom, start, n_bins) in enumerate(entries):
            s, e, sl = clipped_bins(start, n_bins, pool, sizes[chrom])
            for a, b, v in zip(s, e, np.asarray(values(k), np.float64)[sl]):
                f.write(f"{chrom}\t{a}\t{b}\t{v:.6g}\n")
    return path
