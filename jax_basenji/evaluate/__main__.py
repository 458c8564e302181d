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

import json
import os
import sys
import time

from jax_basenji.atomic import write_json
from jax_basenji.cli import InputError, Parser, one_line_errors
from jax_basenji.data.layout import read_targets_file
from jax_basenji.predict.core import add_devices_flag, add_ensemble_flags, add_precision_flag, ensemble_from_args
from jax_basenji.tracks import head_targets


def add_log1p_flag(q) -> None:
    q.add_argument("--log1p-assay", nargs="+", metavar="ASSAY",
                   help="assays the head predicts as log(x+1): their measured values are compared as log(x+1) "
                        "and their predictions as they are (default: the assays the checkpoint records as "
                        "fine-tuned with --log1p; 'none': no assay; case does not matter)")


def parse_args(argv):
    p = Parser(prog="python -m jax_basenji.evaluate", description=__doc__)
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
            add_devices_flag(q)
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
    add_log1p_flag(q)
    q.add_argument("--max-sequences", type=int,
                   help="only the first N sequences of the subset, in store order (the seed: 400 of valid)")

    q = sub.add_parser("tss", help="gene x track predictions at TSS (+ correlation with expression)")
    common(q, ensemble=True)
    q.add_argument("--genes", required=True,
                   help="GTF/GFF (1-based: TSS = start - 1 on +, end - 1 on -), or TSV: gene_id chrom tss strand "
                        "[subset] with a 0-based tss (the first transcribed base, as in BED)")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", help="genome: one window per TSS")
    src.add_argument("--data", nargs="+",
                     help="store(s): TSS bins inside their regions (the seed's gene dictionary); several are read "
                          "as one, tracks in order (as finetune --data)")
    q.add_argument("--species", default="human", help="species directory of the --data stores")
    q.add_argument("--subset", default="test", help="subset of the --data stores")
    q.add_argument("--regions", help="with --fasta: a Basenji sequences.bed; genes without a subset take that of "
                                     "the region whose target span holds their TSS (the seed's rule)")
    q.add_argument("--targets", help="gene x sample expression TSV (gene_id, then samples)")
    q.add_argument("--targets-txt", help="targets.txt naming the head's tracks (default: the checkpoint's record "
                                         "of the head, else the store's)")
    q.add_argument("--tracks", nargs="+", help="compare only these tracks (names, indices or an assay)")
    q.add_argument("--pair-by", choices=["name", "order"], default="name",
                   help="pair tracks with --targets columns by name (a column naming tracks of two assays is an "
                        "error), or in order (the i-th selected track with the i-th column)")
    add_log1p_flag(q)
    q.add_argument("--tss-bins", type=int, default=3,
                   help="odd number of bins summed around each TSS bin (default 3, the seed's)")
    q.add_argument("--resume", action="store_true",
                   help="continue the unfinished run in OUTPUT/.partial (a killed run; the same options)")

    q = sub.add_parser("ridge", help="ridge regression from TSS predictions to cell-type expression")
    common(q, checkpoint=False)
    q.add_argument("--predictions", required=True, help="tss_predictions.tsv of `evaluate tss`")
    q.add_argument("--expression", required=True, help="gene x cell type TSV (gene_id, then cell types)")
    q.add_argument("--tracks", nargs="+", required=True, help="assay (e.g. CAGE), track names or indices")
    q.add_argument("--targets-txt", help="targets.txt of the predicted head, to select by assay (default: "
                                         "tss_tracks.txt beside --predictions, written by evaluate tss, whose "
                                         "log1p column marks the predictions already on the log(x+1) scale)")
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
        q.add_argument("--tracks", nargs="+", default=["all"],
                       help="tracks: all, a-b or i j k (indices), or assays / track names (separated by spaces "
                            "or commas)")
        q.add_argument("--targets-txt", help="targets.txt naming the head's tracks and assays (default: the "
                                             "checkpoint's record of the head)")
        q.add_argument("--bins", default="center", help="bins: center (3 centre bins), all, a-b or i,j,k")
    return p.parse_args(argv)


@one_line_errors
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    created = not os.path.exists(args.output)
    os.makedirs(args.output, exist_ok=True)
    started = time.time()
    try:
        result = _run(args)
    except BaseException:
        if created and not os.listdir(args.output):  # a refused run leaves no empty folder behind
            os.rmdir(args.output)
        raise
    # What produced these figures: the command to rerun and the model it read.
    checkpoint = getattr(args, "checkpoint", None)
    result = {"command": ["python", "-m", "jax_basenji.evaluate", *argv],
              "checkpoint": os.path.abspath(checkpoint) if checkpoint else None, **result}
    write_json(os.path.join(args.output, f"{args.what}_summary.json"), result)
    print(json.dumps(result))
    written = sorted(f for f in os.listdir(args.output)
                     if os.path.getmtime(os.path.join(args.output, f)) >= started - 1)
    print(f"wrote {os.path.abspath(args.output)}/: {', '.join(written)}", file=sys.stderr)
    return 0


def _run(args) -> dict:
    """The summary of one evaluation, its files written into args.output."""
    progress = not args.no_progress
    if args.what == "positions":
        from jax_basenji.evaluate.positions import evaluate_positions

        result = evaluate_positions(args.checkpoint, args.data, args.species, args.subset, args.head, args.output,
                                    batch_size=args.batch_size, spearman_positions=args.spearman_positions,
                                    log1p_assays=args.log1p_assay, progress=progress,
                                    ensemble=ensemble_from_args(args), precision=args.precision,
                                    max_sequences=args.max_sequences, n_value=args.n_value, devices=args.devices)
    elif args.what == "tss":
        from jax_basenji.evaluate.tss_command import run_tss

        result = run_tss(args, progress)
    elif args.what == "ridge":
        from jax_basenji.evaluate.ridge import ridge_eval

        targets, log_scale = _ridge_targets(args)
        result = ridge_eval(args.predictions, args.expression, args.tracks, args.output,
                            targets=targets, train_subsets=tuple(args.train_subsets),
                            test_subset=args.test_subset, alpha=_alpha(args.alpha),
                            alpha_grid=[_alpha(a, "--alpha-grid", cv=False) for a in args.alpha_grid],
                            log_scale=log_scale)
    elif args.what == "ism":
        result = _ism(args, progress)
    else:
        from jax_basenji.evaluate.attribution import attribution
        from jax_basenji.predict.core import load_predictor

        predictor, meta = load_predictor(args.checkpoint, args.head, precision=args.precision, n_value=args.n_value,
                                         devices=args.devices)
        result = attribution(predictor, args.fasta, args.region, args.head, ",".join(args.tracks), args.bins,
                             args.output, head_targets(meta, args.head, args.targets_txt))
    return result


def _ridge_targets(args):
    """(tracks table, `[tracks]` bool of the columns on the log(x+1) scale already, or None).

    The table: --targets-txt, else the tss_tracks.txt that `evaluate tss` wrote beside its
    predictions. The log(x+1) columns: the table's `log1p` column, else that of the tss_tracks.txt
    beside the predictions (a head's targets.txt does not say how `evaluate tss` predicted it).
    """
    from jax_basenji.evaluate.tss import log_scale_columns

    beside = os.path.join(os.path.dirname(os.path.abspath(args.predictions)), "tss_tracks.txt")
    beside = beside if os.path.exists(beside) else None
    path = args.targets_txt or beside
    targets = read_targets_file(path) if path else None
    log_scale = log_scale_columns(targets, path)
    if log_scale is None and beside and path != beside:
        log_scale = log_scale_columns(read_targets_file(beside), beside)
    return targets, log_scale


def _ism(args, progress: bool) -> dict:
    from jax_basenji.data.genome import Genome
    from jax_basenji.evaluate.attribution import parse_range, parse_tracks, region_in_genome
    from jax_basenji.predict.core import load_predictor
    from jax_basenji.evaluate.ism import ism_scores, write_ism

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    predictor, meta = load_predictor(args.checkpoint, args.head, precision=args.precision, n_value=args.n_value,
                                     devices=args.devices)
    cfg = predictor.model.cfg
    genome = Genome(args.fasta)
    chrom, start, end = region_in_genome(genome, args.region, cfg.seq_length)
    bins = parse_range(args.bins, cfg.output_bins(cfg.seq_length), "bins")
    tracks = parse_tracks(",".join(args.tracks), cfg.head_tracks[args.head],
                          head_targets(meta, args.head, args.targets_txt))
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


if __name__ == "__main__":
    sys.exit(main())
