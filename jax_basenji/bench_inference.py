"""Inference benchmarks, JAX vs torch_ref in one run on the same inputs and weights.

`bench predict`: a random chromosome of `--chrom-length` bp is written to a
temporary FASTA and tiled as `predict genome` tiles it (windows whose output
bins abut): windows/s and bp/s.
`bench variants`: random SNVs on that chromosome, scored as `variants score`
scores them (REF and ALT windows in one batch, statistics on the host): variants/s.

Both frameworks get the same batches (built on worker threads for `predict`, inline
for `variants`); the first batch of each is timed apart (compilation, allocation),
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
from jax_basenji.model import build_model
from jax_basenji.predict.core import Predictor
from jax_basenji.predict.windows import Geometry, tile, window_batches


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
    geo = Geometry(cfg.seq_length, cfg.output_bins(cfg.seq_length), cfg.bin_size)
    model = build_model(cfg, seed=0)
    tmodel = build_torch_model(cfg)
    tmodel.load_state_dict(torch_state_from_arrays(model_arrays(model), cfg))
    tmodel.eval()
    if threads:
        torch.set_num_threads(threads)
    fasta = os.path.join(tmp, "bench.fa")
    seq = np.random.default_rng(0).choice(np.frombuffer(b"ACGT", np.uint8), chrom_length).tobytes()
    with open(fasta, "wb") as f:
        f.write(b">chrB\n" + b"\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + b"\n")
    return Predictor(model, "human"), tmodel, Genome(fasta), geo


def _torch_forward(tmodel):
    import torch

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return tmodel(torch.from_numpy(batch.astype(np.float32)), "human").numpy()

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


def bench_variants(preset: str = "basenji2-double-prime", variants: int = 64, batch_size: int = 4,
                   seq_length: int | None = None, tracks: int = 5313, threads: int | None = None) -> dict:
    from jax_basenji.variants.alleles import Prepared
    from jax_basenji.variants.score import pair_batch, statistics
    from jax_basenji.variants.vcf import Variant

    with tempfile.TemporaryDirectory() as tmp:
        length = seq_length or ModelConfig.preset(preset).seq_length
        chrom_length = 2 * length
        predictor, tmodel, genome, geo = _setup(preset, seq_length, tracks, chrom_length, tmp, threads)
        rng = np.random.default_rng(1)
        prepared = []
        for pos in sorted(rng.integers(1, chrom_length, variants)):
            ref = "ACGT"[int(genome.fetch("chrB", int(pos) - 1, int(pos))[0])]
            prepared.append(Prepared(Variant(f"v{pos}", "chrB", int(pos), ref, "ACGT"[("ACGT".index(ref) + 1) % 4]),
                                     False))

        def batches():
            for first in range(0, len(prepared), batch_size):
                yield first, pair_batch(genome, prepared, first, batch_size, geo.length)

        def scored(forward):
            def run(batch):  # the statistics `variants score` computes, REF and ALT sums kept to compare
                pred = forward(batch)
                s = statistics(pred[:batch_size], pred[batch_size:], ("SAD", "REF", "ALT"))
                return np.concatenate([s["REF"], s["ALT"]])
            return run

        def items(first: int) -> int:
            return min(batch_size, len(prepared) - first)

        jax_row, jax_out = _timed(batches(), scored(predictor), items)
        torch_row, torch_out = _timed(batches(), scored(_torch_forward(tmodel)), items)
    for row in (jax_row, torch_row):
        row["variants_per_s"] = row.pop("per_s")
    a, b = np.concatenate(jax_out), np.concatenate(torch_out)
    return {"benchmark": "variants score", "preset": preset, "seq_length": geo.length, "tracks": tracks,
            "batch_size": batch_size, "variants": variants, "jax": jax_row, "torch_ref": torch_row,
            "jax_over_torch_time": round(jax_row["steady_s"] / torch_row["steady_s"], 3)
            if torch_row["steady_s"] else None,
            "sums_max_abs_diff_over_max": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)), **_machine()}
