"""`python -m jax_basenji.evaluate tss`: which tracks, which genes, which expression columns, then
the predictions at TSS and their correlations (jax_basenji.evaluate.tss holds the definitions).

Everything that can refuse the run (track selection, the log(x+1) assays, the pairing of tracks
with expression columns) is settled before the first prediction, so a refused run writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import numpy as np

from jax_basenji.cli import InputError
from jax_basenji.data.layout import read_bed_file, write_targets_file
from jax_basenji.data.source import read_as_one
from jax_basenji.evaluate import tss
from jax_basenji.evaluate.common import check_width
from jax_basenji.predict.core import ensemble_from_args, load_predictor
from jax_basenji.resume import Run
from jax_basenji.tracks import assays_of, head_targets, log1p_tracks, select_tracks, track_table


@dataclasses.dataclass
class Columns:
    """The head's tracks as the TSS tables name them, and those compared."""

    table: list[dict[str, str]]  # jax_basenji.tracks.track_table rows, one per head track
    compared: list[int]  # --tracks (default: all)
    pred_log: np.ndarray  # [tracks] bool: predicted on the log(x+1) scale (trained with --log1p)
    labels: list[str] = dataclasses.field(init=False)  # [tracks] the tables' column names

    def __post_init__(self):
        self.labels = [t["label"] for t in self.table]


def run_tss(args, progress: bool) -> dict:
    """Write the TSS tables and plots into args.output; returns the summary."""
    check_width(args.tss_bins)
    source = read_as_one(args.data, args.species, args.subset) if args.data else None
    predictor, meta = load_predictor(args.checkpoint, args.head, ensemble_from_args(args),
                                     source.strand_pair if source else None, args.precision, args.n_value,
                                     devices=args.devices)
    cfg = predictor.model.cfg
    n_tracks = cfg.head_tracks[args.head]
    if source and source.num_targets != n_tracks:
        raise InputError(f"{' + '.join(args.data)}/{args.species} has {source.num_targets} tracks; head "
                         f"{args.head!r} predicts {n_tracks}")
    targets = head_targets(meta, args.head, args.targets_txt, source.targets if source else None)
    table = track_table(n_tracks, targets)
    cols = Columns(table, select_tracks([t["label"] for t in table], args.tracks, targets) if args.tracks
                   else list(range(n_tracks)), log1p_tracks(meta, args.head, table, args.log1p_assay))
    genes = tss.read_genes(args.genes)
    if args.regions:
        genes = tss.subsets_from_regions(genes, read_bed_file(args.regions))
    expression = _expression(args.targets, cols, args.pair_by) if args.targets else None
    if expression:
        _enough_genes({g.gene_id for g in genes}, expression)

    result = {"gene_rows": len(genes), "tss_bins": args.tss_bins}
    run = _resumable(args, predictor, genes)
    if source:
        genes, pred, measured, hits = tss.regions_tss(predictor, genes, source, width=args.tss_bins,
                                                      batch_size=args.batch_size, progress=progress, run=run)
        result["tss_hits"] = hits
        tss.write_matrix(os.path.join(args.output, "tss_targets.tsv"), genes, measured, cols.labels)
    else:
        genes = tss.first_per_gene(genes)  # the seed keeps each gene id's first row
        pred = tss.predict_tss(predictor, genes, args.fasta, width=args.tss_bins, batch_size=args.batch_size,
                               progress=progress, run=run)
        measured = None
    tss.write_matrix(os.path.join(args.output, "tss_predictions.tsv"), genes, pred, cols.labels)
    # The columns' table: `evaluate ridge` selects tracks by assay from it, and takes the columns
    # marked log1p 1 (predicted on the log(x+1) scale) as they are.
    write_targets_file(os.path.join(args.output, "tss_tracks.txt"),
                       [{**t, tss.LOG1P_COLUMN: int(m)} for t, m in zip(table, cols.pred_log)])
    result.update(genes=len(genes), tracks=n_tracks, log1p_assays=assays_of(table, cols.pred_log))
    if expression:
        result.update(_correlate_expression(expression, genes, pred, cols, args))
    elif measured is not None:
        c = cols.compared
        result.update(tss.correlate(pred[:, c], measured[:, c], genes, [cols.labels[i] for i in c], args.output,
                                    pred_log=cols.pred_log[c]))
    run.finish()
    return result


def _resumable(args, predictor, genes: list) -> Run:
    """The predictions' partial folder, OUTPUT/.partial, and what a resumed run must share with this one."""
    digest = hashlib.sha256("\n".join(f"{g.gene_id}\t{g.chrom}\t{g.tss}" for g in genes).encode()).hexdigest()
    source = ({"data": [os.path.abspath(d) for d in args.data], "species": args.species, "subset": args.subset}
              if args.data else {"fasta": os.path.abspath(args.fasta)})
    record = {"checkpoint": os.path.abspath(args.checkpoint), "head": args.head, "rc": args.rc,
              "shifts": list(args.shifts), "n_value": predictor.n_value, "precision": args.precision,
              **source, "genes": f"{len(genes)} rows, sha256 {digest[:16]}", "tss_bins": args.tss_bins,
              "batch_size": args.batch_size}
    return Run(os.path.join(args.output, ".partial"), record, args.resume)


@dataclasses.dataclass
class Expression:
    path: str
    gene_row: dict[str, int]  # gene id -> row of values
    values: np.ndarray  # [genes, samples]
    samples: list[str]
    pairs: list[tuple[int, int]]  # (head track, sample column) compared


def _expression(path: str, cols: Columns, by: str) -> Expression:
    """The expression table and its pairing with the compared tracks, printed on stderr."""
    gene_row, values, samples = tss.read_expression(path)
    pairs = [(cols.compared[i], j) for i, j in tss.pair_columns([cols.table[c] for c in cols.compared], samples, by)]
    shown = ", ".join(f"{cols.labels[c]} <- {samples[j]}" for c, j in pairs[:8])
    print(f"pairing by {by}: {shown}{f', ... ({len(pairs)} pairs)' if len(pairs) > 8 else ''}", file=sys.stderr)
    return Expression(path, gene_row, values, samples, pairs)


def _enough_genes(ids: set[str], e: Expression) -> None:
    found = len(ids & set(e.gene_row))
    if found < 3:
        raise InputError(f"only {found} genes of --genes are in {e.path}: a correlation needs at least 3")


def _correlate_expression(e: Expression, genes: list, pred: np.ndarray, cols: Columns, args) -> dict:
    keep = [i for i, g in enumerate(genes) if g.gene_id in e.gene_row]
    _enough_genes({genes[i].gene_id for i in keep}, e)  # with --data: those whose TSS a region holds
    tracks, samples = [c for c, _ in e.pairs], [j for _, j in e.pairs]
    measured = e.values[[e.gene_row[genes[i].gene_id] for i in keep]][:, samples]
    out = tss.correlate(pred[keep][:, tracks], measured, [genes[i] for i in keep], [cols.labels[c] for c in tracks],
                        args.output, [e.samples[j] for j in samples], cols.pred_log[tracks])
    return {"pairs": [[cols.labels[c], e.samples[j]] for c, j in e.pairs], **out}
