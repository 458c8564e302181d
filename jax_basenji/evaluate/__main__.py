"""Evaluation of a trained or fine-tuned model (docs/seed_reference.md).

  python -m jax_basenji.evaluate positions --checkpoint CKPT --data STORE [STORE ...] --species mouse \\
      --subset test --head finetune --output runs/eval
  python -m jax_basenji.evaluate tss --checkpoint CKPT --fasta mm10.fa --genes genes.gtf \\
      --head mouse [--targets EXPR.tsv] [--targets-txt targets.txt] --output runs/tss
  python -m jax_basenji.evaluate tss --checkpoint CKPT --data STORE --species mouse --subset test \\
      --genes genes.tsv --head mouse --output runs/tss          (genes read off Basenji regions)
  python -m jax_basenji.evaluate ridge --predictions runs/tss/tss_predictions.tsv --expression EXPR.tsv \\
      --tracks CAGE --targets-txt targets.txt --train-subsets train valid --test-subset test --output runs/ridge
  python -m jax_basenji.evaluate attribution --checkpoint CKPT --fasta mm10.fa --region chr1:1000-2000 \\
      --head mouse --tracks 0,3 --bins center --output runs/attr
  python -m jax_basenji.evaluate ism --checkpoint CKPT --fasta mm10.fa --region chr1:1000-1100 \\
      --head mouse --tracks 0,3 --bins center --output runs/ism

`positions` and `tss` take prediction ensembles as `predict` does: `--rc` and
`--shifts -1 0 1` (stranded tracks from --targets-txt, else the store's targets.txt).
Every summary JSON (`<what>_summary.json`) records the command line (`command`) and
the absolute checkpoint path (`checkpoint`, null for ridge).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jax_basenji.atomic import write_json
from jax_basenji.cli import InputError, one_line_errors
from jax_basenji.predict import add_ensemble_flags, add_precision_flag, ensemble_from_args


def _targets_txt(path: str | None) -> list[dict[str, str]] | None:
    """Rows of a targets.txt (header names as keys), or None."""
    if path is None:
        return None
    from jax_basenji.data.layout import read_targets_file

    return read_targets_file(path)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jax_basenji.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)

    def common(q, checkpoint=True, ensemble=False):
        if checkpoint:
            q.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
            q.add_argument("--head", required=True, help="output head, e.g. human, mouse, finetune")
            q.add_argument("--batch-size", type=int, default=4)
            q.add_argument("--n-value", type=float, choices=[0.0, 0.25],
                           help="one-hot value of N in the sequences built from a store or genome (default: "
                                "the checkpoint's record, 0.25 for a converted seed .pt, else 0)")
            add_precision_flag(q)
        if ensemble:  # stranded tracks for --rc: --targets-txt, else the store's targets.txt
            add_ensemble_flags(q)
        q.add_argument("--output", required=True, help="directory for the TSV tables and PNG plots")
        q.add_argument("--no-progress", action="store_true")

    q = sub.add_parser("positions", help="Pearson R, R², Spearman per track across all bins of a subset")
    common(q, ensemble=True)
    q.add_argument("--data", nargs="+", required=True,
                   help="converted store(s); several are read as one, tracks in order (as finetune --data)")
    q.add_argument("--species", default="human")
    q.add_argument("--subset", default="test")
    q.add_argument("--spearman-positions", type=int, default=100_000,
                   help="positions sampled for Spearman R (default 100000)")
    q.add_argument("--log1p-assay", nargs="+", default=[], help="assays whose targets are compared as log(x+1)")
    q.add_argument("--max-sequences", type=int,
                   help="only the first N sequences of the subset, in store order (the seed: 400 of valid)")

    q = sub.add_parser("tss", help="gene x track predictions at TSS (+ correlation with expression)")
    common(q, ensemble=True)
    q.add_argument("--genes", required=True, help="GTF/GFF, or TSV: gene_id chrom tss strand [subset]")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", help="genome: one window per TSS")
    src.add_argument("--data", help="store: TSS bins inside its regions (the seed's gene dictionary)")
    q.add_argument("--species", default="human", help="with --data")
    q.add_argument("--subset", default="test", help="with --data")
    q.add_argument("--targets", help="gene x sample expression TSV (gene_id, then samples)")
    q.add_argument("--targets-txt", help="targets.txt naming the head's tracks (column names)")
    q.add_argument("--tracks", nargs="+", help="compare only these tracks (names, indices or an assay)")
    q.add_argument("--tss-bins", type=int, default=3,
                   help="odd number of bins summed around each TSS bin (default 3, the seed's)")

    q = sub.add_parser("ridge", help="ridge regression from TSS predictions to cell-type expression")
    common(q, checkpoint=False)
    q.add_argument("--predictions", required=True, help="tss_predictions.tsv of `evaluate tss`")
    q.add_argument("--expression", required=True, help="gene x cell type TSV (gene_id, then cell types)")
    q.add_argument("--tracks", nargs="+", required=True, help="assay (e.g. CAGE), track names or indices")
    q.add_argument("--targets-txt", help="targets.txt of the predicted head (to select by assay)")
    q.add_argument("--train-subsets", nargs="+", default=["train", "valid"])
    q.add_argument("--test-subset", default="test")
    q.add_argument("--alpha", default="1.0", help="ridge penalty, or 'cv' for leave-one-out CV per cell type")
    q.add_argument("--alpha-grid", nargs="+", default=["0", "0.5", "1", "2", "3"],
                   help="penalties of the alpha sweep (default 0 0.5 1 2 3, the seed notebook's)")

    for what, text in (("attribution", "input x gradient contribution scores for one region"),
                       ("ism", "in-silico saturation mutagenesis of one region")):
        q = sub.add_parser(what, help=text)
        common(q)
        q.add_argument("--fasta", required=True)
        q.add_argument("--region", required=True, help="chrom:start-end; the input window is centred on it")
        q.add_argument("--tracks", default="all", help="track indices: all, a-b or i,j,k (default all)")
        q.add_argument("--bins", default="center", help="bins: center (3 centre bins), all, a-b or i,j,k")
    return p.parse_args(argv)


@one_line_errors
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    progress = not args.no_progress
    if args.what == "positions":
        from jax_basenji.evaluate.positions import evaluate_positions

        result = evaluate_positions(args.checkpoint, args.data, args.species, args.subset, args.head, args.output,
                                    batch_size=args.batch_size, spearman_positions=args.spearman_positions,
                                    log1p_assays=tuple(args.log1p_assay), progress=progress,
                                    ensemble=ensemble_from_args(args), precision=args.precision,
                                    max_sequences=args.max_sequences, n_value=args.n_value)
    elif args.what == "tss":
        result = _tss(args, progress)
    elif args.what == "ridge":
        from jax_basenji.evaluate.ridge import ridge_eval

        result = ridge_eval(args.predictions, args.expression, args.tracks, args.output,
                            targets=_targets_txt(args.targets_txt), train_subsets=tuple(args.train_subsets),
                            test_subset=args.test_subset, alpha=_alpha(args.alpha),
                            alpha_grid=[_alpha(a, "--alpha-grid", cv=False) for a in args.alpha_grid])
    elif args.what == "ism":
        result = _ism(args, progress)
    else:
        from jax_basenji.evaluate.attribution import attribution
        from jax_basenji.evaluate.common import load_predictor

        predictor = load_predictor(args.checkpoint, args.head, precision=args.precision, n_value=args.n_value)
        result = attribution(predictor, args.fasta, args.region, args.head, args.tracks, args.bins, args.output)
    # What produced these figures: the command to rerun and the model it read.
    checkpoint = getattr(args, "checkpoint", None)
    result = {"command": ["python", "-m", "jax_basenji.evaluate", *argv],
              "checkpoint": os.path.abspath(checkpoint) if checkpoint else None, **result}
    write_json(os.path.join(args.output, f"{args.what}_summary.json"), result)
    print(json.dumps(result))
    return 0


def _ism(args, progress: bool) -> dict:
    from jax_basenji.data.genome import Genome
    from jax_basenji.evaluate.attribution import parse_range, region_in_genome
    from jax_basenji.evaluate.common import load_predictor
    from jax_basenji.evaluate.ism import ism_scores, write_ism

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    predictor = load_predictor(args.checkpoint, args.head, precision=args.precision, n_value=args.n_value)
    cfg = predictor.model.cfg
    genome = Genome(args.fasta)
    chrom, start, end = region_in_genome(genome, args.region, cfg.seq_length)
    bins = parse_range(args.bins, cfg.output_bins(cfg.seq_length), "bins")
    tracks = parse_range(args.tracks, cfg.head_tracks[args.head], "tracks")
    w_start, scores = ism_scores(predictor, genome, chrom, start, end, bins, tracks, batch_size=args.batch_size,
                                 progress=progress)
    return {"window": f"{chrom}:{w_start}-{w_start + cfg.seq_length}", "region": f"{chrom}:{start}-{end}",
            "bins": len(bins), "tracks": len(tracks), **write_ism(args.output, chrom, start, scores, args.head, genome)}


def _alpha(text: str, flag: str = "--alpha", cv: bool = True) -> float | None:
    """A ridge penalty >= 0 (or None for 'cv' where allowed); InputError otherwise."""
    if cv and text == "cv":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InputError(f"{flag} {text!r}: a number >= 0" + (" or 'cv'" if cv else ""))
    return value


def _tss(args, progress: bool) -> dict:
    from jax_basenji.evaluate import tss
    from jax_basenji.evaluate.common import check_width, load_predictor, track_table
    from jax_basenji.evaluate.ridge import select_tracks

    check_width(args.tss_bins)
    source = None
    if args.data:
        from jax_basenji.data import BasenjiSource

        source = BasenjiSource(args.data, args.species, args.subset)
    predictor = load_predictor(args.checkpoint, args.head, ensemble_from_args(args),
                               source.strand_pair if source else None, args.precision, args.n_value)
    genes = tss.read_genes(args.genes)
    n_tracks = predictor.model.cfg.head_tracks[args.head]
    targets = _targets_txt(args.targets_txt)
    result = {"gene_rows": len(genes), "tss_bins": args.tss_bins}
    if source:
        if source.num_targets != n_tracks:
            raise InputError(f"{args.data}/{args.species} has {source.num_targets} tracks; head {args.head!r} "
                             f"predicts {n_tracks}")
        targets = targets or source.targets
        names = [t["identifier"] for t in track_table(n_tracks, targets)]
        genes, pred, measured, hits = tss.regions_tss(predictor, genes, source, width=args.tss_bins,
                                                      batch_size=args.batch_size, progress=progress)
        result["tss_hits"] = hits
        tss.write_matrix(os.path.join(args.output, "tss_targets.tsv"), genes, measured, names)
    else:
        names = [t["identifier"] for t in track_table(n_tracks, targets)]
        genes = tss.first_per_gene(genes)  # the seed keeps each gene id's first row
        pred = tss.predict_tss(predictor, genes, args.fasta, width=args.tss_bins, batch_size=args.batch_size,
                               progress=progress)
        measured = None
    tss.write_matrix(os.path.join(args.output, "tss_predictions.tsv"), genes, pred, names)
    result.update(genes=len(genes), tracks=n_tracks)
    cols = select_tracks(names, args.tracks, targets) if args.tracks else list(range(n_tracks))
    if args.targets:
        gene_row, expr, samples = tss.read_expression(args.targets)
        keep = [i for i, g in enumerate(genes) if g.gene_id in gene_row]
        if len(keep) < 3:
            raise InputError(f"only {len(keep)} genes of --genes are in {args.targets}")
        p_cols, s_cols = tss.pair_columns([names[c] for c in cols], samples)
        measured = expr[[gene_row[genes[i].gene_id] for i in keep]][:, s_cols]
        pred_sel = pred[keep][:, [cols[c] for c in p_cols]]
        result.update(tss.correlate(pred_sel, measured, [genes[i] for i in keep],
                                    [samples[c] for c in s_cols], args.output))
    elif measured is not None:
        result.update(tss.correlate(pred[:, cols], measured[:, cols], genes, [names[c] for c in cols],
                                    args.output))
    return result


if __name__ == "__main__":
    sys.exit(main())
