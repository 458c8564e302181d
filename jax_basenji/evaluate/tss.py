"""Predictions at gene TSS, and their correlation with measured expression.

Genes come from a GTF/GFF (one TSS per `gene` feature: start on +, end on -)
or a TSV with the columns `gene_id chrom tss strand [subset]` (0-based TSS).
For each gene a window of the model's input length is centred on the TSS
(N beyond chromosome ends), predicted, and the 3 centre bins (447-449 of 896)
are summed per track: a gene x track matrix.

Alternatively (`regions_tss`), genes are read off a Basenji store like the
seed's gene dictionary: for every region of a subset whose target span holds
a gene's TSS, the bin holding the TSS is taken from the predictions and the
targets, summed over regions; this gives predicted and measured matrices.

Correlations (docs/seed_reference.md), on log(x+1): per track across genes, and per
gene across tracks after standardising every track across genes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.cli import InputError
from jax_basenji.data import BasenjiSource
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import DataError, index_to_one_hot
from jax_basenji.evaluate.common import (center_bins, histogram, pearson_columns, read_tsv, scatter, standardize,
                                         write_tsv)

GENE_COLUMNS = ("gene_id", "chrom", "tss", "strand")


@dataclasses.dataclass(frozen=True)
class Gene:
    gene_id: str
    chrom: str
    tss: int  # 0-based position of the first transcribed base
    strand: str
    subset: str = ""


def read_genes(path: str) -> list[Gene]:
    """Genes from a GTF/GFF3 (`gene` features) or a TSV with gene_id, chrom, tss, strand[, subset]."""
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith((".gtf", ".gff", ".gff3")):
        return _read_gtf(path)
    header, rows = read_tsv(path, GENE_COLUMNS)
    col = {c: header.index(c) for c in header}
    genes = []
    for line_no, row in enumerate(rows, 2):
        try:
            genes.append(Gene(row[col["gene_id"]], row[col["chrom"]], int(row[col["tss"]]), row[col["strand"]],
                              row[col["subset"]] if "subset" in col else ""))
        except (IndexError, ValueError):
            raise InputError(f"{path}:{line_no}: expected gene_id, chrom, integer tss, strand") from None
    if not genes:
        raise InputError(f"{path} lists no genes")
    return genes


def _read_gtf(path: str) -> list[Gene]:
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    genes = []
    with opener(path, "rt") as f:
        for line_no, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9:
                raise InputError(f"{path}:{line_no}: a GTF/GFF line has 9 tab-separated fields, got {len(fields)}")
            if fields[2] != "gene":
                continue
            attrs = fields[8]
            m = (re.search(r'gene_id "([^"]+)"', attrs) or re.search(r"gene_id=([^;]+)", attrs)
                 or re.search(r"ID=(?:gene:)?([^;]+)", attrs))
            if not m:
                raise InputError(f"{path}:{line_no}: gene without gene_id / ID attribute")
            start, end, strand = int(fields[3]), int(fields[4]), fields[6]
            genes.append(Gene(m.group(1), fields[0], start - 1 if strand != "-" else end - 1, strand))
    if not genes:
        raise InputError(f"{path} has no 'gene' features")
    return genes


def predict_tss(predictor, genes: list[Gene], fasta: str, *, batch_size: int = 4,
                progress: bool = True) -> np.ndarray:
    """`[genes, tracks]` float64: the 3 centre bins of a window centred on each TSS, summed."""
    genome = Genome(fasta)
    length = predictor.model.cfg.seq_length
    try:
        for chrom in sorted({g.chrom for g in genes}):
            genome.chrom_length(chrom)
    except DataError as e:
        raise InputError(str(e)) from None
    windows = np.zeros((batch_size, length, 4), np.float32)
    out, centre = [], None
    bar = tqdm(total=len(genes), unit="gene", disable=not progress, file=sys.stderr, desc="TSS")
    for start in range(0, len(genes), batch_size):
        chunk = genes[start:start + batch_size]
        windows[:] = 0
        for k, g in enumerate(chunk):
            windows[k] = index_to_one_hot(genome.fetch(g.chrom, g.tss - length // 2, g.tss + length // 2))
        pred = predictor(windows)[: len(chunk)]
        centre = centre or center_bins(pred.shape[1])
        out.append(pred[:, centre].sum(axis=1, dtype=np.float64))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out)


def regions_tss(predictor, genes: list[Gene], source: BasenjiSource, *, batch_size: int = 4,
                progress: bool = True) -> tuple[list[Gene], np.ndarray, np.ndarray]:
    """(genes found, predicted, measured) `[genes, tracks]`: bins holding each TSS, summed over regions."""
    subset = source.subset
    stats = source.store.meta["statistics"]
    pool, crop = int(stats.get("pool_width", 128)), int(stats["crop_bp"])
    by_chrom: dict[str, list[int]] = {}
    for i, g in enumerate(genes):
        by_chrom.setdefault(g.chrom, []).append(i)
    hits: dict[int, list[tuple[int, int]]] = {}  # region -> [(bin, gene)]
    for r_idx, r in enumerate(source.regions):
        for i in by_chrom.get(r.chrom, []):
            pos = genes[i].tss - (r.start + crop)
            if 0 <= pos < source.target_shape[0] * pool:
                hits.setdefault(r_idx, []).append((pos // pool, i))
    if not hits:
        raise InputError(f"no gene TSS falls inside the {subset} regions of {source.store.dir}")
    tracks = source.target_shape[1]
    pred_sum, target_sum = np.zeros((len(genes), tracks)), np.zeros((len(genes), tracks))
    needed = sorted(hits)
    bar = tqdm(total=len(needed), unit="region", disable=not progress, file=sys.stderr, desc="regions")
    for start in range(0, len(needed), batch_size):
        ids = needed[start:start + batch_size]
        items = [source[i] for i in ids]
        pred = predictor.padded(np.stack([it["sequence"] for it in items]), batch_size)
        for k, r_idx in enumerate(ids):
            for b, i in hits[r_idx]:
                pred_sum[i] += pred[k, b]
                target_sum[i] += items[k]["target"][b].astype(np.float64)
        bar.update(len(ids))
    bar.close()
    found = sorted({i for pairs in hits.values() for _, i in pairs})
    subset_genes = [dataclasses.replace(genes[i], subset=genes[i].subset or subset) for i in found]
    return subset_genes, pred_sum[found], target_sum[found]


def write_matrix(path: str, genes: list[Gene], values: np.ndarray, names: list[str]) -> str:
    return write_tsv(path, ["gene_id", "chrom", "tss", "strand", "subset", *names],
                     ([g.gene_id, g.chrom, g.tss, g.strand, g.subset, *v] for g, v in zip(genes, values)))


def read_matrix(path: str) -> tuple[list[Gene], np.ndarray, list[str]]:
    header, rows = read_tsv(path, ("gene_id", "chrom", "tss", "strand", "subset"))
    genes = [Gene(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]
    return genes, np.array([[float(v) for v in r[5:]] for r in rows]).reshape(len(rows), -1), header[5:]


def read_expression(path: str) -> tuple[dict[str, int], np.ndarray, list[str]]:
    """A gene x sample table (TSV: gene_id, then one column per sample) -> (row of gene, values, samples)."""
    header, rows = read_tsv(path, ("gene_id",))
    g = header.index("gene_id")
    samples = [c for k, c in enumerate(header) if k != g]
    try:
        values = np.array([[float(v) for k, v in enumerate(r) if k != g] for r in rows]).reshape(len(rows), -1)
    except ValueError as e:
        raise InputError(f"{path}: non-numeric expression value ({e})") from None
    return {r[g]: i for i, r in enumerate(rows)}, values, samples


def pair_columns(names: list[str], samples: list[str]) -> tuple[list[int], list[int]]:
    """Prediction columns and sample columns compared: by name where any match, else by order."""
    common = [n for n in names if n in samples]
    if common:
        return [names.index(n) for n in common], [samples.index(n) for n in common]
    if len(names) != len(samples):
        raise InputError(f"no prediction track is named like an expression sample, and the counts differ "
                         f"({len(names)} tracks vs {len(samples)} samples): select tracks with --tracks")
    return list(range(len(names))), list(range(len(samples)))


def correlate(pred: np.ndarray, observed: np.ndarray, genes: list[Gene], names: list[str], output: str,
              label: str = "predicted") -> dict:
    """Per-track (across genes) and per-gene (across tracks) Pearson R on log(x+1); TSVs and PNGs."""
    lp, lo = np.log1p(np.maximum(pred, 0)), np.log1p(np.maximum(observed, 0))
    per_track = pearson_columns(lp, lo, axis=0)
    per_gene = pearson_columns(standardize(lp), standardize(lo), axis=1)
    write_tsv(os.path.join(output, "tss_per_track.tsv"), ["track", "pearson_r"], zip(names, per_track))
    write_tsv(os.path.join(output, "tss_per_gene.tsv"), ["gene_id", "subset", "pearson_r"],
              ([g.gene_id, g.subset, r] for g, r in zip(genes, per_gene)))
    histogram(per_track, os.path.join(output, "tss_per_track_hist.png"), "Pearson R per track across genes")
    histogram(per_gene, os.path.join(output, "tss_per_gene_hist.png"), "Pearson R per gene across tracks")
    scatter(lp, lo, os.path.join(output, "tss_scatter.png"), f"log(x+1) {label}", "log(x+1) measured",
            "genes x tracks")
    return {"genes": len(genes), "tracks": len(names), "per_track_r": float(np.nanmean(per_track)),
            "per_gene_r": float(np.nanmean(per_gene))}
