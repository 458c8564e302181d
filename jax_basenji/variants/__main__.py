"""`python -m jax_basenji.variants score`: variant effect predictions (upstream basenji_sad.py's statistics).

  python -m jax_basenji.variants score --checkpoint CKPT --head human --vcf in.vcf[.gz] --fasta genome.fa \\
      --output OUT.h5 [--targets-txt targets.txt] [--tracks ...] [--stats SAD REF ALT SAR D2] [--rc]
      [--shifts -1 0 1] [--batch-size N] [--seq-length L] [--float32] [--resume]

Windows, allele conventions and statistics: jax_basenji/variants/{alleles,score}.py;
outputs: jax_basenji/variants/output.py. A run killed mid-way continues with `--resume`.
"""

from __future__ import annotations

import os
import shutil
import sys

from jax_basenji.cli import Parser, one_line_errors
from jax_basenji.data.genome import Genome
from jax_basenji.errors import InputError
from jax_basenji.predict.cli import load_head
from jax_basenji.predict.core import add_ensemble_flags, add_precision_flag
from jax_basenji.resume import resuming
from jax_basenji.variants.score import STATS


def parse_args(argv):
    p = Parser(prog="python -m jax_basenji.variants", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="SAD/REF/ALT/SAR/D2 of every ALT allele of a VCF")
    s.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
    s.add_argument("--head", required=True, help="output head, e.g. human")
    s.add_argument("--vcf", required=True, help="VCF, plain or bgzipped")
    s.add_argument("--fasta", required=True, help="genome FASTA the VCF refers to")
    s.add_argument("--output", required=True, help="HDF5 to write (OUT.tsv and OUT.png beside it)")
    s.add_argument("--targets-txt", help="targets.txt of the head: track names, assays, strand pairs for --rc")
    s.add_argument("--tracks", nargs="+", help="tracks to score: indices, identifiers or assays (default all)")
    s.add_argument("--stats", nargs="+", choices=STATS, default=["SAD"], help="statistics to write")
    s.add_argument("--batch-size", type=int, default=4, help="variants per forward pass (2x windows)")
    s.add_argument("--seq-length", type=int, help="window bp (default: the checkpoint's)")
    s.add_argument("--n-value", type=float, choices=[0.0, 0.25],
                   help="one-hot value of N (default: the checkpoint's record, else 0)")
    s.add_argument("--float32", action="store_true", help="store statistics as float32 (default float16)")
    s.add_argument("--resume", action="store_true", help="continue the unfinished run in OUTPUT.partial")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--no-progress", action="store_true")
    add_ensemble_flags(s)
    add_precision_flag(s)
    return p.parse_args(argv)


def score(args) -> str:
    from jax_basenji.variants.alleles import prepare
    from jax_basenji.variants.output import plot_top, write_h5, write_summary
    from jax_basenji.variants.score import score_variants
    from jax_basenji.variants.vcf import read_vcf

    stem = os.path.splitext(args.output)[0]
    outputs = [args.output, stem + ".tsv", stem + ".png"]
    if not (args.overwrite or resuming(args.output + ".partial", args.resume)) and any(
            os.path.exists(p) for p in outputs):
        raise InputError(f"{next(p for p in outputs if os.path.exists(p))} already exists; pass --overwrite")
    head = load_head(args)
    predictor, model, columns = head.predictor, head.predictor.model, head.columns
    ids, labels = head.names, head.descriptions
    length = args.seq_length or model.cfg.seq_length
    try:
        model.cfg.output_bins(length)
    except ValueError as e:  # an impossible length: one line, before any work
        raise InputError(f"--seq-length {length}: {e}") from None
    genome = Genome(args.fasta)
    variants, symbolic = read_vcf(args.vcf)
    missing = sorted({v.chrom for v in variants if v.chrom not in genome})
    if missing:
        raise InputError(f"{args.vcf}: chromosome {missing[0]!r} is not in {genome.path}")
    prepared, mismatched = prepare(genome, variants)
    if symbolic:
        print(f"warning: {symbolic} symbolic or breakend ALT allele(s) skipped (no sequence to score)",
              file=sys.stderr)
    if mismatched:
        print(f"warning: {len(mismatched)} variant(s) skipped: neither REF nor ALT matches {args.fasta} "
              f"(first: {mismatched[0].id} {mismatched[0].chrom}:{mismatched[0].pos} {mismatched[0].ref}>"
              f"{mismatched[0].alt})", file=sys.stderr)
    if not prepared:
        raise InputError(f"{args.vcf}: no variant to score")
    st = os.stat(args.vcf)
    record = {"checkpoint": os.path.abspath(args.checkpoint), "head": args.head, "length": length,
              "vcf": [os.path.abspath(args.vcf), st.st_size, st.st_mtime_ns], "fasta": genome.path,
              "columns": columns, "stats": list(args.stats), "rc": args.rc, "shifts": list(args.shifts),
              "n_value": predictor.n_value, "precision": args.precision, "batch_size": args.batch_size}
    partial = args.output + ".partial"
    arrays = score_variants(predictor, genome, prepared, partial, length=length, columns=columns,
                            stats=tuple(args.stats), record=record, batch_size=args.batch_size,
                            resume=args.resume, progress=not args.no_progress)
    kept_ids = ids if columns is None else [ids[c] for c in columns]
    kept_labels = labels if columns is None else [labels[c] for c in columns]
    write_h5(args.output, prepared, arrays, kept_ids, kept_labels, args.float32, True)  # refused above if needed
    stat = "SAD" if "SAD" in arrays else args.stats[0]  # what the summary and the plot rank by
    sad = arrays[stat]
    write_summary(outputs[1], prepared, sad, stat, kept_ids)
    plot_top(outputs[2], prepared, sad, stat, kept_ids)
    del arrays, sad
    shutil.rmtree(partial)
    flipped = sum(p.flipped for p in prepared)
    return (f"scored {len(prepared)} variants ({flipped} flipped, {len(mismatched)} skipped) x {len(kept_ids)} "
            f"tracks: " + ", ".join(outputs))


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(score(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
