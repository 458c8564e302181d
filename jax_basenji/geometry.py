"""Window geometry, one set of rules for every command: where an input window lies on a chromosome,
how it is read, and where its output bins lie in it.

- **Centre rule.** A window of L bp centred on [start, end) starts at (start + end) // 2 - L // 2: the
  seed's resize of BED regions for training. `predict regions`, `evaluate tss` (start = end = the
  TSS), ISM and attribution use the same rule, so one region gives one window everywhere.
- **Variant rule.** upstream `basenji_sad.py` puts a variant's first base at 0-based index L // 2 - 1
  of its window: the window starts at POS - L // 2 for the 1-based POS, and a cluster's shared window
  at its middle position (baskerville `SNPCluster.delimit`). It differs from the centre rule on
  [POS - 1, POS) by one bp; scores are compared with upstream's, so upstream's rule is kept.
- **Reading.** Positions before a chromosome's start or past its end are N (`Genome.fetch` pads
  them); N is an all-zero one-hot row, or the model's N value (0.25 for the seed's checkpoints).
- **Output bins.** Bin j of a window starting at s covers [s + crop + j * pool, + pool), crop =
  (L - bins * pool) / 2. A chromosome is tiled by windows whose bins abut.
- **Central bins.** n central bins start at bins // 2 - n // 2: an odd n is centred on bin
  bins // 2, the bin holding the window's centre (the seed's TSS bins 447-449 of 896), an even n
  splits around it (upstream `basenji_predict_bed.py`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from jax_basenji.errors import InputError

if TYPE_CHECKING:
    from jax_basenji.config import ModelConfig
    from jax_basenji.data.genome import Genome


@dataclasses.dataclass(frozen=True)
class Window:
    chrom: str
    start: int  # 0-based first input position (N where outside the chromosome)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a model's output bins lie in its input window."""

    length: int  # input bp
    bins: int  # output bins
    pool: int = 128  # bp per output bin

    @classmethod
    def of(cls, cfg: ModelConfig) -> Geometry:
        return cls(cfg.seq_length, cfg.output_bins(cfg.seq_length), cfg.bin_size)

    @property
    def crop(self) -> int:
        """bp of input on each side without an output bin."""
        return (self.length - self.bins * self.pool) // 2

    @property
    def stride(self) -> int:
        """bp covered by one window's output bins: the tiling step."""
        return self.bins * self.pool

    def bin_start(self, window_start: int, first_bin: int = 0) -> int:
        """Genome position where output bin `first_bin` of the window starting at `window_start` begins."""
        return window_start + self.crop + first_bin * self.pool

    def site(self, site_length: int | None) -> slice:
        """The central output bins covering `site_length` bp (all bins if None); InputError unless it is a
        positive multiple of the bin size within the output."""
        if site_length is None:
            return slice(0, self.bins)
        if site_length <= 0 or site_length % self.pool or site_length > self.stride:
            raise InputError(f"--site-length {site_length} must be a positive multiple of {self.pool} bp, at "
                             f"most the {self.stride} bp of the output bins")
        return central_bins(self.bins, site_length // self.pool)


def centred(start: int, end: int, length: int) -> tuple[int, int]:
    """[start', end') of `length` bp centred on [start, end) (the centre rule)."""
    first = (start + end) // 2 - length // 2
    return first, first + length


def centred_window(chrom: str, start: int, end: int, length: int) -> Window:
    """The window of `length` bp centred on [start, end)."""
    return Window(chrom, centred(start, end, length)[0])


def variant_start(pos: int, length: int) -> int:
    """0-based start of the window of a variant at 1-based `pos` (the variant rule)."""
    return pos - length // 2


def central_bins(bins: int, n: int) -> slice:
    """The `n` central bins of `bins`."""
    first = bins // 2 - n // 2
    return slice(first, first + n)


def tile(chrom: str, size: int, geo: Geometry) -> list[Window]:
    """Windows whose output bins cover [0, size) back to back: bin j of window k starts at
    k * stride + j * pool (the first and last windows reach into N padding)."""
    n = -(-size // geo.stride)
    return [Window(chrom, k * geo.stride - geo.crop) for k in range(n)]


def one_hot_window(genome: Genome, w: Window, length: int, n_value: float = 0.0) -> np.ndarray:
    """`[length, 4]` one-hot of a window: uint8 with N as all-zero rows, or float32 with N rows set to
    `n_value` when it is not 0 (commands that bypass the predictor's own N fill)."""
    from jax_basenji.data.layout import index_to_one_hot  # here: jax_basenji.data imports this module

    one_hot = index_to_one_hot(genome.fetch(w.chrom, w.start, w.start + length))
    if not n_value:
        return one_hot
    x = one_hot.astype(np.float32)
    x[one_hot.sum(axis=1) == 0] = n_value
    return x
