"""`python -m jax_basenji.bench predict`: genome tiling throughput, JAX vs torch_ref in one run.

A random chromosome of `--chrom-length` bp is written to a temporary FASTA and
tiled as `predict genome` tiles it (windows whose output bins abut). Both
frameworks predict the same windows with the same weights, from the same
batches built on worker threads (`predict.windows.window_batches`); the first
batch of each is timed apart (compilation, allocation), the rest give
windows/s and bp/s. The predictions are compared, so both did the same work.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.data.genome import Genome
from jax_basenji.model import build_model
from jax_basenji.predict.core import Predictor
from jax_basenji.predict.windows import Geometry, tile, window_batches


def _timed(batches, forward) -> tuple[dict, list[np.ndarray]]:
    outs, first, t0, n_windows = [], None, time.perf_counter(), 0
    for k, (_, batch) in enumerate(batches):
        outs.append(forward(batch))
        if k == 0:
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
        else:
            n_windows += len(batch)
    rest = time.perf_counter() - t0
    return {"first_batch_s": round(first, 3), "steady_s": round(rest, 3),
            "windows_per_s": round(n_windows / rest, 3) if rest else None}, outs


def bench_predict(preset: str = "basenji2-double-prime", chrom_length: int = 1_000_000, batch_size: int = 4,
                  seq_length: int | None = None, tracks: int = 5313, threads: int | None = None) -> dict:
    import torch

    from jax_basenji.checkpoint import model_arrays
    from jax_basenji.convert.foreign import torch_state_from_arrays
    from torch_ref import build_torch_model

    cfg = ModelConfig.preset(preset)
    cfg = cfg.replace(seq_length=seq_length or cfg.seq_length, heads=(("human", tracks),))
    geo = Geometry(cfg.seq_length, cfg.output_bins(cfg.seq_length))
    model = build_model(cfg, seed=0)
    tmodel = build_torch_model(cfg)
    tmodel.load_state_dict(torch_state_from_arrays(model_arrays(model), cfg))
    tmodel.eval()
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        fasta = os.path.join(tmp, "bench.fa")
        seq = np.random.default_rng(0).choice(np.frombuffer(b"ACGT", np.uint8), chrom_length).tobytes()
        with open(fasta, "wb") as f:
            f.write(b">chrB\n" + b"\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + b"\n")
        genome = Genome(fasta)
        windows = tile("chrB", chrom_length, geo)
        # A batch of all windows' count is padded to full batches: both sides predict those rows too.
        predictor = Predictor(model, "human")
        jax_row, jax_out = _timed(window_batches(genome, windows, geo.length, batch_size), predictor)

        def torch_forward(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return tmodel(torch.from_numpy(batch.astype(np.float32)), "human").numpy()

        torch_row, torch_out = _timed(window_batches(genome, windows, geo.length, batch_size), torch_forward)
    a, b = np.concatenate(jax_out), np.concatenate(torch_out)
    stride = geo.stride
    for row in (jax_row, torch_row):
        row["bp_per_s"] = round(row["windows_per_s"] * stride, 1) if row["windows_per_s"] else None
    return {"benchmark": "predict genome", "preset": preset, "seq_length": cfg.seq_length, "tracks": tracks,
            "batch_size": batch_size, "chrom_length": chrom_length, "windows": len(windows),
            "bp_per_window": stride, "jax": jax_row, "torch_ref": torch_row,
            "jax_over_torch_time": round(jax_row["steady_s"] / torch_row["steady_s"], 3)
            if torch_row["steady_s"] else None,
            "max_abs_diff_over_max": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)),
            "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}
