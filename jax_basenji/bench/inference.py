"""Inference benchmarks, JAX vs torch_ref in one run on the same inputs and weights.

`bench predict`: a random chromosome of `--chrom-length` bp is written to a
temporary FASTA and tiled as `predict genome` tiles it (windows whose output
bins abut): windows/s and bp/s.
`bench variants`: a VCF of random SNVs on that chromosome, scored by `variants score`'s
own loop (VCF streamed, windows built on worker threads, statistics on the device):
variants/s, the share of the time spent waiting for host windows, peak RSS; torch_ref
predicts the same windows (built inline) with the same sums.

Both frameworks get the same batches; the first batch of each is timed apart (compilation, allocation),
the rest give the rates. The outputs are compared, so both did the same work.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Callable

import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.data.genome import Genome
from jax_basenji.geometry import Geometry, tile
from jax_basenji.model import build_model
from jax_basenji.predict.core import Predictor
from jax_basenji.predict.windows import window_batches


def _timed(batches, forward, items: Callable[[int], int]) -> tuple[dict, list[np.ndarray]]:
    """Run `forward` over (first, batch) pairs; `items(first)` counts the real (unpadded) items of a batch."""
    outs, first_s, t0, n = [], None, time.perf_counter(), 0
    for k, (first, batch) in enumerate(batches):
        outs.append(forward(batch))
        if k == 0:
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        else:
            n += items(first)
    rest = time.perf_counter() - t0
    return {"first_batch_s": round(first_s, 3), "steady_s": round(rest, 3),
            "per_s": round(n / rest, 3) if rest else None}, outs


def _setup(preset: str, seq_length: int | None, tracks: int, chrom_length: int, tmp: str, threads: int | None):
    """(JAX predictor, torch model, genome, geometry) with the same random weights."""
    import torch

    from jax_basenji.checkpoint import model_arrays
    from jax_basenji.convert.foreign import torch_state_from_arrays
    from torch_ref import build_torch_model

    cfg = ModelConfig.preset(preset)
    cfg = cfg.replace(seq_length=seq_length or cfg.seq_length, heads=(("human", tracks),))
    geo = Geometry.of(cfg)
    model = build_model(cfg, seed=0)
    tmodel = build_torch_model(cfg)
    tmodel.load_state_dict(torch_state_from_arrays(model_arrays(model), cfg))
    tmodel.eval().to(_torch_device())
    if threads:
        torch.set_num_threads(threads)
    fasta = os.path.join(tmp, "bench.fa")
    seq = np.random.default_rng(0).choice(np.frombuffer(b"ACGT", np.uint8), chrom_length).tobytes()
    with open(fasta, "wb") as f:
        f.write(b">chrB\n" + b"\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + b"\n")
    return Predictor(model, "human"), tmodel, Genome(fasta), geo


def _torch_device() -> str:
    """torch_ref runs where JAX does: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_forward(tmodel, reduce=lambda pred: pred):
    """`[B, L, 4]` numpy -> numpy of `reduce(torch prediction)`, computed on torch's device."""
    import torch

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(batch.astype(np.float32)).to(_torch_device())
            return reduce(tmodel(x, "human")).cpu().numpy()

    return forward


def _machine() -> dict:
    return {"cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}


def bench_predict(preset: str = "basenji2-double-prime", chrom_length: int = 1_000_000, batch_size: int = 4,
                  seq_length: int | None = None, tracks: int = 5313, threads: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        predictor, tmodel, genome, geo = _setup(preset, seq_length, tracks, chrom_length, tmp, threads)
        windows = tile("chrB", chrom_length, geo)

        def items(first: int) -> int:
            return min(batch_size, len(windows) - first)

        jax_row, jax_out = _timed(window_batches(genome, windows, geo.length, batch_size), predictor, items)
        torch_row, torch_out = _timed(window_batches(genome, windows, geo.length, batch_size),
                                      _torch_forward(tmodel), items)
    a, b = np.concatenate(jax_out), np.concatenate(torch_out)
    for row in (jax_row, torch_row):
        row["windows_per_s"] = row.pop("per_s")
        row["bp_per_s"] = round(row["windows_per_s"] * geo.stride, 1) if row["windows_per_s"] else None
    return {"benchmark": "predict genome", "preset": preset, "seq_length": geo.length, "tracks": tracks,
            "batch_size": batch_size, "chrom_length": chrom_length, "windows": len(windows),
            "bp_per_window": geo.stride, "jax": jax_row, "torch_ref": torch_row,
            "jax_over_torch_time": round(jax_row["steady_s"] / torch_row["steady_s"], 3)
            if torch_row["steady_s"] else None,
            "max_abs_diff_over_max": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)), **_machine()}


def _snv_vcf(path: str, genome: Genome, chrom_length: int, variants: int, spacing: int | None = None,
             margin: int = 0) -> None:
    """A VCF of `variants` SNVs on chrB (sorted; REF from the genome): at random positions, or every
    `spacing` bp from `margin` on."""
    rng = np.random.default_rng(1)
    positions = (sorted(rng.integers(1, chrom_length, variants)) if spacing is None
                 else margin + spacing * np.arange(variants))
    with open(path, "w") as f:
        f.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for pos in positions:
            ref = "ACGT"[int(genome.fetch("chrB", int(pos) - 1, int(pos))[0])]
            f.write(f"chrB\t{pos}\tv{pos}\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.\n")


def gflop(cfg: ModelConfig, length: int) -> dict[str, float]:
    """Multiply-add FLOPs (x 2) of one window's forward pass, by part: the stem + conv tower, the rest
    (dilated stack, final block, head), and the tower on one incremental slice (variants.incremental)."""
    from jax_basenji.variants.incremental import SliceGeometry

    def tower(bp: int) -> float:
        widths = [4, cfg.stem_channels, *cfg.tower_channels]
        kernels = [cfg.stem_kernel] + [cfg.tower_kernel] * cfg.tower_layers
        return sum(2 * (bp >> i) * k * cin * cout for i, (k, cin, cout) in enumerate(zip(kernels, widths, widths[1:])))

    bins, c, b = length // cfg.bin_size, cfg.trunk_channels, cfg.bottleneck_channels
    out = cfg.output_bins(length)
    rest = (2 * bins * (cfg.dilated_kernel * c * b + b * c) * cfg.dilated_layers
            + 2 * out * (c * cfg.final_channels + cfg.final_channels * sum(t for _, t in cfg.heads)))
    geo = SliceGeometry.of(cfg, length)
    return {"tower": tower(length) / 1e9, "rest": rest / 1e9, "slice_tower": tower(geo.slice_bins * cfg.bin_size) / 1e9}


def bench_variants(preset: str = "basenji2-double-prime", variants: int = 64, batch_size: int = 4,
                   seq_length: int | None = None, tracks: int = 5313, threads: int | None = None,
                   spacing: int | None = None, cluster_pct: float = 0.0, full_variants: int | None = None) -> dict:
    """`variants score`'s own loop (VCF streamed, windows built on threads, statistics on the device) on
    SNVs (random, or every `spacing` bp), through the whole model for REF and ALT (the full path) and
    incrementally (with `cluster_pct`, clustered), against torch_ref's full path on the same windows.
    The full paths (JAX, torch) score the first `full_variants` (default all): their rate does not depend
    on the spacing, and they are the slow rows."""
    import resource

    import torch

    from jax_basenji.data.layout import index_to_one_hot
    from jax_basenji.variants.plan import clusters
    from jax_basenji.variants.score import batched, pair_batch, score_variants
    from jax_basenji.variants.vcf import variants as read_variants

    with tempfile.TemporaryDirectory() as tmp:
        length = seq_length or ModelConfig.preset(preset).seq_length
        chrom_length = 2 * length if spacing is None else spacing * variants + 2 * length
        predictor, tmodel, genome, geo = _setup(preset, seq_length, tracks, chrom_length, tmp, threads)
        vcf = os.path.join(tmp, "snvs.vcf")
        _snv_vcf(vcf, genome, chrom_length, variants, spacing, margin=length)
        distance = int(geo.length * cluster_pct)
        rows, sums = {}, {}
        n_full = min(full_variants or variants, variants)
        for name, incremental, dist, n in (("jax_full", False, 0, n_full), ("jax_incremental", True, distance, variants)):
            timing: dict = {}
            arrays, _ = score_variants(predictor, genome, vcf, range(n), os.path.join(tmp, name),
                                       length=geo.length, columns=None, stats=("SAD", "REF_SUM"),
                                       record={"head": "human"}, batch_size=batch_size, resume=False,
                                       cluster_distance=dist, incremental=incremental, progress=False, timing=timing)
            steady = timing["total_s"] - timing["first_batch_s"]
            rows[name] = {"first_batch_s": round(timing["first_batch_s"], 3), "steady_s": round(steady, 3),
                          "variants": n, "variants_in_first_group": timing["first_group_rows"],
                          "variants_per_s": round((n - timing["first_group_rows"]) / steady, 3) if steady else None,
                          "host_wait_share": round(timing["wait_s"] / steady, 4) if steady else None,
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            sums[name] = {s: np.asarray(a) for s, a in arrays.items()}
        batches = batched(read_variants(vcf, 0, n_full), 0, batch_size)
        ref_sums = _torch_forward(tmodel, lambda pred: pred[:batch_size].sum(1))

        def torch_ref_sums(batch: list) -> np.ndarray:
            windows, _ = pair_batch(genome, batch, batch_size, geo.length)
            return ref_sums(index_to_one_hot(windows))[:len(batch)]

        torch_row, torch_out = _timed(batches, torch_ref_sums, lambda k: min(batch_size, n_full - k))
        torch_sums = np.concatenate(torch_out)
        per_cluster = variants / sum(1 for _ in clusters(read_variants(vcf), distance))
    torch_row["variants_per_s"] = torch_row.pop("per_s")
    cfg = predictor.model.cfg
    g = gflop(cfg, geo.length)
    full, inc = rows["jax_full"]["variants_per_s"], rows["jax_incremental"]["variants_per_s"]
    full_sums, inc_sums = sums["jax_full"], sums["jax_incremental"]
    return {"benchmark": "variants score", "preset": preset, "seq_length": geo.length, "tracks": tracks,
            "batch_size": batch_size, "variants": variants, "spacing_bp": spacing, "cluster_pct": cluster_pct,
            "variants_per_window": round(per_cluster, 2), **rows, "torch_ref": torch_row,
            "incremental_over_full_rate": round(inc / full, 3) if full and inc else None,
            "jax_full_over_torch_time": round(torch_row["variants_per_s"] / full, 3) if full else None,
            "gflop_per_variant": {"full": round(2 * (g["tower"] + g["rest"]), 2),
                                  "incremental": round((g["tower"] + g["rest"]) / per_cluster + g["slice_tower"]
                                                       + g["rest"], 2)},
            # the same windows unclustered: SAD within fp32 rounding of the full path's
            "sad_incremental_vs_full_max_diff_over_max_sad": float(
                np.abs(inc_sums["SAD"][:n_full] - full_sums["SAD"]).max() / max(np.abs(full_sums["SAD"]).max(), 1e-30))
            if distance == 0 else None,
            "ref_sums_full_vs_torch_max_diff_over_max": float(
                np.abs(full_sums["REF_SUM"] - torch_sums).max() / np.abs(torch_sums).max()),
            **_machine()}
