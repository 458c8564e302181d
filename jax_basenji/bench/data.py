"""Data benchmark: examples/s and GB/s of the training input path (`python -m jax_basenji.bench data`).

`bench_pipeline` times one configuration: the reader (`make_train_iterator`, what training runs:
threads copying store rows into batch buffers, augmentation left to the jitted step) with a given
thread count, or grain's host-augmented `make_dataset` (the path before issue 14) with a given
worker count. `bench_data` runs one row per configuration of the `data` subcommand's arguments,
the median of `--repeats` runs, with the machine's context (cores, load average) beside it.
"""

from __future__ import annotations

import os
import platform
import sys
import time

from jax_basenji.cli import InputError
from jax_basenji.data import BasenjiSource, make_dataset
from jax_basenji.data.pipeline import make_train_iterator


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


def bench_data(args) -> list[dict]:
    """One row per thread count (or worker count), the median of `args.repeats` runs."""
    if min(args.threads) < 0 or min(args.workers) < 0 or args.repeats < 1 or args.seconds <= 0:
        raise InputError("--threads and --workers must be >= 0, --repeats >= 1 and --seconds > 0")
    source = BasenjiSource(args.store, args.species, args.subset)
    print(f"{source}", file=sys.stderr)
    configs = ([{"threads": t} for t in args.threads] if args.pipeline == "reader"
               else [{"workers": w} for w in args.workers])
    context = {"seq_length": source.seq_length, "target_shape": list(source.target_shape),
               "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    rows = []
    for config in configs:
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            runs.append({**bench_pipeline(source, batch_size=args.batch_size, seconds=args.seconds, **config),
                         "load_average_1min": round(load, 2)})
        row = {**sorted(runs, key=lambda r: r["gb_per_s"])[len(runs) // 2], **context}  # the median run
        if len(runs) > 1:
            row["runs"] = [{k: r[k] for k in ("examples_per_s", "gb_per_s", "load_average_1min")} for r in runs]
        rows.append(row)
        what = f"threads={row['threads']}" if "threads" in row else f"workers={row['workers']}"
        print(f"{row['pipeline']} {what:10s} {row['examples_per_s']:8.1f} examples/s  {row['gb_per_s']:6.3f} GB/s "
              f"(targets {row['target_gb_per_s']:.3f} GB/s)")
    return rows
