"""Predictions at gene TSS, and their correlation with measured expression (the seed's definitions).

Genes come from a GTF/GFF (one TSS per `gene` feature: start on +, end on -)
or a TSV with the columns `gene_id chrom tss strand [subset]` (0-based TSS).

From a genome (`predict_tss`): one TSS per gene, its first row in the table (as
the seed's `drop_duplicates(subset="gene_id")`); a window of the model's input
length is centred on it (N beyond chromosome ends), predicted, and the centre
bins (3: 447-449 of 896) are summed per track: a `[genes, tracks]` matrix.

From a Basenji store (`regions_tss`), the seed's gene dictionary: for every
region of a subset whose target span holds a TSS, the bins around the TSS bin
(3: bin-1..bin+1, cut at the region's edges) are summed from the predictions
and the targets, and every TSS row of a gene, in every region, is added to one
vector per gene id: predicted and measured `[genes, tracks]` matrices.

Correlations, on log(x+1): per track across genes, and per gene across tracks
after standardising every track across genes; for all genes and for each subset
(train / valid / test of the gene table) on its own.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import re
import sys
import warnings

import numpy as np
from tqdm import tqdm

from jax_basenji.cli import InputError
from jax_basenji.data import BasenjiSource
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import DataError
from jax_basenji.evaluate.common import (center_bins, check_width, histogram, log1p_clipped, nanmean,
                                         pearson_columns, read_tsv, scatter, standardize, write_tsv)
from jax_basenji.geometry import centred_window, one_hot_window
from jax_basenji.predict.core import batch_for
from jax_basenji.resume import Run

GENE_COLUMNS = ("gene_id", "chrom", "tss", "strand")
SUBSET_ORDER = ("train", "valid", "test")  # reported first, in this order; other names follow sorted
# tss_tracks.txt's column saying which prediction columns are on the log(x+1) scale already (1) or not (0)
LOG1P_COLUMN = "log1p"


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


def first_per_gene(genes: list[Gene]) -> list[Gene]:
    """The first row of every gene id, in table order (pandas `drop_duplicates(subset="gene_id")`)."""
    seen: set[str] = set()
    return [g for g in genes if not (g.gene_id in seen or seen.add(g.gene_id))]


def predict_tss(predictor, genes: list[Gene], fasta: str, *, width: int = 3, batch_size: int = 4,
                progress: bool = True, run: Run | None = None) -> np.ndarray:
    """`[genes, tracks]` float64: the `width` centre bins of a window centred on each TSS, summed. With
    `run`, rows go to its partial folder batch by batch and a resumed run continues there."""
    genome = Genome(fasta)
    length = predictor.model.cfg.seq_length
    try:
        sizes = {chrom: genome.chrom_length(chrom) for chrom in sorted({g.chrom for g in genes})}
    except DataError as e:
        raise InputError(str(e)) from None
    outside = [g for g in genes if not 0 <= g.tss < sizes[g.chrom]]
    if outside:  # another assembly's genes, say: predicted all the same, on N around the TSS
        g = outside[0]
        warnings.warn(f"{len(outside)} gene(s) with a TSS outside their chromosome, predicted on N there (first: "
                      f"{g.gene_id} at {g.chrom}:{g.tss}; {g.chrom} has {sizes[g.chrom]} bp)", stacklevel=2)
    cfg = predictor.model.cfg
    centre = center_bins(cfg.output_bins(length), width)
    shape = (len(genes), cfg.head_tracks[predictor.head])
    batch_size = batch_for(batch_size, len(genes))
    done = run.done() if run else 0
    rows = run.rows(shape, np.float64, done) if run else np.zeros(shape)
    windows = np.zeros((batch_size, length, 4), np.float32)
    bar = tqdm(total=len(genes), initial=done, unit="gene", disable=not progress, file=sys.stderr, desc="TSS")
    for start in range(done, len(genes), batch_size):
        chunk = genes[start:start + batch_size]
        windows[:] = 0
        for k, g in enumerate(chunk):
            windows[k] = one_hot_window(genome, centred_window(g.chrom, g.tss, g.tss, length), length)
        pred = predictor(windows)[: len(chunk)]
        rows[start:start + len(chunk)] = pred[:, centre].sum(axis=1, dtype=np.float64)
        if run:
            run.save(rows, start + len(chunk))
        bar.update(len(chunk))
    bar.close()
    return np.array(rows)


def regions_tss(predictor, genes: list[Gene], source: BasenjiSource, *, width: int = 3, batch_size: int = 4,
                progress: bool = True, run: Run | None = None) -> tuple[list[Gene], np.ndarray, np.ndarray, int]:
    """(genes, predicted, measured, TSS hits): `[genes, tracks]` float64 sums, one row per gene id.

    A hit is a TSS row inside a region's target span: bin b = (tss - region start - crop) //
    pool_width; bins b - width//2 .. b + width//2 that exist in the region are summed. All hits
    of a gene id (rows and regions) add up. A gene's row is its first TSS row that hit, its
    subset the table's, else the store subset's. With `run`, every hit's two `[tracks]` sums go to
    its partial folder batch by batch (written, never added to) and a resumed run continues there;
    they are added up per gene at the end, in the same order either way.
    """
    half = check_width(width) // 2
    stats = source.store.meta["statistics"]
    pool, crop = int(stats.get("pool_width", 128)), int(stats["crop_bp"])
    n_bins, tracks = source.target_shape
    hits = tss_hits(genes, source.regions, crop, n_bins * pool)
    if not hits:
        raise InputError(f"no gene TSS falls inside the {source.subset} regions of {source.store.dir}")
    needed = sorted(hits)
    batch_size = batch_for(batch_size, len(needed))
    offset = np.cumsum([0] + [len(hits[r]) for r in needed])  # first row of each needed region's hits
    done = run.done() if run else 0
    shape = (int(offset[-1]), 2, tracks)  # per hit: predicted and measured sums
    sums = run.rows(shape, np.float64, done) if run else np.zeros(shape)
    bar = tqdm(total=len(needed), initial=done, unit="region", disable=not progress, file=sys.stderr,
               desc="regions")
    for start in range(done, len(needed), batch_size):
        chunk = needed[start:start + batch_size]
        items = [source[i] for i in chunk]
        pred = predictor.padded(np.stack([it["sequence"] for it in items]), batch_size)
        for k, r_idx in enumerate(chunk):
            for h, (pos, i) in enumerate(hits[r_idx], offset[start + k]):
                lo, hi = max(pos // pool - half, 0), min(pos // pool + half + 1, n_bins)
                sums[h, 0] = pred[k, lo:hi].sum(axis=0, dtype=np.float64)
                sums[h, 1] = items[k]["target"][lo:hi].astype(np.float64).sum(axis=0)
        if run:
            run.save(sums, start + len(chunk))
        bar.update(len(chunk))
    bar.close()
    ids = list(dict.fromkeys(g.gene_id for g in genes))  # gene ids in table order
    row_of = {gid: k for k, gid in enumerate(ids)}
    pred_sum, target_sum = np.zeros((len(ids), tracks)), np.zeros((len(ids), tracks))
    for r_idx, first in zip(needed, offset):
        for h, (_, i) in enumerate(hits[r_idx], first):
            pred_sum[row_of[genes[i].gene_id]] += sums[h, 0]
            target_sum[row_of[genes[i].gene_id]] += sums[h, 1]
    first_hit: dict[str, int] = {}
    for i in sorted(i for pairs in hits.values() for _, i in pairs):
        first_hit.setdefault(genes[i].gene_id, i)
    found = [gid for gid in ids if gid in first_hit]
    out = [dataclasses.replace(genes[first_hit[gid]], subset=genes[first_hit[gid]].subset or source.subset)
           for gid in found]
    rows = [row_of[gid] for gid in found]
    return out, pred_sum[rows], target_sum[rows], sum(len(v) for v in hits.values())


def tss_hits(genes: list[Gene], regions, crop: int, span: int) -> dict[int, list[tuple[int, int]]]:
    """Region index -> [(TSS bp from the region's first target bin, gene row)], gene rows in table
    order: the TSS rows inside each region's target span [start + crop, start + crop + span).
    Genes are sorted per chromosome once and each region bisects them (regions x genes pairs
    would take hours for a genome's ~40,000 regions and ~60,000 TSS)."""
    by_chrom: dict[str, tuple[list[int], list[int]]] = {}  # chrom -> (sorted TSS, their gene rows)
    for tss, i in sorted((g.tss, i) for i, g in enumerate(genes)):
        positions, rows = by_chrom.setdefault(genes[i].chrom, ([], []))
        positions.append(tss)
        rows.append(i)
    hits: dict[int, list[tuple[int, int]]] = {}
    for r_idx, r in enumerate(regions):
        positions, rows = by_chrom.get(r.chrom, ((), ()))
        first = r.start + crop
        lo, hi = bisect.bisect_left(positions, first), bisect.bisect_left(positions, first + span)
        if lo < hi:  # in gene-table order, as a scan of the table would find them
            hits[r_idx] = [(positions[k] - first, rows[k]) for k in sorted(range(lo, hi), key=rows.__getitem__)]
    return hits


def write_matrix(path: str, genes: list[Gene], values: np.ndarray, names: list[str]) -> str:
    return write_tsv(path, ["gene_id", "chrom", "tss", "strand", "subset", *names],
                     ([g.gene_id, g.chrom, g.tss, g.strand, g.subset, *v] for g, v in zip(genes, values)))


def read_matrix(path: str) -> tuple[list[Gene], np.ndarray, list[str]]:
    header, rows = read_tsv(path, ("gene_id", "chrom", "tss", "strand", "subset"))
    genes = [Gene(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]
    return genes, np.array([[float(v) for v in r[5:]] for r in rows]).reshape(len(rows), -1), header[5:]


def log_scale_columns(rows: list[dict[str, str]] | None, path: str) -> np.ndarray | None:
    """`[tracks]` bool of a tss_tracks.txt's `log1p` column: the prediction columns on the log(x+1) scale
    already (a head trained with --log1p); None for a table without the column."""
    if not rows or LOG1P_COLUMN not in rows[0]:
        return None
    bad = [r[LOG1P_COLUMN] for r in rows if r[LOG1P_COLUMN] not in ("0", "1")]
    if bad:
        raise InputError(f"{path}: the {LOG1P_COLUMN} column holds {bad[0]!r}; expected 0 or 1")
    return np.array([r[LOG1P_COLUMN] == "1" for r in rows])


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


def pair_columns(tracks: list[dict[str, str]], samples: list[str], by: str = "name") -> list[tuple[int, int]]:
    """(track, sample) index pairs of the tracks compared with expression columns.

    `tracks`: the selected rows of `jax_basenji.tracks.track_table`. By name (the default), a
    column pairs with the track whose label or identifier it equals; a column naming tracks of
    several assays (`Epiblast` for ATAC:Epiblast and RNA:Epiblast) is an error listing them, and
    no match at all is an error too. By order (`--pair-by order`) the i-th track pairs with the
    i-th column, and the counts must agree.
    """
    if by == "order":
        if len(tracks) != len(samples):
            raise InputError(f"--pair-by order: {len(tracks)} selected tracks and {len(samples)} expression "
                             f"columns; select as many tracks as there are columns with --tracks")
        return [(i, i) for i in range(len(tracks))]
    pairs = []
    for j, sample in enumerate(samples):
        hits = [i for i, t in enumerate(tracks) if sample in (t["label"], t["identifier"])]
        if len(hits) > 1:
            raise InputError(f"expression column {sample!r} matches {len(hits)} tracks "
                             f"({', '.join(tracks[i]['label'] for i in hits)}): select one assay with --tracks")
        pairs += [(hits[0], j)] if hits else []
    if not pairs:
        raise InputError(f"no expression column is named like a selected track (tracks "
                         f"{_few(t['label'] for t in tracks)}; columns {_few(samples)}): rename the columns, or "
                         f"pass --pair-by order to pair the selected tracks with the columns in order")
    return sorted(pairs)


def _few(names, k: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f", ... ({len(names)})" if len(names) > k else "")


def subsets_from_regions(genes: list[Gene], regions) -> list[Gene]:
    """Genes without a subset take that of the first region (BED order) whose target span holds their TSS:
    the region minus length / 16 bp per side (Basenji's crop), the seed's rule for its gene dictionary."""
    by_chrom: dict[str, list[tuple[int, int, int, str]]] = {}  # chrom -> [(start, BED row, end, subset)]
    for k, r in enumerate(regions):
        crop = (r.end - r.start) // 16
        by_chrom.setdefault(r.chrom, []).append((r.start + crop, k, r.end - crop, r.subset))
    longest = {c: max(e - s for s, _, e, _ in spans) for c, spans in by_chrom.items()}
    for spans in by_chrom.values():
        spans.sort()
    out = []
    for g in genes:
        spans = by_chrom.get(g.chrom, [])
        if not g.subset and spans:
            # spans starting at or before the TSS, and not so far before that they end ahead of it
            lo = bisect.bisect_left(spans, (g.tss - longest[g.chrom] + 1,))
            hi = bisect.bisect_right(spans, (g.tss, float("inf")))
            holding = [(k, subset) for s, k, e, subset in spans[lo:hi] if s <= g.tss < e]
            if holding:
                g = dataclasses.replace(g, subset=min(holding)[1])
        out.append(g)
    return out


def subsets_of(genes: list[Gene]) -> list[str]:
    """The gene table's subsets (train, valid, test first), without the empty name."""
    names = {g.subset for g in genes if g.subset}
    rank = {n: k for k, n in enumerate(SUBSET_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def predictions_log1p(pred: np.ndarray, pred_log: np.ndarray | None) -> np.ndarray:
    """`[genes, tracks]` predictions on the log(x+1) scale: transformed, except the `pred_log` tracks."""
    out = log1p_clipped(pred)
    if pred_log is not None:
        out[:, pred_log] = pred[:, pred_log]
    return out


def correlations(pred: np.ndarray, observed: np.ndarray,
                 pred_log: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(`[tracks]` R across genes, `[genes]` R across tracks) of `[genes, tracks]` matrices, on log(x+1).

    Per gene, every track is first standardised across the genes given (the seed's z-score).
    Predictions of the `pred_log` tracks (`[tracks]` bool: trained on log(x+1)) are on that
    scale already and are compared as they are.
    """
    lp, lo = predictions_log1p(pred, pred_log), log1p_clipped(observed)
    return pearson_columns(lp, lo, axis=0), pearson_columns(standardize(lp), standardize(lo), axis=1)


def correlate(pred: np.ndarray, observed: np.ndarray, genes: list[Gene], names: list[str], output: str,
              samples: list[str] | None = None, pred_log: np.ndarray | None = None) -> dict:
    """Correlations of all genes and of every subset on its own; TSVs, PNGs and the summary.

    `names`: the tracks compared (columns of `pred`), `samples` the measured columns paired with
    them (default: the same names). tss_per_track.tsv / tss_per_gene.tsv hold all genes;
    tss_per_track_by_subset.tsv and tss_per_gene_by_subset.tsv (first column `subset`) each
    subset's genes, standardised among them.
    """
    samples = samples or names
    per_track, per_gene = correlations(pred, observed, pred_log)
    write_tsv(os.path.join(output, "tss_per_track.tsv"), ["track", "measured", "pearson_r"],
              zip(names, samples, per_track))
    write_tsv(os.path.join(output, "tss_per_gene.tsv"), ["gene_id", "subset", "pearson_r"],
              ([g.gene_id, g.subset, r] for g, r in zip(genes, per_gene)))
    by_subset, track_rows, gene_rows = {}, [], []
    for subset in subsets_of(genes):
        idx = [i for i, g in enumerate(genes) if g.subset == subset]
        sub_track, sub_gene = correlations(pred[idx], observed[idx], pred_log)
        by_subset[subset] = {"genes": len(idx), "per_track_r": nanmean(sub_track), "per_gene_r": nanmean(sub_gene)}
        track_rows += [(subset, n, r) for n, r in zip(names, sub_track)]
        gene_rows += [(subset, genes[i].gene_id, r) for i, r in zip(idx, sub_gene)]
    if by_subset:
        write_tsv(os.path.join(output, "tss_per_track_by_subset.tsv"), ["subset", "track", "pearson_r"], track_rows)
        write_tsv(os.path.join(output, "tss_per_gene_by_subset.tsv"), ["subset", "gene_id", "pearson_r"], gene_rows)
    histogram(per_track, os.path.join(output, "tss_per_track_hist.png"), "Pearson R per track across genes",
              f"TSS: {len(names)} tracks, {len(genes)} genes")
    histogram(per_gene, os.path.join(output, "tss_per_gene_hist.png"), "Pearson R per gene across tracks",
              f"TSS: {len(genes)} genes, {len(names)} tracks")
    scatter(predictions_log1p(pred, pred_log), log1p_clipped(observed), os.path.join(output, "tss_scatter.png"),
            "predicted, log(x+1)", "measured, log(x+1)", "genes x tracks")
    return {"genes": len(genes), "tracks": len(names), "per_track_r": nanmean(per_track),
            "per_gene_r": nanmean(per_gene), "by_subset": by_subset}
