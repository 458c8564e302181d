"""Contribution scores: input x gradient of the mean prediction over a mask of bins x tracks.

The window of the model's input length is centred on the region; the score
of a position is sum over bases of one_hot * d(mean prediction)/d(one_hot),
i.e. the gradient at the base present (at N, 0.25 x each base's gradient where
the model encodes N as 0.25, else 0). Written as `[L, 4]` .npy,
a bedGraph of per-position scores, and a PNG.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_basenji.atomic import atomic_open, atomic_path
from jax_basenji.cli import InputError
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import DataError
from jax_basenji.evaluate.common import center_bins
from jax_basenji.evaluate.logo import logo_png
from jax_basenji.geometry import Window, centred, one_hot_window
from jax_basenji.metrics import pyplot, save_png
from jax_basenji.tracks import select_tracks, track_table


def parse_region(text: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"([^:]+):([\d,]+)-([\d,]+)", text.strip())
    if not m:
        raise InputError(f"--region {text!r}: expected chrom:start-end")
    start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
    if end <= start:
        raise InputError(f"--region {text!r}: end must exceed start")
    return m.group(1), start, end


def region_in_genome(genome: Genome, region: str, length: int) -> tuple[str, int, int]:
    """(chrom, start, end) of `--region`; InputError unless it lies inside a chromosome of the FASTA
    (a region past the end would score an all-N input) and inside one input window of `length` bp."""
    chrom, start, end = parse_region(region)
    if end - start > length:
        raise InputError(f"--region {region}: {end - start} bp; the model's input window holds {length}")
    try:
        size = genome.chrom_length(chrom)
    except DataError as e:
        raise InputError(str(e)) from None
    if end > size:
        raise InputError(f"--region {region}: {chrom} has {size} bp; the region must lie inside it")
    return chrom, start, end


def parse_range(text: str, size: int, what: str) -> np.ndarray:
    """'all', 'center' (3 centre bins), 'a-b' (inclusive) or 'i,j,k' -> sorted indices < size."""
    if text == "all":
        return np.arange(size)
    if text == "center":
        return np.arange(size)[center_bins(size)]
    idx = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            idx += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise InputError(f"--{what} {text!r}: expected all, center, a-b or a comma list") from None
    bad = [i for i in idx if not 0 <= i < size]
    if bad:
        raise InputError(f"--{what} {bad[0]} is outside 0..{size - 1}")
    return np.array(sorted(set(idx)))


def input_x_gradient(model, one_hot: np.ndarray, head: str, bins: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """`[L, 4]` one_hot * d mean(pred[bins][:, tracks]) / d one_hot, for one `[L, 4]` sequence."""
    model.eval()
    graph, state = nnx.split(model)

    @jax.jit
    def grad(x):
        def f(x):
            pred = nnx.merge(graph, state)(x[None], head)[0]
            return pred[bins][:, tracks].mean()

        return jax.grad(f)(x)

    x = jnp.asarray(one_hot, jnp.float32)
    return np.asarray(grad(x) * x)


def window_attribution(model, genome: Genome, window: Window, head: str, bins: np.ndarray, tracks: np.ndarray,
                       n_value: float) -> tuple[int, np.ndarray]:
    """(window start, `[L, 4]` input x gradient) of the window, N in the model's encoding (`n_value`, 0.25
    for the seed's models): the gradient is taken at the input the model reads."""
    length = model.cfg.seq_length
    one_hot = one_hot_window(genome, window, length, n_value).astype(np.float32)
    return window.start, input_x_gradient(model, one_hot, head, bins, tracks)


def parse_tracks(text: str, size: int, targets: list[dict[str, str]] | None) -> np.ndarray:
    """`parse_range` indices, or comma-separated assays / track names looked up in the head's `targets`."""
    if text in ("all", "center") or re.fullmatch(r"[\d,\s-]+", text):
        return parse_range(text, size, "tracks")
    table = track_table(size, targets)
    return np.array(select_tracks([t["label"] for t in table], text.split(","), targets))


def attribution(predictor, fasta: str, region: str, head: str, tracks: str, bins: str, output: str,
                targets: list[dict[str, str]] | None = None) -> dict:
    """Input x gradient of `region`'s window; `targets`: the head's table, to select tracks by assay or name."""
    model = predictor.model
    genome = Genome(fasta)
    chrom, start, end = region_in_genome(genome, region, model.cfg.seq_length)
    length = model.cfg.seq_length
    bin_idx = parse_range(bins, model.cfg.output_bins(length), "bins")
    track_idx = parse_tracks(tracks, model.cfg.head_tracks[head], targets)
    w_start, contrib = window_attribution(model, genome, Window(chrom, centred(start, end, length)[0]), head,
                                          bin_idx, track_idx, predictor.n_value)
    score = contrib.sum(axis=1)
    os.makedirs(output, exist_ok=True)
    with atomic_path(os.path.join(output, "attribution.npy")) as tmp:
        np.save(tmp, contrib)
    bg = os.path.join(output, "attribution.bedgraph")
    with atomic_open(bg) as f:
        f.write(f"track type=bedGraph name=\"{head} input x gradient\"\n")
        f.writelines(f"{chrom}\t{w_start + i}\t{w_start + i + 1}\t{score[i]:.6g}\n"
                     for i in range(length) if w_start + i >= 0)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(np.arange(w_start, w_start + length), score, lw=0.5)
    crop = model.cfg.crop_bins * model.cfg.bin_size
    for b in (bin_idx.min(), bin_idx.max() + 1):
        ax.axvline(w_start + crop + b * model.cfg.bin_size, color="r", lw=0.5)
    ax.axvspan(start, end, color="tab:orange", alpha=0.2, label="--region")
    ax.plot([], [], color="r", lw=0.5, label="first and last scored output bin")
    ax.legend(loc="upper right", fontsize=7)
    ax.set(xlabel=f"{chrom} position", ylabel="input x gradient", title=f"{head}: tracks {tracks}, bins {bins}")
    png = save_png(fig, os.path.join(output, "attribution.png"))
    logo = logo_png(contrib[start - w_start:end - w_start], start, os.path.join(output, "attribution_logo.png"),
                    f"{head}: input x gradient over {chrom}:{start}-{end}", "input x gradient")
    return {"window": f"{chrom}:{w_start}-{w_start + length}", "bins": len(bin_idx), "tracks": len(track_idx),
            "score_abs_sum": float(np.abs(score).sum()), "png": png, "logo": logo}
