"""The outputs of `variants score`, laid out like upstream basenji's `sad.h5`.

  OUT.h5   snp, chr, pos, ref_allele, alt_allele   [variants] byte strings / int (as upstream)
           flipped                                 [variants] bool: REF/ALT swapped to match the FASTA
           target_ids, target_labels               [tracks] byte strings
           SAD, REF, ALT, SAR, D2 (those computed) [variants, tracks] float16 (float32 with --float32)
  OUT.tsv  one row per variant: its largest |SAD| track and value
  OUT.png  the variants with the largest |SAD|
Written under temporary names and renamed when complete.
"""

from __future__ import annotations

import numpy as np

from jax_basenji.atomic import atomic_path
from jax_basenji.evaluate.common import write_tsv
from jax_basenji.metrics import pyplot, save_png
from jax_basenji.variants.alleles import Prepared


def write_h5(path: str, prepared: list[Prepared], arrays: dict[str, np.ndarray], target_ids: list[str],
             target_labels: list[str], float32: bool, overwrite: bool) -> str:
    import h5py

    v = [p.variant for p in prepared]
    with atomic_path(path, overwrite) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("snp", data=np.array([x.id for x in v], "S"))
        h5.create_dataset("chr", data=np.array([x.chrom for x in v], "S"))
        h5.create_dataset("pos", data=np.array([x.pos for x in v], np.int64))
        h5.create_dataset("ref_allele", data=np.array([x.ref for x in v], "S"))
        h5.create_dataset("alt_allele", data=np.array([x.alt for x in v], "S"))
        h5.create_dataset("flipped", data=np.array([p.flipped for p in prepared], bool))
        h5.create_dataset("target_ids", data=np.array(target_ids, "S"))
        h5.create_dataset("target_labels", data=np.array(target_labels, "S"))
        dtype = np.float32 if float32 else np.float16
        for stat, values in arrays.items():
            ds = h5.create_dataset(stat, shape=values.shape, dtype=dtype)
            for lo in range(0, len(values), 4096):  # bounded memory whatever the variant count
                ds[lo:lo + 4096] = values[lo:lo + 4096].astype(dtype)
    return path


def write_summary(path: str, prepared: list[Prepared], values: np.ndarray, stat: str, target_ids: list[str]) -> str:
    """One row per variant: the track of its largest |`stat`| and that value."""
    def rows():
        for k, p in enumerate(prepared):
            t = int(np.argmax(np.abs(values[k]))) if values.shape[1] else 0
            v = p.variant
            yield [v.id, v.chrom, v.pos, v.ref, v.alt, int(p.flipped), target_ids[t], float(values[k, t])]

    return write_tsv(path, ["snp", "chr", "pos", "ref_allele", "alt_allele", "flipped",
                            f"max_abs_{stat.lower()}_track", stat.lower()], rows())


def plot_top(path: str, prepared: list[Prepared], values: np.ndarray, stat: str, target_ids: list[str],
             top: int = 20) -> str:
    """Horizontal bars: the `top` variants by max |`stat`| over tracks, labelled with their track."""
    best = np.abs(values).max(axis=1) if values.shape[1] else np.zeros(len(prepared))
    order = np.argsort(-best)[:top][::-1]
    track = [int(np.argmax(np.abs(values[k]))) for k in order]
    shown = [float(values[k, t]) for k, t in zip(order, track)]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    ax.barh(range(len(order)), shown, color=["tab:red" if x > 0 else "tab:blue" for x in shown])
    ax.set_yticks(range(len(order)), [f"{prepared[k].variant.id} ({target_ids[t]})" for k, t in zip(order, track)],
                  fontsize=7)
    ax.axvline(0, color="k", linewidth=0.5)
    ax.set(xlabel=f"{stat} of the variant's largest |{stat}| track (summed over bins)",
           title=f"top {len(order)} variants by max |{stat}|")
    return save_png(fig, path)
