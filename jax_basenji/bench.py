"""Benchmarks.

  python -m jax_basenji.bench model [--preset basenji2-double-prime] [--batch-size 1]
      [--seq-length 131072] [--precision fp32|bf16] [--device cpu|gpu] [--json out.json]
  python -m jax_basenji.bench data --store STORE [--species human] [--batch-size 4] [--seconds 20]
  python -m jax_basenji.bench predict [--preset basenji2-double-prime] [--chrom-length 1000000] [--batch-size 4]
  python -m jax_basenji.bench variants [--preset basenji2-double-prime] [--variants 64] [--batch-size 4]

`model`: JAX vs torch_ref with the same weights and inputs, eval forward and a
full SGD training step, median of --repeats timed runs after warm-up, first
call (compilation) separately, peak memory, TFLOP/s (MFU on GPU) and the
JAX/torch time ratios (see jax_basenji.bench_model).

`data`: examples/s and GB/s of decoded targets through the full training
pipeline (shuffle, augmentation, batching), in-process (workers=0: grain's
thread prefetch), with 1 worker process and with one per CPU core, after a
warm-up that lets the workers start.

`predict` / `variants`: `predict genome`'s tiling of a random chromosome / `variants score`
on random SNVs, JAX vs torch_ref on the same windows and weights: windows/s, bp/s or
variants/s, and the time ratio (see jax_basenji.bench_inference).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from jax_basenji.atomic import write_json
from jax_basenji.bench_model import bench_model, child_main
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
    m = sub.add_parser("model", help="JAX vs torch_ref model speed")
    m.add_argument("--preset", default="basenji2-double-prime",
                   help="model preset: basenji2-double-prime, basenji2-prime, basenji2 (published), tiny "
                        "or tiny-basenji2")
    m.add_argument("--batch-size", type=int, default=1)
    m.add_argument("--seq-length", type=int, help="input length in bp (default: the preset's)")
    m.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    m.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    m.add_argument("--modes", nargs="+", choices=("forward", "train"), default=["forward", "train"])
    m.add_argument("--warmup", type=int, default=1, help="untimed runs after the first call")
    m.add_argument("--repeats", type=int, default=5, help="timed runs (the median is reported)")
    m.add_argument("--json", help="also write the figures to this JSON file")
    c = sub.add_parser("_child")  # internal: one (framework, mode) in its own process
    c.add_argument("spec")
    d = sub.add_parser("data", help="data pipeline throughput")
    d.add_argument("--store", required=True, help="converted store directory")
    d.add_argument("--species", default="human")
    d.add_argument("--subset", default="train")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    d.add_argument("--json", help="also write the figures to this JSON file")
    q = sub.add_parser("predict", help="genome tiling throughput, JAX vs torch_ref")
    q.add_argument("--chrom-length", type=int, default=1_000_000, help="bp of the random chromosome")
    v = sub.add_parser("variants", help="variant scoring throughput, JAX vs torch_ref")
    v.add_argument("--variants", type=int, default=64, help="random SNVs to score")
    for r in (q, v):
        r.add_argument("--preset", default="basenji2-double-prime")
        r.add_argument("--seq-length", type=int, help="input length in bp (default: the preset's)")
        r.add_argument("--tracks", type=int, default=5313, help="tracks of the head (default 5313, human)")
        r.add_argument("--batch-size", type=int, default=4)
        r.add_argument("--json", help="also write the figures to this JSON file")
    return p.parse_args(argv)


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.what == "_child":
        return child_main(args.spec)
    if args.what == "model":
        result = bench_model(preset=args.preset, batch_size=args.batch_size, seq_length=args.seq_length,
                             precision=args.precision, device=args.device, modes=tuple(args.modes),
                             warmup=args.warmup, repeats=args.repeats)
    elif args.what == "predict":
        from jax_basenji.bench_inference import bench_predict

        result = bench_predict(preset=args.preset, chrom_length=args.chrom_length, batch_size=args.batch_size,
                               seq_length=args.seq_length, tracks=args.tracks)
        print(f"{result['windows']} windows of {result['bp_per_window']} bp: JAX {result['jax']['windows_per_s']} "
              f"windows/s, torch_ref {result['torch_ref']['windows_per_s']} windows/s, JAX/torch time "
              f"{result['jax_over_torch_time']}")
    elif args.what == "variants":
        from jax_basenji.bench_inference import bench_variants

        result = bench_variants(preset=args.preset, variants=args.variants, batch_size=args.batch_size,
                                seq_length=args.seq_length, tracks=args.tracks)
        print(f"{result['variants']} SNVs: JAX {result['jax']['variants_per_s']} variants/s, torch_ref "
              f"{result['torch_ref']['variants_per_s']} variants/s, JAX/torch time {result['jax_over_torch_time']}")
    else:
        result = bench_data(args)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
