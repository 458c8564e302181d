"""Fine-tuning: a new head on a pretrained trunk (docs/seed_reference.md), on the training engine.

  python -m jax_basenji.finetune --pretrained basenji2.pt --variant basenji2-double-prime \\
      --data atac=stores/atac rna=stores/rna --species mouse --workdir runs/ft \\
      --modality-weight rna=1 --log1p rna [--freeze heads|trunk] [jax_basenji.train's optimizer/run flags]

`--pretrained` is a jax_basenji checkpoint, a seed `.pt` (plain, DataParallel or
already fine-tuned), or the published Basenji2 as basenji2-pytorch's `.pth` or a
Keras `.h5` (`model_human.h5`). Each `--data` store (NAME=STORE, or STORE named after its
directory) holds the same regions for `--species`; their tracks are
concatenated in the order given and form one new head, `--head-name`
(default `finetune`), Linear(1536 -> tracks) + Softplus. The old heads are kept
and frozen. `--freeze heads` (the seed's) trains the trunk and the new head;
`--freeze trunk` trains the new head only, the trunk in eval mode.

With several stores (modalities) the loss is the seed's joint loss,
sum(weight x Poisson(modality)) / modalities, i.e. (w * L_rna + L_atac) / 2,
with log(x+1) applied to the targets of `--log1p` modalities. Joint and
per-modality losses and per-assay Pearson R go to metrics.jsonl / TensorBoard.
A checkpoint that already has the head (a seed fine-tuned `.pt`, or an earlier
run) continues training it; re-running in the same workdir resumes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax

from jax_basenji.cli import InputError, Parser, one_line_errors
from jax_basenji.config import GELU_FORMS, SEED_VARIANTS, VARIANTS, ModelConfig
from jax_basenji.convert.foreign import WIDTHS
from jax_basenji.data import BasenjiSource, ConcatSource
from jax_basenji.train import (NonFiniteLoss, add_train_flags, initial_arrays, maybe_initialize_distributed,
                               parse_with_recipe, train, train_config_from_args)


def named_stores(items: list[str]) -> list[tuple[str, str]]:
    """['atac=path', 'path/rna'] -> [('atac', 'path'), ('rna', 'path/rna')]; names must differ."""
    pairs = [tuple(i.split("=", 1)) if "=" in i else (os.path.basename(os.path.normpath(i)), i) for i in items]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"--data names must differ, got {names}; write NAME=STORE")
    return pairs


def load_pretrained(path: str, variant: str | None, widths: str = "basenji2",
                    gelu: str | None = None) -> tuple[dict, ModelConfig]:
    """Arrays and config of a checkpoint directory, a seed `.pt`, a basenji2-pytorch `.pth` or a Keras `.h5`.

    A seed `.pt` needs `variant` (its weights cannot tell Basenji2' from
    Basenji2''); the published files are recognised (`.h5`, `model.trunk.*` keys).
    A seed fine-tuned `.pt` gets its new head as `finetune`.
    """
    if os.path.isdir(path):
        if variant or gelu or widths != "basenji2":
            raise InputError(f"{path} is a checkpoint directory: it records its architecture; "
                             "--variant, --widths and --gelu apply to foreign files only")
        return initial_arrays(path, ModelConfig())
    from jax_basenji.convert.foreign import read_weights, width_preset

    def base_for(v: str | None) -> ModelConfig:
        if v is None:
            raise InputError(f"{path} is a seed torch checkpoint: pass --variant ({' or '.join(SEED_VARIANTS)}); "
                             "the weights cannot tell the variants apart")
        base = width_preset(v, widths)
        return base.replace(gelu=gelu) if gelu else base

    arrays, cfg, _ = read_weights(path, variant, base_for)
    return arrays, cfg


def modalities(stores: list[tuple[str, int]], weights: dict[str, float], log1p: list[str]) -> tuple:
    """TrainConfig.modalities for (name, tracks) stores; () for one plain store.

    Modality names match case-insensitively (`--log1p RNA` names `rna=STORE`), as assay names do
    in `evaluate`; a name that matches no modality is an error."""
    names = [n for n, _ in stores]
    weights = {k.lower(): v for k, v in weights.items()}
    log1p = {k.lower() for k in log1p}
    unknown = sorted((set(weights) | log1p) - {n.lower() for n in names})
    if unknown:
        raise InputError(f"--modality-weight/--log1p name {unknown}; the --data modalities are {names}")
    if len(stores) == 1 and not weights and not log1p:
        return ()
    return tuple((n, t, weights.get(n.lower(), 1.0), n.lower() in log1p) for n, t in stores)


def store_species(stores: list[tuple[str, str]]) -> str:
    """The one species directory the stores hold (no default species: a human data set must not be read as
    mouse); InputError naming the choices otherwise."""
    missing = [path for _, path in stores if not os.path.isdir(path)]
    if missing:
        raise InputError(f"--data {missing[0]}: no such store directory")
    found = sorted({d for _, path in stores for d in os.listdir(path)
                    if os.path.isfile(os.path.join(path, d, "meta.json"))})
    if len(found) != 1:
        raise InputError(f"--species: the --data stores hold {found or 'no species directory'}; name one")
    return found[0]


def finetune(args: argparse.Namespace) -> dict:
    stores = named_stores(args.data)
    head = args.head_name
    species = args.species or store_species(stores)

    def source(subset: str) -> ConcatSource:
        return ConcatSource([BasenjiSource(path, species, subset) for _, path in stores],
                            names=[name for name, _ in stores])

    sources = {head: (source("train"), source("valid"))}
    counts = [(name, s.num_targets) for (name, _), s in zip(stores, sources[head][0].sources)]
    tracks = sum(t for _, t in counts)

    arrays, cfg = load_pretrained(args.pretrained, args.variant, args.widths, args.gelu)
    if head in cfg.head_tracks:
        if cfg.head_tracks[head] != tracks:
            raise InputError(f"{args.pretrained}: head {head!r} has {cfg.head_tracks[head]} tracks; the data have "
                             f"{tracks} ({', '.join(f'{n} {t}' for n, t in counts)})")
        fresh = ()
    else:
        cfg = cfg.replace(heads=(*cfg.heads, (head, tracks)))
        fresh = (head,)
    weights = {}
    for item in args.modality_weight:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise InputError(f"--modality-weight expects NAME=NUMBER, got {item!r}") from None
    tc = train_config_from_args(
        args, species=(head,), data=",".join(f"{n}={p}" for n, p in stores), init_from=args.pretrained,
        freeze="trunk" if args.freeze == "trunk" else "none", modalities=modalities(counts, weights, args.log1p))
    if args.epochs is not None:
        if args.epochs <= 0:
            raise InputError(f"--epochs must be positive, got {args.epochs}")
        tc = tc.replace(steps=max(1, math.ceil(args.epochs * len(sources[head][0]) / tc.batch_size)))
    return train(cfg, tc, progress=not args.no_progress, sources=sources, init=(arrays, cfg, fresh),
                 torch_new_head=head)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = Parser(prog="python -m jax_basenji.finetune", description=__doc__)
    p.add_argument("--pretrained", required=True,
                   help="jax_basenji checkpoint directory, seed .pt, basenji2-pytorch .pth or Keras .h5")
    p.add_argument("--variant", choices=VARIANTS,
                   help="architecture of a seed .pt (required there; the published files are recognised)")
    p.add_argument("--widths", choices=WIDTHS, default="basenji2",
                   help="layer widths of a file: the real Basenji2 (default) or the tiny test preset")
    p.add_argument("--gelu", choices=GELU_FORMS,
                   help="GELU form for a published file (default sigmoid, the Keras model's; erf = basenji2-pytorch's)")
    p.add_argument("--data", nargs="+", required=True, metavar="[NAME=]STORE",
                   help="converted stores over the same regions; tracks concatenated in this order")
    p.add_argument("--species", help="species directory inside each store (default: the stores' only one)")
    p.add_argument("--head-name", default="finetune", help="name of the new head (default finetune)")
    p.add_argument("--freeze", choices=["heads", "trunk"], default="heads",
                   help="heads: train trunk + new head (the seed's); trunk: train the new head only")
    p.add_argument("--modality-weight", nargs="+", default=[], metavar="NAME=W",
                   help="loss weight of a modality, NAME=W (default 1 for each)")
    p.add_argument("--log1p", nargs="+", default=[], metavar="NAME", help="modalities with log(x+1) targets")
    # The architecture comes from --pretrained; the input length from the data.
    add_train_flags(p, exclude=("data", "model", "species", "init-from", "seq-length", "fasta"))
    p.set_defaults(workdir="runs/finetune")
    return parse_with_recipe(p, argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    maybe_initialize_distributed(args)
    try:
        summary = finetune(args)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if jax.process_index() == 0:
        s = summary[args.head_name]
        groups = ", ".join(f"{k[5:]} {v:.4f}" for k, v in s.items() if k.startswith("loss_"))
        print(f"{args.head_name}: validation loss {s['loss']:.4f}{f' ({groups})' if groups else ''}, "
              f"Pearson R {s['pearson_r']:.3f} "
              f"(per assay: {', '.join(f'{k} {v:.3f}' for k, v in s['pearson_r_by_assay'].items())})")
        print(f"plots: {', '.join(summary['plots'])}; model: {summary['model']} (last state), "
              f"{summary['model_best']} (best {summary['selection']['metric']}, round "
              f"{summary['selection']['round']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
