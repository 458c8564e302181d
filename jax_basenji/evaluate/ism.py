"""In-silico saturation mutagenesis of a region: every position x each of the 3 other bases.

The window of the model's input length is centred on the region (as for
attribution). The score of (position, base) is the change of the mean
prediction over the selected bins x tracks when that base replaces the
reference one (0 for the reference base itself, and at N positions). Mutated
windows are built on worker threads and predicted in batches of one shape.

  DIR/ism.npy        [positions, 4] float32 (A, C, G, T)
  DIR/ism.bedgraph   per position: the mean change over the 3 other bases
  DIR/ism_logo.png   the reference base's importance, -(mean change), as a sequence logo
"""

from __future__ import annotations

import os
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.atomic import atomic_open, atomic_path
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import index_to_one_hot
from jax_basenji.evaluate.logo import logo_png
from jax_basenji.geometry import centred
from jax_basenji.predict.core import batch_for
from jax_basenji.predict.windows import prefetched


def ism_scores(predictor, genome: Genome, chrom: str, start: int, end: int, bins: np.ndarray,
               tracks: np.ndarray, *, batch_size: int = 8, progress: bool = True) -> tuple[int, np.ndarray]:
    """(window start, `[end - start, 4]` changes of mean(pred[bins][:, tracks]))."""
    length = predictor.model.cfg.seq_length
    w_start = centred(start, end, length)[0]
    index = genome.fetch(chrom, w_start, w_start + length)
    reference = index_to_one_hot(index)
    offsets = np.arange(start - w_start, end - w_start)
    mutations = [(i, b) for i in offsets for b in range(4) if index[i] != 4 and b != index[i]]
    batch_size = batch_for(batch_size, len(mutations))

    def value(pred: np.ndarray) -> np.ndarray:
        return pred[:, bins][:, :, tracks].mean(axis=(1, 2), dtype=np.float64)

    base = value(predictor.padded(reference[None], batch_size))[0]

    def build(first: int) -> np.ndarray:
        batch = np.zeros((batch_size, length, 4), np.uint8)
        for k, (i, b) in enumerate(mutations[first:first + batch_size]):
            batch[k] = reference
            batch[k, i] = 0
            batch[k, i, b] = 1
        return batch

    scores = np.zeros((end - start, 4), np.float32)
    bar = tqdm(total=len(mutations), unit="mutation", disable=not progress, file=sys.stderr, desc="ISM")
    for first, batch in prefetched(build, range(0, len(mutations), batch_size)):
        chunk = mutations[first:first + batch_size]
        for (i, b), v in zip(chunk, value(predictor(batch))[: len(chunk)]):
            scores[i - offsets[0], b] = v - base
        bar.update(len(chunk))
    bar.close()
    return w_start, scores


def write_ism(output: str, chrom: str, start: int, scores: np.ndarray, head: str, genome: Genome) -> dict:
    os.makedirs(output, exist_ok=True)
    with atomic_path(os.path.join(output, "ism.npy")) as tmp:
        np.save(tmp, scores)
    mean_change = scores.sum(axis=1) / 3.0  # the reference base's own entry is 0
    with atomic_open(os.path.join(output, "ism.bedgraph")) as f:
        f.write(f'track type=bedGraph name="{head} ISM mean change"\n')
        f.writelines(f"{chrom}\t{start + i}\t{start + i + 1}\t{v:.6g}\n" for i, v in enumerate(mean_change))
    ref = index_to_one_hot(genome.fetch(chrom, start, start + len(scores))).astype(np.float32)
    png = logo_png(-mean_change[:, None] * ref, start, os.path.join(output, "ism_logo.png"),
                   f"{head}: in-silico mutagenesis of {chrom}:{start}-{start + len(scores)}",
                   "-(mean change)")
    return {"positions": len(scores), "max_abs_change": float(np.abs(scores).max()), "png": png}
