"""`python -m jax_basenji.predict`: three modes.

  python -m jax_basenji.predict --checkpoint CKPT --head H --input x.npy --output y.npy    (one-hot arrays)
  python -m jax_basenji.predict regions --checkpoint CKPT --head H --fasta genome.fa --bed regions.bed \\
      --output OUT.h5 [--tracks ...] [--site-length BP] [--sum] [--embed final|trunk] [--bigwig-tracks ...]
      [--float16] [--rc] [--shifts -1 0 1] [--plot NAME [--measured-bigwig a.bw ...]]
  python -m jax_basenji.predict genome --checkpoint CKPT --head H --fasta genome.fa --chrom chr1 [chr2 ...] \\
      --tracks ... --output DIR [--bedgraph] [--resume]

Sequences built from the genome use the checkpoint's N encoding (`--n-value`
overrides it) and are N-padded past chromosome ends; batches are padded to one
shape and split over the local devices; outputs are written under temporary
names and renamed when complete. See `regions --help` and `genome --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

from jax_basenji.cli import Parser, one_line_errors
from jax_basenji.config import ModelConfig
from jax_basenji.data.genome import Genome
from jax_basenji.errors import InputError
from jax_basenji.geometry import Geometry
from jax_basenji.predict import core
from jax_basenji.predict.core import (Predictor, add_devices_flag, add_ensemble_flags, add_precision_flag,
                                     ensemble_from_args, load_predictor)

MODES = ("regions", "genome")


def _common(q: argparse.ArgumentParser) -> None:
    q.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
    q.add_argument("--head", required=True, help="output head, e.g. human, mouse, finetune")
    q.add_argument("--fasta", required=True, help="genome FASTA (indexed, or indexable by pyfaidx)")
    q.add_argument("--targets-txt", help="targets.txt of the head: track names, assays, strand pairs for --rc")
    q.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default 4)")
    q.add_argument("--n-value", type=float, choices=[0.0, 0.25],
                   help="one-hot value of N (default: the checkpoint's record, else 0)")
    add_ensemble_flags(q)
    add_precision_flag(q)
    add_devices_flag(q)
    q.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = Parser(prog="python -m jax_basenji.predict", description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("regions", help="BED regions -> HDF5 (and bigWig)")
    _common(r)
    r.add_argument("--bed", required=True, help="regions: chrom start end [name]; each centred in a window")
    r.add_argument("--output", required=True, help="HDF5 file to write")
    r.add_argument("--tracks", nargs="+", help="tracks to keep: indices, identifiers or assays (default all)")
    r.add_argument("--site-length", type=int, help="bp of central output bins to keep (default all bins)")
    r.add_argument("--sum", action="store_true", help="sum over the kept bins: preds [regions, tracks]")
    r.add_argument("--embed", choices=["final", "trunk"],
                   help="write this layer's activations instead of the head's output")
    r.add_argument("--bigwig-tracks", nargs="+",
                   help="also one bigWig per track (among --tracks), OUT.{track}.bw beside OUT.h5; regions must be "
                        "sorted and their bins must not overlap")
    r.add_argument("--float16", action="store_true", help="store preds as float16")
    r.add_argument("--plot", help="name (or 0-based row) of a region to plot as OUTPUT stem + _NAME.png")
    r.add_argument("--measured-bigwig", nargs="+", default=[], help="measured tracks to plot under --plot")
    r.add_argument("--resume", action="store_true", help="continue the unfinished run in OUTPUT.partial/ "
                                                         "(a killed run; the same options)")
    g = sub.add_parser("genome", help="whole chromosomes -> one bigWig per track", description=(
        "Tile whole chromosomes with windows whose output bins abut and write one bigWig per track. Disk: "
        "while running, OUTPUT/.partial holds 4 bytes per output bin and track (human hg38 at 128 bp: ~24.1 M "
        "bins, ~97 MB per track, ~515 GB for all 5,313 tracks); each track's raw values are removed as its "
        "bigWig is written, so the run never needs more than that plus the finished bigWigs. A killed run "
        "continues with --resume."))
    _common(g)
    g.add_argument("--chrom", nargs="+", required=True, help="chromosomes to tile")
    g.add_argument("--tracks", nargs="+", required=True, help="tracks: indices, identifiers or assays")
    g.add_argument("--output", required=True, help="directory for {track}.bw")
    g.add_argument("--bedgraph", action="store_true", help="also {track}.bedGraph")
    g.add_argument("--resume", action="store_true", help="continue the unfinished run in OUTPUT/.partial")
    return p.parse_args(argv)


def track_names(n: int, targets: list[dict] | None) -> tuple[list[str], list[str]]:
    """(names, descriptions) of a head's tracks: identifiers, `ASSAY:identifier` where identifiers repeat
    (a fine-tuned ATAC + RNA head), `t<i>` without a targets table."""
    from jax_basenji.tracks import track_table

    rows = track_table(n, targets)
    return [r["label"] for r in rows], [r["description"] for r in rows]


def file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


@dataclasses.dataclass
class Head:
    """A checkpoint's head as the flags ask for it: predictor, track table and the selected columns."""

    predictor: Predictor
    targets: list | None  # targets.txt rows: --targets-txt, else the checkpoint's record
    names: list[str]  # [tracks] unambiguous track names (jax_basenji.tracks.track_table labels)
    descriptions: list[str]
    columns: list[int] | None  # --tracks, None for all


def load_head(args, layer: str = "head", *, n_value: float | None = None, shift_pad: float | None = None) -> Head:
    """--checkpoint/--head/--precision/--n-value/--rc/--shifts/--targets-txt/--tracks -> `Head`; `n_value`
    (instead of --n-value) and `shift_pad` set a command's own N conventions (`Ensemble.shift_pad`)."""
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    predictor, meta = load_predictor(args.checkpoint, args.head, ensemble_from_args(args, shift_pad),
                                     precision=args.precision, n_value=args.n_value if n_value is None else n_value,
                                     layer=layer, devices=getattr(args, "devices", None))
    return Head(predictor, *head_tracks(meta, predictor.model.cfg, args))


def head_tracks(meta: dict, cfg: ModelConfig, args) -> tuple[list | None, list[str], list[str], list[int] | None]:
    """(targets rows, track names, descriptions, --tracks columns) of --head, from the checkpoint's record
    or --targets-txt: all a command needs to check its options before the model loads."""
    from jax_basenji.tracks import head_targets, select_tracks

    if args.head not in cfg.head_tracks:
        raise InputError(f"unknown head {args.head!r}; this checkpoint has {sorted(cfg.head_tracks)}")
    targets = head_targets(meta, args.head, args.targets_txt)
    names, descriptions = track_names(cfg.head_tracks[args.head], targets)
    return targets, names, descriptions, select_tracks(names, args.tracks, targets) if args.tracks else None


def _setup(args) -> tuple[Predictor, Genome, Geometry, list[str], list[str], list[int] | None, list | None]:
    head = load_head(args, getattr(args, "embed", None) or "head")
    return (head.predictor, Genome(args.fasta), Geometry.of(head.predictor.model.cfg), head.names,
            head.descriptions, head.columns, head.targets)


def run_regions(args) -> str:
    from jax_basenji.checkpoint import read_meta
    from jax_basenji.geometry import centred_window
    from jax_basenji.predict.plot import plot_path
    from jax_basenji.predict.regions import (bigwig_entries, bigwig_path, check_chromosomes, partial_dir,
                                             predict_regions, read_regions, regions_to_bigwigs, warn_past_end)
    from jax_basenji.resume import refuse_existing, resuming
    from jax_basenji.tracks import select_tracks

    # Every option and output is checked before the model loads: a refused run writes nothing.
    missing = [p for p in args.measured_bigwig if not os.path.isfile(p)]
    if missing:
        raise InputError(f"--measured-bigwig {missing[0]} is missing")
    if args.bigwig_tracks and args.sum:
        raise InputError("--bigwig-tracks needs the bins: leave out --sum")
    if args.plot is not None and args.sum:
        raise InputError("--plot needs the bins: leave out --sum")
    if args.embed and (args.tracks or args.bigwig_tracks):
        raise InputError("--embed writes a layer's channels: --tracks and --bigwig-tracks select head tracks")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    meta = read_meta(args.checkpoint)
    cfg = ModelConfig.from_dict(meta["model_config"])
    targets, ids, labels, columns = head_tracks(meta, cfg, args)
    genome, geo = Genome(args.fasta), Geometry.of(cfg)
    regions = read_regions(args.bed)
    check_chromosomes(regions, genome, args.bed)
    site = geo.site(args.site_length)
    plotted = _plotted_region(args.plot, regions, args.bed)
    written = list(range(len(ids))) if columns is None else columns
    wanted = select_tracks(ids, args.bigwig_tracks, targets) if args.bigwig_tracks else []
    absent = [ids[t] for t in wanted if t not in written]
    if absent:
        raise InputError(f"--bigwig-tracks {absent[0]} is not among the written --tracks")
    if wanted:  # sorted, non-overlapping bins: checked on the windows, before predicting
        starts = [geo.bin_start(centred_window(r.chrom, r.start, r.end, geo.length).start, site.start)
                  for r in regions]
        bigwig_entries(regions, starts, site.stop - site.start, geo.pool, args.bed)
    outputs = ([args.output] + [bigwig_path(args.output, file_name(ids[t])) for t in wanted]
               + ([plot_path(args.output, plotted)] if plotted is not None else []))
    refuse_inputs(outputs, [args.bed, args.fasta, args.fasta + ".fai", args.targets_txt, *args.measured_bigwig])
    refuse_existing(outputs, partial_dir(args.output), args.overwrite, args.resume)
    if args.embed:
        width = cfg.final_channels if args.embed == "final" else cfg.tower_channels[-1]
        ids = labels = [f"{args.embed}_{c}" for c in range(width)]
    warn_past_end(regions, genome, args.bed)
    # a resumed run rewrites the bigWigs the killed one may have written
    replace = args.overwrite or resuming(partial_dir(args.output), args.resume)
    predictor = load_head(args, args.embed or "head").predictor
    run = predict_regions(predictor, genome, regions, args.output, geo=geo, columns=columns,
                          target_ids=ids if columns is None else [ids[c] for c in columns],
                          target_labels=labels if columns is None else [labels[c] for c in columns],
                          site=site, total=args.sum, float16=args.float16, batch_size=args.batch_size,
                          settings={**run_settings(args, predictor), "embed": args.embed}, resume=args.resume,
                          overwrite=args.overwrite, progress=not args.no_progress)
    extra = []
    if wanted:
        extra = regions_to_bigwigs(args.output, regions, genome, [file_name(ids[t]) for t in wanted],
                                   [written.index(t) for t in wanted], args.bed, replace)
    if plotted is not None:
        from jax_basenji.predict.plot import plot_region

        extra.append(plot_region(args.output, args.plot, args.measured_bigwig, targets=targets))
    run.finish()
    return f"wrote {args.output}: preds {tuple(run.record['shape'])}" + "".join(f"\nwrote {p}" for p in extra)


def _plotted_region(plot: str | None, regions: list, bed: str) -> str | None:
    """The name of the region --plot asks for (a name, or a 0-based row); InputError if there is none."""
    if plot is None:
        return None
    if plot in {r.name for r in regions}:
        return plot
    if plot.isdigit() and int(plot) < len(regions):
        return regions[int(plot)].name
    raise InputError(f"--plot {plot!r} is neither a region name of {bed} nor a row")


def refuse_inputs(outputs: list[str], inputs: list[str | None]) -> None:
    """InputError if an output would replace one of the run's own input files (even with --overwrite)."""
    given = {os.path.realpath(p): p for p in inputs if p}
    for out in outputs:
        if os.path.realpath(out) in given:
            raise InputError(f"{out} is an input of this run ({given[os.path.realpath(out)]}); choose another "
                             f"--output")


def run_settings(args, predictor: Predictor) -> dict:
    """What a resumed run must share with the run it continues (beside its own outputs' options)."""
    return {"checkpoint": os.path.abspath(args.checkpoint), "head": args.head, "rc": args.rc,
            "shifts": list(args.shifts), "n_value": predictor.n_value, "precision": args.precision}


def run_genome(args) -> str:
    from jax_basenji.predict.genome import predict_genome

    predictor, genome, geo, ids, _, columns, _ = _setup(args)
    paths = predict_genome(predictor, genome, args.chrom, args.output, geo=geo, columns=columns,
                           names=[file_name(ids[c]) for c in columns], settings=run_settings(args, predictor),
                           batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
                           bedgraph=args.bedgraph, progress=not args.no_progress)
    return "\n".join(f"wrote {p}" for p in paths)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in MODES:
        return core.main(argv)
    args = parse_args(argv)
    print(run_regions(args) if args.mode == "regions" else run_genome(args))
    return 0
