"""`python -m jax_basenji.variants score | merge`: variant effect predictions as upstream basenji_sad.py makes them.

  python -m jax_basenji.variants score --checkpoint CKPT --head human --vcf in.vcf[.gz] --fasta genome.fa \\
      --output OUT.h5 [--tracks ...] [--stats SAD D2 SAR REF_SUM ALT_SUM] [--rc] [--shifts 1 0 -1]
      [--batch-size N] [--cluster-pct P] [--no-incremental] [--float32] [--resume] [--shard K/N]
  python -m jax_basenji.variants merge --output OUT.h5 SHARD1.h5 ... SHARDN.h5

Scores are upstream's: SAD = sum over bins of (ALT - REF) per track, plus SAR, D2 and the two
sums on request; OUT.h5 holds them per variant and track, OUT.tsv each variant's largest
|SAD| track, OUT.png the top variants. Each variant's window is built as upstream's: its
first base at 0-based index L // 2 - 1, an indel trimmed or N-padded at both ends to L, a
VCF whose REF is the genome's ALT ("flipped") scored in its own orientation, a variant whose
alleles match nothing skipped with a warning. N: 0.25 for the published Basenji2 and its
fine-tunings (as upstream), the checkpoint's own value for the seed's models (--n-value
overrides it).

SNVs and MNVs are scored incrementally by default: ALT recomputes the conv tower only on
the slice of the window the allele reaches, equal to the full model to fp32 rounding
(--no-incremental runs the whole model). --cluster-pct P lets variants of a sorted VCF
within P x L bp share one window, so REF is predicted once per cluster. A run killed
mid-way continues with --resume; --shard K/N scores the K-th of N contiguous slices of the
VCF's rows into its own file, and `merge` joins the N files.
"""

from __future__ import annotations

import os
import shutil
import sys

from jax_basenji.cli import Parser, one_line_errors
from jax_basenji.errors import InputError
from jax_basenji.predict.core import add_devices_flag, add_ensemble_flags, add_precision_flag, batch_for
from jax_basenji.resume import refuse_existing
from jax_basenji.variants.score import STATS


def shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise InputError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def parse_args(argv):
    p = Parser(prog="python -m jax_basenji.variants", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="SAD/D2/SAR/REF_SUM/ALT_SUM of every ALT allele of a VCF")
    s.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
    s.add_argument("--head", required=True, help="output head, e.g. human")
    s.add_argument("--vcf", required=True, help="VCF, plain or bgzipped (streamed: any size)")
    s.add_argument("--fasta", required=True, help="genome FASTA the VCF refers to")
    s.add_argument("--output", required=True, help="HDF5 to write (OUT.tsv and OUT.png beside it)")
    s.add_argument("--targets-txt", help="targets.txt of the head: track names, assays, strand pairs for --rc")
    s.add_argument("--tracks", nargs="+", help="tracks to score: indices, identifiers or assays (default all)")
    s.add_argument("--stats", nargs="+", choices=STATS, default=["SAD"],
                   help="statistics to write: SAD = sum over bins of (alt - ref), D2 = sqrt(sum of (alt - ref)^2) "
                        "(both upstream's), SAR = log2(sum alt + 1) - log2(sum ref + 1), REF_SUM, ALT_SUM")
    s.add_argument("--batch-size", type=int, default=4,
                   help="windows per forward pass: REF windows, then as many ALT edits per pass (the full "
                        "path: REF and ALT windows of this many variants)")
    s.add_argument("--cluster-pct", type=float, default=0.0, metavar="P",
                   help="variants of a sorted VCF within P x window length bp of a cluster's first share one "
                        "window centred on the cluster (baskerville's cluster_snps; REF predicted once per "
                        "cluster); default 0: each position its own centred window, as basenji_sad.py")
    s.add_argument("--no-incremental", action="store_true",
                   help="score SNVs/MNVs through the whole model; by default their ALT recomputes the conv "
                        "tower only on the slice the allele reaches (exact: equal to fp32 rounding)")
    s.add_argument("--seq-length", type=int, help="window bp (default: the checkpoint's)")
    s.add_argument("--n-value", type=float, choices=[0.0, 0.25],
                   help="one-hot value of N in the windows (default: 0.25 for the published Basenji2, as "
                        "upstream; else the checkpoint's record)")
    s.add_argument("--float32", action="store_true", help="store statistics as float32 (default float16)")
    s.add_argument("--shard", metavar="K/N",
                   help="score only the K-th of N contiguous slices of the VCF's rows (join with `merge`)")
    s.add_argument("--resume", action="store_true", help="continue the unfinished run in OUTPUT.partial")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--no-progress", action="store_true")
    add_ensemble_flags(s)
    add_precision_flag(s)
    add_devices_flag(s)
    m = sub.add_parser("merge", help="join the files of `score --shard 1/N ... N/N` into one")
    m.add_argument("--output", required=True, help="HDF5 to write (OUT.tsv and OUT.png beside it)")
    m.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    m.add_argument("shards", nargs="+", help="the N shard files, any order")
    return p.parse_args(argv)


def outputs_of(path: str, overwrite: bool, resume: bool = False) -> list[str]:
    """[OUT.h5, OUT.tsv, OUT.png]; InputError if one exists and neither --overwrite nor a --resume allows it."""
    stem = os.path.splitext(path)[0]
    outputs = [path, stem + ".tsv", stem + ".png"]
    refuse_existing(outputs, path + ".partial", overwrite, resume)
    return outputs


def conventions(args) -> dict:
    """N value and shift padding of the windows (`score.window_conventions`), and the checkpoint's
    fingerprint for the resume record."""
    from jax_basenji import checkpoint
    from jax_basenji.config import ModelConfig
    from jax_basenji.variants.score import window_conventions

    meta = checkpoint.read_meta(args.checkpoint)
    n_value, shift_pad = window_conventions(ModelConfig.from_dict(meta["model_config"]), meta, args.n_value)
    return {"n_value": n_value, "shift_pad": shift_pad, "model": meta.get("meta_crc32c")}


def run_record(args, head, genome, length: int, conv: dict, shard: tuple[int, int], rows: range,
               total: int) -> dict:
    """What a resumed run must share with the run it continues (and `merge`, across shards)."""
    st = os.stat(args.vcf)
    return {"checkpoint": os.path.abspath(args.checkpoint), "model": conv["model"], "head": args.head,
            "length": length, "vcf": [os.path.abspath(args.vcf), st.st_size, st.st_mtime_ns],
            "fasta": genome.path, "columns": head.columns, "stats": list(args.stats), "rc": args.rc,
            "shifts": list(args.shifts), "strand_pair": head.predictor.ensemble.strand_pair,
            "n_value": conv["n_value"], "shift_pad": conv["shift_pad"], "precision": args.precision,
            "batch_size": args.batch_size, "cluster_pct": args.cluster_pct, "incremental": not args.no_incremental,
            "shard": list(shard), "rows": [rows.start, rows.stop, total]}


def warn_skipped(symbolic: int, skipped: int, fasta: str) -> None:
    if symbolic:
        print(f"warning: {symbolic} ALT allele(s) without a sequence (symbolic, breakend, or REF/ALT not in "
              f"ACGTN) skipped", file=sys.stderr)
    if skipped:
        print(f"warning: {skipped} variant(s) skipped: neither REF nor a same-length ALT matches {fasta}",
              file=sys.stderr)


def score(args) -> str:
    """Score the VCF (or one --shard of it) and write OUT.h5, OUT.tsv, OUT.png; returns what was done.
    An empty shard writes files with no rows, so that `merge` finds every shard."""
    from jax_basenji.data.genome import Genome
    from jax_basenji.predict.cli import load_head
    from jax_basenji.variants.output import plot_top, write_h5, write_summary
    from jax_basenji.variants.score import FLIPPED, SKIPPED, score_variants, scored_chunks
    from jax_basenji.variants.vcf import scan

    k, n = shard(args.shard) if args.shard else (1, 1)
    outputs = outputs_of(args.output, args.overwrite, args.resume)
    genome = Genome(args.fasta)
    found = scan(args.vcf)  # the whole VCF is checked before the model is loaded
    missing = sorted(c for c in found.chroms if c not in genome)
    if missing:
        raise InputError(f"{args.vcf}: chromosome {missing[0]!r} is not in {genome.path}")
    rows = range(found.rows * (k - 1) // n, found.rows * k // n)
    if not found.rows:
        raise InputError(f"{args.vcf}: no variant to score")
    if not 0 <= args.cluster_pct < 1:
        raise InputError(f"--cluster-pct {args.cluster_pct}: expected a fraction of the window, 0 <= P < 1")
    conv = conventions(args)
    head = load_head(args, shift_pad=conv["shift_pad"], n_value=conv["n_value"])
    length = args.seq_length or head.predictor.model.cfg.seq_length
    try:
        head.predictor.model.cfg.output_bins(length)
    except ValueError as e:  # an impossible length: one line, before any work
        raise InputError(f"--seq-length {length}: {e}") from None
    record = run_record(args, head, genome, length, conv, (k, n), rows, found.rows)
    partial = args.output + ".partial"
    arrays, status = score_variants(head.predictor, genome, args.vcf, rows, partial, length=length,
                                    columns=head.columns, stats=tuple(args.stats), record=record,
                                    batch_size=batch_for(args.batch_size, len(rows)), resume=args.resume,
                                    cluster_distance=int(length * args.cluster_pct),
                                    incremental=not args.no_incremental, progress=not args.no_progress)
    skipped, flipped = int((status == SKIPPED).sum()), int((status == FLIPPED).sum())
    warn_skipped(found.symbolic, skipped, args.fasta)
    if skipped == found.rows:
        shutil.rmtree(partial)
        raise InputError(f"{args.vcf}: no variant's alleles match {args.fasta}")
    if os.stat(args.vcf).st_mtime_ns != record["vcf"][2]:
        raise InputError(f"{args.vcf} changed while it was scored; rerun with --resume to score it again")
    columns = head.columns if head.columns is not None else range(len(head.names))
    write_h5(args.output, scored_chunks(args.vcf, rows, arrays, status), rows=len(rows) - skipped,
             widths=found.widths, stats=list(args.stats), target_ids=[head.names[c] for c in columns],
             target_labels=[head.descriptions[c] for c in columns], settings={**record, "float32": args.float32},
             float32=args.float32)
    stat = "SAD" if "SAD" in args.stats else args.stats[0]  # what the summary and the plot rank by
    write_summary(outputs[1], args.output, stat)
    plot_top(outputs[2], args.output, stat)
    del arrays, status
    shutil.rmtree(partial)
    return (f"scored {len(rows) - skipped} variants ({flipped} flipped, {skipped} skipped) x {len(columns)} "
            f"tracks: " + ", ".join(outputs))


def merge(args) -> str:
    from jax_basenji.variants.merge import merge_shards
    from jax_basenji.variants.output import plot_top, write_summary

    outputs = outputs_of(args.output, args.overwrite)
    settings = merge_shards(args.shards, args.output)
    stat = "SAD" if "SAD" in settings["stats"] else settings["stats"][0]
    write_summary(outputs[1], args.output, stat)
    plot_top(outputs[2], args.output, stat)
    return f"merged {len(args.shards)} shards: " + ", ".join(outputs)


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(score(args) if args.command == "score" else merge(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
