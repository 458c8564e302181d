"""Input windows from a genome, built on worker threads while the device computes.

A window is `chrom` and a 0-based input start, which may lie before the
chromosome or run past its end: those positions are N. Regions are centred in
a window (as the seed resizes BED intervals); a chromosome is tiled so that
consecutive windows' output bins abut exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from jax_basenji.data.genome import Genome, centered
from jax_basenji.data.layout import index_to_one_hot

T = TypeVar("T")
U = TypeVar("U")


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

    @property
    def crop(self) -> int:
        """bp of input on each side without an output bin."""
        return (self.length - self.bins * self.pool) // 2

    @property
    def stride(self) -> int:
        """bp covered by one window's output bins: the tiling step."""
        return self.bins * self.pool


def centred_window(chrom: str, start: int, end: int, length: int) -> Window:
    """The window of `length` bp centred on [start, end)."""
    return Window(chrom, centered(start, end, length)[0])


def tile(chrom: str, size: int, geo: Geometry) -> list[Window]:
    """Windows whose output bins cover [0, size) back to back: bin j of window k starts at
    k * stride + j * pool (the first and last windows reach into N padding)."""
    n = -(-size // geo.stride)
    return [Window(chrom, k * geo.stride - geo.crop) for k in range(n)]


def one_hot_window(genome: Genome, w: Window, length: int) -> np.ndarray:
    """`[length, 4]` uint8 one-hot of a window (N = all-zero rows)."""
    return index_to_one_hot(genome.fetch(w.chrom, w.start, w.start + length))


def prefetched(build: Callable[[U], T], items: Iterable[U], *, threads: int = 2,
               ahead: int = 2) -> Iterator[tuple[U, T]]:
    """(item, build(item)) in order, with up to `ahead` builds running in advance on `threads`
    threads (pyfaidx reads and numpy copies release the GIL): inputs are made while the device computes.
    `items` may be a stream: it is read only `ahead` items in advance."""
    items = iter(items)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending = deque((item, pool.submit(build, item)) for item in itertools.islice(items, max(1, ahead)))
        while pending:
            item, future = pending.popleft()
            for more in itertools.islice(items, 1):
                pending.append((more, pool.submit(build, more)))
            yield item, future.result()


def window_batches(genome: Genome, windows: Sequence[Window], length: int, batch_size: int, *,
                   threads: int = 2, ahead: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """(first window index, `[batch_size, length, 4]` uint8) for consecutive batches; the last batch is
    zero-padded to the same shape (one compilation)."""

    def build(first: int) -> np.ndarray:
        batch = np.zeros((batch_size, length, 4), np.uint8)
        for k, w in enumerate(windows[first:first + batch_size]):
            batch[k] = one_hot_window(genome, w, length)
        return batch

    return prefetched(build, range(0, len(windows), batch_size), threads=threads, ahead=ahead)
