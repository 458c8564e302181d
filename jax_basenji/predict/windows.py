"""Input windows from a genome, built on worker threads while the device computes (where windows
lie and how they are read: `jax_basenji.geometry`)."""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from jax_basenji.data.genome import Genome
from jax_basenji.geometry import Window, one_hot_window

T = TypeVar("T")
U = TypeVar("U")


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
