"""Benchmarks.

  python -m jax_basenji.bench model [--preset basenji2-double-prime] [--batch-size 1 [4 ...]]
      [--seq-length 131072] [--precision fp32|bf16] [--device cpu|gpu] [--torch-compile] [--json out.json]
  python -m jax_basenji.bench data --store STORE [--species human] [--batch-size 4] [--threads 1 2 ...] [--seconds 20]
  python -m jax_basenji.bench predict [--preset basenji2-double-prime] [--chrom-length 1000000] [--batch-size 4]
  python -m jax_basenji.bench variants [--preset basenji2-double-prime] [--variants 64] [--batch-size 4]

`model`: JAX vs torch_ref with the same weights and inputs, eval forward and a
full SGD training step at each --batch-size, median of --repeats blocking runs after
warm-up and the same number issued back to back (async), first call (compilation)
separately, peak memory, TFLOP/s (MFU for bf16 on a GPU) and the JAX/torch time ratios
(see jax_basenji.bench.model).

`data`: examples/s and GB/s (targets + sequences copied into the batches) of the
training input path, one row per configuration: `--pipeline reader` (default, what
training runs: threads copying store rows into batch buffers, augmentation left to
the jitted step) for each of `--threads`; `--pipeline grain` (make_dataset with host
augmentation, the path before issue 14) for each of `--workers` (0: in-process).
After a warm-up; with `--repeats N`, the median of N timed runs; each row also gives the
scaling against one thread, one thread's memcpy and copy + CRC32C rates on this host (the
memory-bandwidth ceiling) and the caller's milliseconds per batch of order (grain's shuffle).
`--json`: the list of rows.

`predict` / `variants`: `predict genome`'s tiling of a random chromosome / `variants score`
on random SNVs, JAX vs torch_ref on the same windows and weights: windows/s, bp/s or
variants/s, and the time ratio (see jax_basenji.bench.inference).
"""

from __future__ import annotations

from jax_basenji.atomic import write_json
from jax_basenji.bench.data import bench_data, default_threads
from jax_basenji.bench.model import bench_model, child_main
from jax_basenji.cli import Parser, one_line_errors
from jax_basenji.config import GEMM_CONVS


def parse_args(argv):
    p = Parser(prog="python -m jax_basenji.bench", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model", help="JAX vs torch_ref model speed")
    m.add_argument("--preset", default="basenji2-double-prime",
                   help="model preset: basenji2-double-prime, basenji2-prime, basenji2 (published), tiny "
                        "or tiny-basenji2")
    m.add_argument("--batch-size", type=int, nargs="+", default=[1],
                   help="one or more batch sizes, each run in turn (e.g. 4 16 32)")
    m.add_argument("--seq-length", type=int, help="input length in bp (default: the preset's)")
    m.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    m.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    m.add_argument("--modes", nargs="+", choices=("forward", "train"), default=["forward", "train"])
    m.add_argument("--warmup", type=int, default=1, help="untimed runs after the first call")
    m.add_argument("--repeats", type=int, default=5, help="timed runs (the median is reported)")
    m.add_argument("--torch-compile", action="store_true", help="also torch_ref under torch.compile (Inductor)")
    m.add_argument("--channel-multiple", type=int, default=0,
                   help="JAX compute layout: channel widths rounded up to this multiple (default 0: 8 on a "
                        "GPU, none elsewhere; 1 = the true widths)")
    m.add_argument("--gemm-convs", default="auto", choices=GEMM_CONVS,
                   help="JAX compute layout: convolutions run as matmuls, stem, dilated, stem,dilated or none "
                        "(default auto: both on a GPU, none elsewhere)")
    m.add_argument("--json", help="also write the figures to this JSON file")
    c = sub.add_parser("_child")  # internal: one (framework, mode) in its own process
    c.add_argument("spec")
    d = sub.add_parser("data", help="data pipeline throughput")
    d.add_argument("--store", required=True, help="converted store directory")
    d.add_argument("--species", default="human")
    d.add_argument("--subset", default="train")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--pipeline", choices=("reader", "grain"), default="reader",
                   help="reader: the training path; grain: make_dataset with host augmentation (before issue 14)")
    d.add_argument("--threads", type=int, nargs="+", default=default_threads(),
                   help="reader threads, one row each (default: 1, 2, 4, ... and the host's core count)")
    d.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                   help="grain worker processes (0: in-process), one row each")
    d.add_argument("--order-examples", type=int,
                   help="shuffle as a store of this many examples would (example i reads row i mod the store's "
                        "size): a small synthetic store's order costs grain ~100x more per batch than a real one's")
    d.add_argument("--seconds", type=float, default=20.0, help="timed seconds per run")
    d.add_argument("--repeats", type=int, default=1, help="runs per configuration; the median is reported")
    d.add_argument("--json", help="also write the rows to this JSON file (a list)")
    q = sub.add_parser("predict", help="genome tiling throughput, JAX vs torch_ref")
    q.add_argument("--chrom-length", type=int, default=1_000_000, help="bp of the random chromosome")
    v = sub.add_parser("variants", help="variant scoring throughput, JAX vs torch_ref")
    v.add_argument("--variants", type=int, default=64, help="SNVs to score")
    v.add_argument("--spacing", type=int, help="bp between consecutive SNVs (default: random positions)")
    v.add_argument("--full-variants", type=int,
                   help="the full paths (JAX, torch_ref) score only the first this many (default all)")
    v.add_argument("--cluster-pct", type=float, default=0.0,
                   help="the incremental row's --cluster-pct (the full path's windows stay one per variant)")
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
        result = bench_model(preset=args.preset, batch_sizes=args.batch_size, seq_length=args.seq_length,
                             precision=args.precision, device=args.device, modes=tuple(args.modes),
                             warmup=args.warmup, repeats=args.repeats, torch_compile=args.torch_compile,
                             layout={"channel_multiple": args.channel_multiple, "gemm_convs": args.gemm_convs},
                             json_path=args.json)
    elif args.what == "predict":
        from jax_basenji.bench.inference import bench_predict

        result = bench_predict(preset=args.preset, chrom_length=args.chrom_length, batch_size=args.batch_size,
                               seq_length=args.seq_length, tracks=args.tracks)
        print(f"{result['windows']} windows of {result['bp_per_window']} bp: JAX {result['jax']['windows_per_s']} "
              f"windows/s, torch_ref {result['torch_ref']['windows_per_s']} windows/s, JAX/torch time "
              f"{result['jax_over_torch_time']}")
    elif args.what == "variants":
        from jax_basenji.bench.inference import bench_variants

        result = bench_variants(preset=args.preset, variants=args.variants, batch_size=args.batch_size,
                                seq_length=args.seq_length, tracks=args.tracks, spacing=args.spacing,
                                cluster_pct=args.cluster_pct, full_variants=args.full_variants)
        full, inc = result["jax_full"], result["jax_incremental"]
        print(f"{result['variants']} SNVs ({result['variants_per_window']} per window): JAX incremental "
              f"{inc['variants_per_s']} variants/s, full path {full['variants_per_s']}, torch_ref "
              f"{result['torch_ref']['variants_per_s']} (incremental/full {result['incremental_over_full_rate']}, "
              f"GFLOP/variant {result['gflop_per_variant']}); host wait {inc['host_wait_share']:.1%}, peak RSS "
              f"{inc['peak_rss_mb']} MB")
    else:
        result = bench_data(args)
    if args.json:
        write_json(args.json, result)
    return 0
