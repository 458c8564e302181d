"""Benchmarks.

  python -m jax_basenji.bench data --store STORE [--species human] [--batch-size 4] [--seconds 20]

`data`: examples/s and GB/s of decoded targets through the full training
pipeline (shuffle, augmentation, batching), in-process (workers=0: grain's
thread prefetch), with 1 worker process and with one per CPU core, after a
warm-up that lets the workers start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from jax_basenji.cli import one_line_errors
from jax_basenji.data import BasenjiSource, make_dataset


def bench_pipeline(source, *, batch_size: int, workers: int, seconds: float, warmup_batches: int = 4) -> dict:
    """Run the training pipeline for ~`seconds` after warm-up; return throughput figures."""
    it = iter(make_dataset(source, batch_size=batch_size, seed=0, augment=True, workers=workers))
    for _ in range(warmup_batches):
        next(it)
    n_batches, target_bytes, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(it)
        n_batches += 1
        target_bytes += batch["target"].nbytes
    elapsed = time.perf_counter() - start
    examples = n_batches * batch_size
    return {"workers": workers, "examples": examples, "seconds": round(elapsed, 3),
            "examples_per_s": round(examples / elapsed, 2),
            "target_gb_per_s": round(target_bytes / elapsed / 1e9, 3),
            "target_gb_per_s_per_process": round(target_bytes / elapsed / 1e9 / max(workers, 1), 3)}


def bench_data(args) -> dict:
    source = BasenjiSource(args.store, args.species, args.subset)
    shape = {"seq_length": source.seq_length, "target": list(source.store.target_shape)}
    print(f"{source}", file=sys.stderr)
    cores = os.cpu_count() or 1
    rows = [bench_pipeline(source, batch_size=args.batch_size, workers=w, seconds=args.seconds)
            for w in sorted({0, 1, cores})]
    for r in rows:
        print(f"workers={r['workers']:2d}  {r['examples_per_s']:8.1f} examples/s  "
              f"{r['target_gb_per_s']:6.3f} GB/s targets  ({r['target_gb_per_s_per_process']:.3f} GB/s per process)")
    return {"benchmark": "data", "shape": shape, "batch_size": args.batch_size, "cpu_cores": cores,
            "machine": platform.processor() or platform.machine(), "rows": rows}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jax_basenji.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="data pipeline throughput")
    d.add_argument("--store", required=True, help="converted store directory")
    d.add_argument("--species", default="human")
    d.add_argument("--subset", default="train")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    d.add_argument("--json", help="also write the figures to this JSON file")
    return p.parse_args(argv)


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    result = bench_data(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
