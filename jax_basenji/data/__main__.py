"""`python -m jax_basenji.data {synth,convert,verify,regions,tracks}` (see `--help` of each)."""

from __future__ import annotations

import sys

from jax_basenji.cli import InputError, Parser, one_line_errors
from jax_basenji.data.store import convert, verify
from jax_basenji.data.synth import SynthConfig, synth
from jax_basenji.data import regions as regions_module
from jax_basenji.data.regions import RegionsConfig, make_regions
from jax_basenji.data.tracks import build_tracks, tracks_from_groups, tracks_from_sheet


def _pairs(text: str, what: str) -> dict[str, int]:
    """'human=5313,mouse=1643' -> {'human': 5313, 'mouse': 1643}."""
    try:
        return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item)}
    except ValueError:
        raise InputError(f"--{what} expects name=number pairs separated by commas, got {text!r}") from None


def parse_args(argv):
    p = Parser(prog="python -m jax_basenji.data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="write synthetic data in the Basenji2 layout")
    s.add_argument("--output", required=True, help="directory to create (one subdirectory per species)")
    s.add_argument("--species", nargs="+", default=["human", "mouse"])
    s.add_argument("--seq-length", type=int, default=131_072, help="bp per example (default 131072)")
    s.add_argument("--tracks", default="human=5313,mouse=1643",
                   help="tracks per species; the real targets tables are used when the counts match")
    s.add_argument("--examples", default="train=64,valid=16,test=16", help="examples per subset")
    s.add_argument("--crop-bp", type=int, default=None, help="bp without targets per side (default L/16)")
    s.add_argument("--records-per-file", type=int, default=16, help="examples per TFRecord file")
    s.add_argument("--sequence-encoding", choices=["index", "one-hot"], default="index",
                   help="(L,) uint8 index (seq_1hot) or (L, 4) one-hot records")
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("convert", help="convert Basenji TFRecords into a random-access store")
    c.add_argument("--input", required=True, help="BASENJI_DIR with one directory per species")
    c.add_argument("--output", required=True, help="store directory (re-running resumes)")
    c.add_argument("--species", nargs="+", default=None, help="default: every species directory found")
    c.add_argument("--workers", type=int, default=1, help="processes converting files in parallel")
    c.add_argument("--overwrite", action="store_true",
                   help="convert again shards that came from other input files (default: refuse)")
    v = sub.add_parser("verify", help="read every example of a store, checking its checksums")
    v.add_argument("--store", required=True, help="converted store directory")
    v.add_argument("--species", nargs="+", default=None, help="default: every species of the store")
    r = sub.add_parser("regions", help="a region BED with train/valid/test subsets from a genome (for tracks)",
                       description=regions_module.__doc__)
    r.add_argument("--fasta", required=True, help="genome FASTA (indexed or indexable by pyfaidx)")
    r.add_argument("--output", required=True, help="BED to write: chrom start end subset")
    d = RegionsConfig()
    r.add_argument("--seq-length", type=int, default=d.seq_length, help=f"bp per region (default {d.seq_length})")
    r.add_argument("--stride", type=int, help="bp between region starts in a contig (default --seq-length)")
    r.add_argument("--gap", type=int, default=d.gap, help=f"N runs this long split contigs (default {d.gap})")
    r.add_argument("--max-n", type=float, default=d.max_n,
                   help=f"largest fraction of N in a region (default {d.max_n})")
    r.add_argument("--chroms", nargs="+", help="chromosomes to use (default all of the FASTA)")
    r.add_argument("--valid-chroms", nargs="+", default=[], help="validation chromosomes (else --valid-frac)")
    r.add_argument("--test-chroms", nargs="+", default=[], help="test chromosomes (else --test-frac)")
    r.add_argument("--valid-frac", type=float, default=d.valid_frac,
                   help=f"fraction of bases in random validation contigs (default {d.valid_frac})")
    r.add_argument("--test-frac", type=float, default=d.test_frac,
                   help=f"fraction of bases in random test contigs (default {d.test_frac})")
    r.add_argument("--bigwig", nargs="+", default=[], help="use only chromosomes every one of these covers")
    r.add_argument("--seed", type=int, default=d.seed, help="the random division into subsets")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    t = sub.add_parser("tracks", help="bin bigWig files over BED regions into the Basenji2 layout")
    t.add_argument("--regions", required=True, help="BED: chrom start end subset, input-length regions")
    t.add_argument("--bigwig", nargs="+", action="append", default=[], metavar="BW",
                   help="bigWig files of one assay; repeat the flag per assay (ATAC, then RNA, ...)")
    t.add_argument("--assay", nargs="+", help="assay name per --bigwig group (default: the files' directory)")
    t.add_argument("--samples", help="TSV sample sheet instead of --bigwig (columns: file, identifier, "
                                     "description, assay, clip, scale, sum_stat)")
    t.add_argument("--fasta", required=True, help="genome FASTA (indexed or indexable by pyfaidx)")
    t.add_argument("--output", required=True, help="directory; the data go to OUTPUT/SPECIES/")
    t.add_argument("--species", required=True,
                   help="species directory name, the genome the regions come from (e.g. human, mouse)")
    t.add_argument("--sum-stat", choices=["sum", "mean"], default="sum", help="per-bin summary (default sum)")
    t.add_argument("--clip", type=float, help="upper bound per bin, before --scale")
    t.add_argument("--scale", type=float, default=1.0, help="factor per bin (default 1)")
    t.add_argument("--crop-bp", type=int, help="bp without targets per side (default length / 16)")
    t.add_argument("--pool-width", type=int, default=128, help="bp per bin (default 128)")
    t.add_argument("--records-per-file", type=int, default=64)
    t.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT/SPECIES")
    for q in (s, c, v, t):
        q.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "synth":
        tracks = _pairs(args.tracks, "tracks")
        missing = [sp for sp in args.species if sp not in tracks]
        if missing:
            raise InputError(f"--tracks gives no track count for {missing}")
        examples = tuple(_pairs(args.examples, "examples").items())
        cfg = SynthConfig(seq_length=args.seq_length, examples=examples, crop_bp=args.crop_bp,
                          records_per_file=args.records_per_file,
                          sequence_encoding=args.sequence_encoding, seed=args.seed)
        dirs = synth(args.output, {sp: tracks[sp] for sp in args.species}, cfg,
                     progress=not args.no_progress)
        print(f"wrote {', '.join(dirs.values())}")
    elif args.command == "tracks":
        opts = dict(sum_stat=args.sum_stat, clip=args.clip, scale=args.scale)
        if bool(args.samples) == bool(args.bigwig):
            raise InputError("give either --bigwig groups or a --samples sheet")
        tracks = (tracks_from_sheet(args.samples, **opts) if args.samples
                  else tracks_from_groups(args.bigwig, args.assay, **opts))
        out = build_tracks(args.regions, tracks, args.fasta, args.output, species=args.species,
                           crop_bp=args.crop_bp, pool_width=args.pool_width,
                           records_per_file=args.records_per_file, overwrite=args.overwrite,
                           progress=not args.no_progress)
        # said, not silent: the assay names the evaluations group tracks by
        named = "" if args.samples or args.assay else "; assays named after the bigWigs' directories: " + \
            ", ".join(dict.fromkeys(t.assay for t in tracks)) + " (--assay names them)"
        print(f"wrote {out} ({len(tracks)} tracks{named}); next: python -m jax_basenji.data convert "
              f"--input {args.output} --output STORE --species {args.species}")
    elif args.command == "regions":
        cfg = RegionsConfig(seq_length=args.seq_length, stride=args.stride, gap=args.gap, max_n=args.max_n,
                            valid_chroms=tuple(args.valid_chroms), test_chroms=tuple(args.test_chroms),
                            valid_frac=args.valid_frac, test_frac=args.test_frac, seed=args.seed)
        counts = make_regions(args.fasta, args.output, cfg, chroms=args.chroms, bigwigs=args.bigwig,
                              overwrite=args.overwrite)
        print(f"wrote {args.output}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" regions of "
              f"{cfg.seq_length} bp; next: python -m jax_basenji.data tracks --regions {args.output} ...")
    elif args.command == "verify":
        counts = verify(args.store, args.species, progress=not args.no_progress)
        print(f"{args.store}: every checksum matches: {counts}")
    else:
        counts = convert(args.input, args.output, args.species, workers=args.workers,
                         progress=not args.no_progress, overwrite=args.overwrite)
        print(f"converted into {args.output}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
