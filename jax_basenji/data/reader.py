"""The training input path: store rows copied once, straight into batch buffers, on threads.

Measured on the 2-core development machine at the real human shape (131,072 bp,
896 x 5313 float16 targets, 9.5 MB per example), grain's per-example path gave
2.3-2.7 GB/s in-process on one core and 0.12-0.20 GB/s with worker processes:
each example was sliced from a memory map, checksummed, turned into a one-hot
copy, reverse-complemented and shifted into more copies, then stacked into the
batch; worker processes added pickling and a shared-memory round trip per
batch. Here grain keeps what it does well and cheaply (the global shuffle, the
epochs, the per-element random draws, each process's rows: `pipeline.batch_plan`
is `make_dataset`'s order and draws without the data), and the data take one
copy: `source.read_into` copies each example's sequence index and targets from
the memory-mapped shards into its row of a batch buffer and checks the CRC32C
there, on `threads` threads (numpy's copy and the ctypes CRC run without the
GIL). The reverse complement and shift happen in the jitted step
(`device_augment`).

Batch buffers are reused once nothing refers to a batch handed out from them
any more (a fresh 38 MB buffer per batch costs its page faults and zeroing:
~20 % of the reading time). The iterator's state is the number of batches
handed out, in the format of grain's `get_state()` for the same pipeline, so
checkpoints of either resume in the other.
"""

from __future__ import annotations

import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import grain
import numpy as np


class BufferPool:
    """Batch buffers `{"sequence": [B, L] uint8, "target": [B, bins, T] float16}`, reused when free.

    Each handed-out array is a view of a fresh `np.frombuffer` array over a pooled bytearray.
    numpy points every view of it (slices, reshapes, a zero-copy `jax.device_put`'s reference)
    at that frombuffer array, never further down to the bytearray, so once its weak reference
    is dead nothing can read the memory any more and it is safe to overwrite.
    """

    def __init__(self, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]):
        self.shapes = shapes
        self._lent: list[tuple[dict[str, bytearray], list[weakref.ref]]] = []
        self.allocated = 0  # buffers ever made (a test checks that they are reused)

    def take(self) -> dict[str, np.ndarray]:
        for k, (raw, refs) in enumerate(self._lent):
            if all(ref() is None for ref in refs):
                del self._lent[k]
                break
        else:
            raw = {name: bytearray(int(np.prod(shape)) * np.dtype(dtype).itemsize)
                   for name, (shape, dtype) in self.shapes.items()}
            self.allocated += 1
        owners = {name: np.frombuffer(raw[name], dtype) for name, (_, dtype) in self.shapes.items()}
        self._lent.append((raw, [weakref.ref(a) for a in owners.values()]))
        return {name: owners[name].reshape(shape) for name, (shape, _) in self.shapes.items()}


class BatchReader:
    """Iterator of `{"sequence": [b, L] uint8 index, "target": [b, bins, T] float16}` batches (plus
    "rc" `[b]` bool and "shift" `[b]` int32 with augmentation) read from `source` in `plan`'s order.

    `plan[k]` is batch k's `{"index": [b], ...}` (`pipeline.batch_plan`); `source` has `read_into`,
    `seq_length` and `target_shape` (`BasenjiSource`, `ConcatSource`). `threads` readers keep
    `prefetch` batches in flight; `threads=0` reads each batch when asked, in the caller's thread.
    """

    def __init__(self, source, plan: grain.MapDataset, *, batch_size: int, threads: int = 2, prefetch: int = 2):
        if threads < 0 or prefetch < 1:
            raise ValueError(f"threads must be >= 0 and prefetch >= 1, got {threads} and {prefetch}")
        self.source, self.plan, self.length = source, plan, len(plan)
        self.buffers = BufferPool({"sequence": ((batch_size, source.seq_length), np.uint8),
                                   "target": ((batch_size, *source.target_shape), np.float16)})
        self.prefetch = prefetch
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="batch-reader") if threads else None
        self._next = 0  # batches handed out
        self._pending: deque[tuple[dict, list[Future]]] = deque()  # batches _next, _next + 1, ... being read

    def __iter__(self) -> "BatchReader":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pool is None:
            if self._next >= self.length:
                raise StopIteration
            batch = self._start(self._next, run=lambda fn, *args: fn(*args))[0]  # read here and now
        else:
            self._fill()
            if not self._pending:
                raise StopIteration
            batch, rows = self._pending.popleft()
            try:
                for row in rows:
                    row.result()  # a damaged example's DataError is raised here, in the caller's thread
            except BaseException:
                self._drain()  # the position stays at this batch: asking again reads it again
                raise
        self._next += 1
        if self._pool is not None:
            self._fill()  # the threads read ahead while the caller trains on this batch
        return batch

    def _fill(self) -> None:
        while len(self._pending) < self.prefetch and self._next + len(self._pending) < self.length:
            self._pending.append(self._start(self._next + len(self._pending), run=self._pool.submit))

    def _start(self, k: int, run) -> tuple[dict, list]:
        """Batch k's buffers and its rows' reads, started with `run(fn, *args)`."""
        plan = self.plan[k]
        batch = self.buffers.take()
        rows = [run(self.source.read_into, int(i), batch["sequence"][r], batch["target"][r])
                for r, i in enumerate(np.asarray(plan["index"]))]
        if "rc" in plan:
            batch["rc"] = np.asarray(plan["rc"], bool)
            batch["shift"] = np.asarray(plan["shift"], np.int32)
        return batch, rows

    def get_state(self) -> dict:
        """The position: batches handed out (grain's iterator state for the same pipeline)."""
        return {"next_index": self._next}

    def set_state(self, state: dict) -> None:
        """Continue with batch `state["next_index"]`, as `get_state()` left it."""
        self._drain()
        self._next = int(state["next_index"])

    def _drain(self) -> None:
        """Wait for the reads in flight (their buffers must not be written later) and drop them."""
        for _, rows in self._pending:
            for row in rows:
                row.exception()  # discarded batches are read again when asked for: errors reappear then
        self._pending.clear()

    def close(self) -> None:
        """Stop the reader threads (pending reads finish first)."""
        self._drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
