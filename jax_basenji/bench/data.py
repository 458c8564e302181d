"""Data benchmark: examples/s and GB/s of the training input path (`python -m jax_basenji.bench data`).

`bench_pipeline` times one configuration: the reader (`make_train_iterator`, what training runs:
threads copying store rows into batch buffers, augmentation left to the jitted step) with a given
thread count, or grain's host-augmented `make_dataset` (the path before issue 14) with a given
worker count. `bench_data` runs one row per configuration of the `data` subcommand's arguments,
the median of `--repeats` runs, with the machine's context beside it: cores, load average, the
reader's scaling against one thread, and two figures that say what bounds it — the one-thread
copy rate of a batch buffer with and without its CRC32C (memory bandwidth: the reader's ceiling
per thread), and the milliseconds the caller's thread spends on each batch's order (grain's
shuffle and draws: ~0.1 ms per batch of 4 on a store of 34,021 examples, ~1.8 ms on one of 64,
whose `index_shuffle` costs ~0.46 ms per example against ~4 us; on 2 cores that time is taken
from the reader threads, so `--order-examples` reads a small store in a real one's order).
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from jax_basenji.cli import InputError
from jax_basenji.data import BasenjiSource, make_dataset
from jax_basenji.data.pipeline import batch_plan, make_train_iterator
from jax_basenji.data.store import copy_checksummed


def default_threads() -> list[int]:
    """1, 2, 4, ... up to the host's cores, and the core count itself: the reader's scaling curve."""
    cores = os.cpu_count() or 1
    return sorted({1 << k for k in range(cores.bit_length()) if 1 << k <= cores} | {cores})


def copy_rates(nbytes: int, seconds: float = 1.0) -> dict:
    """One thread's GB/s copying a batch of `nbytes` into reused buffers, row by row from eight
    sources (more than a last-level cache holds, as the page cache's rows are), alone and with the
    reader's CRC32C of each chunk: the memory-bandwidth ceiling of one reader thread on this host."""
    rows = max(nbytes // 4, 1)
    src = np.full((8, rows), 7, np.uint8)  # 8 rows: beyond the last-level cache, like the page cache's
    dst = np.zeros((4, rows), np.uint8)
    rates = {}
    for name, copy in (("memcpy_gb_per_s", np.copyto), ("copy_crc_gb_per_s", copy_checksummed)):
        copy(dst[0], src[0])  # pages touched before timing
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            for r in range(4):
                copy(dst[r], src[(r + 4 * done) % 8])
            done += 1
        rates[name] = round(done * dst.nbytes / (time.perf_counter() - start) / 1e9, 3)
    return rates


class AsManyExamples:
    """`source` seen as `n` examples (example i is the source's i mod its length): the order, its cost and
    the spread of rows of a store of `n` examples, read from a small synthetic one."""

    def __init__(self, source, n: int):
        self.source, self.n = source, n
        self.seq_length, self.target_shape = source.seq_length, source.target_shape
        self.strand_pair = getattr(source, "strand_pair", None)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.source[i % len(self.source)]

    def read_into(self, i: int, sequence, target) -> None:
        self.source.read_into(i % len(self.source), sequence, target)


def order_ms_per_batch(num_examples: int, batch_size: int, batches: int = 16) -> float:
    """Milliseconds the caller's thread spends computing one batch's order and augmentation draws
    (`batch_plan`'s element, grain's shuffle): work the reader threads wait behind on few cores."""
    plan = batch_plan(num_examples, batch_size=batch_size, seed=0)
    plan[batches]  # grain's first access builds its pipeline: not a per-batch cost
    start = time.perf_counter()
    for k in range(batches):
        plan[k]
    return round((time.perf_counter() - start) / batches * 1e3, 3)


def bench_pipeline(source, *, batch_size: int, seconds: float, threads: int | None = None, workers: int = 0,
                   warmup_batches: int = 4) -> dict:
    """Read training batches for ~`seconds` after warm-up: the reader with `threads` threads, or (threads
    None) grain's host-augmented pipeline with `workers` processes. Returns the row of figures; "bytes"
    counts the sequences and targets of the batches handed out."""
    if threads is not None:
        it = make_train_iterator(source, batch_size=batch_size, seed=0, augment=True, threads=threads)
        row = {"pipeline": "reader", "threads": threads}
    else:
        it = iter(make_dataset(source, batch_size=batch_size, seed=0, augment=True, workers=workers))
        row = {"pipeline": "grain", "workers": workers}
    try:
        for _ in range(warmup_batches):
            next(it)
        n_batches, copied, target_bytes, start = 0, 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = next(it)
            n_batches += 1
            copied += batch["sequence"].nbytes + batch["target"].nbytes
            target_bytes += batch["target"].nbytes
            del batch  # its buffers can be reused
        elapsed = time.perf_counter() - start
    finally:
        if hasattr(it, "close"):
            it.close()
    examples = n_batches * batch_size
    return {**row, "batch_size": batch_size, "examples": examples, "bytes": copied, "seconds": round(elapsed, 3),
            "examples_per_s": round(examples / elapsed, 2), "gb_per_s": round(copied / elapsed / 1e9, 3),
            "target_gb_per_s": round(target_bytes / elapsed / 1e9, 3)}


def _rate(row: dict) -> float:
    """Bytes per second, unrounded: a small store's rate rounds to 0.000 GB/s."""
    return row["bytes"] / row["seconds"]


def bench_data(args) -> list[dict]:
    """One row per thread count (or worker count), the median of `args.repeats` runs."""
    if min(args.threads) < 0 or min(args.workers) < 0 or args.repeats < 1 or args.seconds <= 0:
        raise InputError("--threads and --workers must be >= 0, --repeats >= 1 and --seconds > 0")
    source = BasenjiSource(args.store, args.species, args.subset)
    print(f"{source}", file=sys.stderr)
    if args.order_examples:
        if args.order_examples < len(source):
            raise InputError(f"--order-examples {args.order_examples} is below the store's {len(source)} examples")
        source = AsManyExamples(source, args.order_examples)
    configs = ([{"threads": t} for t in args.threads] if args.pipeline == "reader"
               else [{"workers": w} for w in args.workers])
    batch_bytes = args.batch_size * (source.seq_length + int(np.prod(source.target_shape)) * 2)
    context = {"seq_length": source.seq_length, "target_shape": list(source.target_shape),
               "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "order_examples": len(source), "order_ms_per_batch": order_ms_per_batch(len(source), args.batch_size),
               **copy_rates(batch_bytes)}
    print(f"one thread: memcpy {context['memcpy_gb_per_s']} GB/s, copy + CRC32C {context['copy_crc_gb_per_s']} "
          f"GB/s; order {context['order_ms_per_batch']} ms per batch", file=sys.stderr)
    rows = []
    for config in configs:
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            runs.append({**bench_pipeline(source, batch_size=args.batch_size, seconds=args.seconds, **config),
                         "load_average_1min": round(load, 2)})
        row = {**sorted(runs, key=_rate)[len(runs) // 2], **context}  # the median run
        if len(runs) > 1:
            row["runs"] = [{k: r[k] for k in ("examples_per_s", "gb_per_s", "load_average_1min")} for r in runs]
        if rows and rows[0].get("threads") == 1:
            row["scaling_vs_1_thread"] = round(_rate(row) / _rate(rows[0]), 3)
        rows.append(row)
        what = f"threads={row['threads']}" if "threads" in row else f"workers={row['workers']}"
        scaling = f"  x{row['scaling_vs_1_thread']} of 1 thread" if "scaling_vs_1_thread" in row else ""
        print(f"{row['pipeline']} {what:10s} {row['examples_per_s']:8.1f} examples/s  {row['gb_per_s']:6.3f} GB/s "
              f"(targets {row['target_gb_per_s']:.3f} GB/s){scaling}")
    return rows
