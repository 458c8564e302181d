"""Training: `python -m jax_basenji.train` (no arguments: the embedded demo).

  python -m jax_basenji.train --data STORE --workdir runs/exp --model basenji2-double-prime \\
      --species human mouse --batch-size 4 --steps 100000 --lr 0.15 --momentum 0.99 --clip-norm 2

Each round takes one batch per species (human then mouse, as the seed), one
optimizer step each through the species' head. Data parallel over every
device of every process (see jax_basenji.sharding). Re-running in the same
workdir resumes from the latest checkpoint, data position included.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from jax_basenji import checkpoint
from jax_basenji.checkpoint import CheckpointError
from jax_basenji.cli import InputError, one_line_errors
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource, make_dataset
from jax_basenji.metrics import MetricsWriter, PearsonSums, assays, by_assay, plot_curves
from jax_basenji.sharding import global_batch, local_batch_size, make_mesh, replicated
from jax_basenji.train_config import TrainConfig
from jax_basenji.trainer import Trainer

LOG_EVERY = 10  # rounds between training-loss lines in metrics.jsonl


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf."""


def initial_arrays(path: str, base: ModelConfig) -> tuple[dict, ModelConfig]:
    """Weights to start from: a jax_basenji checkpoint, a torch `.pt`/`.pth` or a Keras `.h5` (-> arrays, config)."""
    if os.path.isdir(path):
        arrays, cfg, _ = checkpoint.load_arrays(path)
        return arrays, cfg.replace(seq_length=base.seq_length)
    from jax_basenji.convert.foreign import read_weights

    arrays, cfg, _ = read_weights(path, base.variant, lambda _: base)
    return arrays, cfg


def _config_diff(saved: dict, current: dict) -> list[str]:
    return [f"{k}={saved.get(k)!r} (now {current.get(k)!r})" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]


def train(model_cfg: ModelConfig, tc: TrainConfig, *, progress: bool = True,
          sources: dict | None = None, init: tuple[dict, ModelConfig, tuple[str, ...]] | None = None,
          torch_new_head: str | None = None) -> dict:
    """Run (or resume) training; returns the last validation summary per species.

    By default the data are `tc.data`'s stores of `tc.species` and the weights
    come from `tc.init_from` (or a fresh init). Fine-tuning passes its own
    `sources` ({species or head: (train source, valid source)}) and `init`
    (arrays, model config with every head, heads that start from random init),
    and names the head that jax-to-torch conversion writes as the seed's `new_head`.
    """
    mesh = make_mesh()
    primary = jax.process_index() == 0
    os.makedirs(tc.workdir, exist_ok=True)
    if sources is None:
        fasta = dict(tc.fasta)
        sources = {s: tuple(BasenjiSource(tc.data, s, subset, seq_length=tc.seq_length, fasta=fasta.get(s))
                            for subset in ("train", "valid")) for s in tc.species}
    train_src = {s: pair[0] for s, pair in sources.items()}
    valid_src = {s: pair[1] for s, pair in sources.items()}
    length = train_src[tc.species[0]].seq_length
    fresh_heads: tuple[str, ...] = ()
    if init is not None:
        init_arrays, model_cfg, fresh_heads = init
        model_cfg = model_cfg.replace(seq_length=length)
    elif tc.init_from:
        init_arrays, model_cfg = initial_arrays(tc.init_from, model_cfg.replace(seq_length=length))
    else:
        init_arrays = None
        model_cfg = model_cfg.replace(seq_length=length,
                                      heads=tuple((s, train_src[s].num_targets) for s in tc.species))
    # Run options apply whatever the initial weights (fresh, checkpoint, .pt, .pth, .h5).
    model_cfg = model_cfg.replace(remat=tc.remat, **({"bn_momentum": tc.bn_momentum}
                                                      if tc.bn_momentum is not None else {}))
    for s, src in train_src.items():
        bins = model_cfg.output_bins(src.seq_length)
        if (bins, model_cfg.head_tracks.get(s)) != src.target_shape:
            raise InputError(f"{s} data: targets are {src.target_shape} (bins, tracks); the model "
                             f"gives {bins} bins x {model_cfg.head_tracks.get(s)} tracks at {src.seq_length} bp")
    trainer = Trainer(model_cfg, tc, mesh)
    local_bs = local_batch_size(tc.batch_size, mesh)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    datasets = {s: make_dataset(src, batch_size=local_bs, seed=tc.seed + i, augment=tc.augment,
                                workers=tc.workers, **shard) for i, (s, src) in enumerate(train_src.items())}
    iterators = {s: iter(ds) for s, ds in datasets.items()}

    # Resuming compares the architecture only: precision and remat may change between runs.
    meta = {"model_config": trainer.cfg.architecture().to_dict(), "train_config": tc.to_dict()}
    ckpt_dir = os.path.abspath(os.path.join(tc.workdir, "checkpoints"))
    latest = ocp.CheckpointManager(os.path.join(ckpt_dir, "latest"), options=ocp.CheckpointManagerOptions(
        max_to_keep=1, enable_async_checkpointing=True))
    best = ocp.CheckpointManager(os.path.join(ckpt_dir, "best"), options=ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda m: m["valid_loss"], best_mode="min"))
    start = latest.latest_step()
    if start is not None:
        saved = latest.restore(start, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        saved_arch = ModelConfig.from_dict(saved["model_config"]).architecture().to_dict()
        diff = _config_diff(saved_arch, meta["model_config"])
        if diff:
            raise CheckpointError(f"{tc.workdir} holds a checkpoint of another model config: {', '.join(diff)}")
        restored = latest.restore(start, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(trainer.abstract_state()), data=ocp.args.JsonRestore()))
        state = restored["state"]
        for s, it_state in restored["data"].items():
            iterators[s].set_state(it_state)
        print(f"resumed from round {start} in {ckpt_dir}", file=sys.stderr)
    else:
        start = 0
        state = trainer.init_state(init_arrays, fresh_heads)

    writer = MetricsWriter(tc.workdir, enabled=primary)
    track_assays = {s: assays(src.targets) for s, src in train_src.items()}
    rep = replicated(mesh)
    all_finite = jax.jit(lambda st: jax.tree.reduce(
        lambda a, b: a & b, jax.tree.map(lambda x: jnp.isfinite(x).all(), (st["params"], st["batch_stats"]))))
    summary: dict = {}
    last_r: dict = {}

    def save_latest(r: int) -> None:
        latest.save(r, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
            data=ocp.args.JsonSave({s: it.get_state() for s, it in iterators.items()})))

    def evaluate(r: int) -> float:
        total = 0.0
        for s, src in valid_src.items():
            sums = PearsonSums()
            ds = make_dataset(src, batch_size=local_bs, shuffle=False, num_epochs=1, **shard)
            for k, batch in enumerate(ds):
                if k >= tc.eval_batches:
                    break
                sums.add(trainer.eval_step(state, global_batch(batch, mesh), head=s))
            r_tracks = sums.pearson_r()
            last_r[s] = r_tracks
            summary[s] = {**sums.losses, "pearson_r": float(np.nanmean(r_tracks)),
                          "pearson_r_by_assay": by_assay(r_tracks, track_assays[s])}
            writer.write({"step": r, "split": "valid", "species": s, **summary[s]})
            total += sums.loss
        return total / len(valid_src)

    def check(losses: list, r: int, params: bool = False) -> list[tuple[str, float]]:
        """Stop on a non-finite loss (or, before a checkpoint, non-finite weights); returns the losses as floats."""
        values = [(s, float(loss)) for s, loss in losses]
        bad = [(s, v) for s, v in values if not math.isfinite(v)]
        if params and not bad and not bool(all_finite(state)):
            bad = [("weights", float("nan"))]
        if bad:
            good = latest.latest_step()
            what = "weights became non-finite" if bad[0][0] == "weights" else f"training loss became {bad[0][1]}"
            raise NonFiniteLoss(f"{what} at round {r} ({bad[0][0]}); stopped. Last good checkpoint: "
                                f"{'none' if good is None else f'round {good}'} in {os.path.join(ckpt_dir, 'latest')}")
        return values

    bar = tqdm(total=tc.steps, initial=start, unit="round", disable=not (progress and primary), file=sys.stderr)
    pending, window, t0, seqs = [], {s: [] for s in tc.species}, time.perf_counter(), 0
    group_losses = {s: [] for s in tc.species}  # per-group losses of the log window (fine-tuning)
    try:
        for r in range(start + 1, tc.steps + 1):
            state["step"] = jax.device_put(np.int32(r), rep)
            losses = []
            for s in tc.species:
                state, out = trainer.train_step(state, global_batch(next(iterators[s]), mesh), head=s)
                losses.append((s, out["loss"]))
                group_losses[s].append({k: v for k, v in out.items() if k.startswith("loss_")})
            for s, loss in check(pending, r - 1):  # the previous round's losses: no device stall
                window[s].append(loss)
            pending = losses
            seqs += tc.batch_size * len(tc.species)
            bar.update()
            if r % LOG_EVERY == 0 or r == tc.steps:
                rate = seqs / (time.perf_counter() - t0)
                for s in tc.species:
                    if window[s]:
                        groups = {k: float(np.mean([float(g[k]) for g in group_losses[s]]))
                                  for k in group_losses[s][0]}
                        writer.write({"step": r, "split": "train", "species": s,
                                      "loss": float(np.mean(window[s])), **groups, "seq_per_s": rate})
                bar.set_postfix({f"loss_{s}": f"{np.mean(window[s]):.3f}" for s in tc.species if window[s]}
                                | {"seq/s": f"{rate:.1f}"})
                window, t0, seqs = {s: [] for s in tc.species}, time.perf_counter(), 0
                group_losses = {s: [] for s in tc.species}
            eval_due = (tc.eval_every and r % tc.eval_every == 0) or r == tc.steps
            ckpt_due = r % tc.checkpoint_every == 0 or r == tc.steps
            if eval_due or ckpt_due:
                check(pending, r, params=True)  # never checkpoint a non-finite state
            if ckpt_due:
                save_latest(r)
            if eval_due:
                valid_loss = evaluate(r)
                best.save(r, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)),
                          metrics={"valid_loss": valid_loss})
                bar.write(f"round {r}: " + "; ".join(
                    f"{s} valid loss {v['loss']:.4f} R {v['pearson_r']:.3f}" for s, v in summary.items()))
        if not summary:  # resumed a finished run: report its final state
            evaluate(tc.steps)
    finally:
        bar.close()
        latest.wait_until_finished()
        best.wait_until_finished()
        writer.close()
    if primary:
        model_dir = os.path.join(tc.workdir, "model")
        checkpoint.save_arrays(model_dir, trainer.model_arrays(state), trainer.cfg, overwrite=True,
                               torch_new_head=torch_new_head, extra={"train_config": tc.to_dict()})
        summary["plots"] = plot_curves(tc.workdir, last_r)
        summary["model"] = model_dir
    return summary


# ----- the embedded demo ----------------------------------------------------------------
DEMO_CACHE = os.path.join("runs", "cache")
DEMO_SYNTH = dict(seq_length=16_384, tracks={"human": 8, "mouse": 4},
                  examples=(("train", 1024), ("valid", 32), ("test", 32)))


def demo_data(progress: bool = True) -> str:
    """Synthetic data set (generated and converted once, then cached); returns the store."""
    from jax_basenji.data.store import convert
    from jax_basenji.data.synth import SynthConfig, synth

    basenji, store = os.path.join(DEMO_CACHE, "synth-v2"), os.path.join(DEMO_CACHE, "store-v2")
    if not os.path.exists(os.path.join(store, "mouse", "test", "index.json")):
        cfg = SynthConfig(seq_length=DEMO_SYNTH["seq_length"], examples=DEMO_SYNTH["examples"])
        synth(basenji, DEMO_SYNTH["tracks"], cfg, progress=progress)
        convert(basenji, store, progress=progress)
    return store


def demo_configs() -> tuple[ModelConfig, TrainConfig]:
    """tiny model, Adam at 1e-2 (1e-3 learns ~10x slower): a few CPU minutes."""
    tc = TrainConfig(data="", workdir=os.path.join("runs", "demo_train"), optimizer="adam", lr=1e-2,
                     momentum=0.9, warmup_steps=50, schedule="cosine", steps=1200, batch_size=8,
                     eval_every=600, eval_batches=4, checkpoint_every=600)
    return ModelConfig.tiny(), tc


# ----- command line ----------------------------------------------------------------------
# Named training recipes: `--recipe NAME` sets these flags unless they are given.
RECIPES = {
    # Kelley 2020 (the published model's training): SGD 0.15, momentum 0.99, clip 2, batch 4,
    # and Keras' BatchNorm momentum 0.9, which is 0.1 in torch's convention.
    "paper": dict(optimizer="sgd", lr=0.15, momentum=0.99, clip_norm=2.0, batch_size=4, bn_momentum=0.1),
    # The seed's pre-training script: SGD lr 1e-4, momentum 0.99, batch 4, its --bn_momentum
    # 0.99 passed to torch as is; it names no gradient clipping.
    "seed": dict(optimizer="sgd", lr=1e-4, momentum=0.99, clip_norm=0.0, batch_size=4, bn_momentum=0.99),
}


def parse_with_recipe(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`; a `--recipe` sets the defaults of the flags it names first."""
    known, _ = p.parse_known_args(argv)
    if getattr(known, "recipe", None):
        p.set_defaults(**RECIPES[known.recipe])
    return p.parse_args(argv)


def add_train_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """The training flags (shared with jax_basenji.finetune, which leaves out `exclude`).

    Without --recipe the defaults are the paper's optimizer (SGD 0.15, momentum 0.99, clip 2,
    batch 4) with BatchNorm momentum 0.9 in torch's convention (the seed's evaluation value).
    """
    d = TrainConfig()
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="paper: SGD 0.15, momentum 0.99, clip 2, batch 4, BatchNorm momentum 0.1 (Keras 0.9); "
                        "seed: SGD 1e-4, momentum 0.99, no clipping, batch 4, BatchNorm momentum 0.99. "
                        "Flags given explicitly win. Default: the paper's optimizer with BatchNorm momentum 0.9")

    def a(flag, **kw):
        if flag.lstrip("-") not in exclude:
            p.add_argument(flag, **kw)

    a("--data", help="converted store (python -m jax_basenji.data convert); required unless demo")
    a("--workdir", default=d.workdir, help="checkpoints, metrics.jsonl, TensorBoard events, PNG plots")
    a("--model", default="basenji2-double-prime",
      choices=["basenji2-double-prime", "basenji2-prime", "basenji2", "tiny", "tiny-basenji2"],
      help="architecture preset: the seed's Basenji2'' / Basenji2', the published Basenji2 (Keras form), "
           "or tiny widths of either form (heads are sized from the data)")
    a("--species", nargs="+", default=list(d.species), help="species trained alternately (default human mouse)")
    a("--batch-size", type=int, default=d.batch_size, help="global batch per species (default 4)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int, help=f"training rounds (default {d.steps})")
    steps.add_argument("--epochs", type=float, help="training length in passes over the first species' data")
    a("--optimizer", default=d.optimizer, choices=["sgd", "adam", "adamw"], help="default sgd (the seed's)")
    a("--lr", type=float, default=d.lr, help="peak learning rate (default 0.15, the paper's)")
    a("--momentum", type=float, default=d.momentum,
      help="SGD momentum, or Adam's b1 with adam/adamw (default 0.99, the seed's SGD value; Adam usually 0.9)")
    a("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up rounds")
    a("--schedule", default=d.schedule, choices=["constant", "cosine"], help="after warm-up")
    a("--clip-norm", type=float, default=d.clip_norm, help="global gradient-norm clip (default 2; 0 = off)")
    a("--weight-decay", type=float, default=d.weight_decay, help="decoupled for adamw, L2 otherwise")
    a("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
      help="random reverse complement and +-3 bp shift (default on)")
    a("--seq-length", type=int, help="input bp; other than the stored length needs --fasta")
    a("--fasta", nargs="+", default=[], metavar="SPECIES=FASTA", help="genome per species for --seq-length")
    a("--precision", default=d.precision, choices=["fp32", "bf16"],
      help="bf16: bf16 convolutions, fp32 params, BN statistics and loss")
    a("--remat", action="store_true", help="recompute block activations in the backward pass (memory)")
    a("--bn-momentum", type=float, help="BatchNorm momentum, PyTorch semantics (default: the preset's, 0.9 "
                                        "for the seed's, 0.1 = Keras' 0.9 for basenji2)")
    a("--seed", type=int, default=d.seed, help="initialisation, data order, augmentation, dropout")
    a("--eval-every", type=int, default=d.eval_every, help="rounds between validations")
    a("--eval-batches", type=int, default=d.eval_batches, help="validation batches per species")
    a("--checkpoint-every", type=int, default=d.checkpoint_every, help="rounds between latest checkpoints")
    a("--init-from", help="initial weights: a jax_basenji checkpoint directory, a seed .pt, or for "
                          "--model basenji2 a basenji2-pytorch .pth or Keras .h5")
    a("--workers", type=int, default=d.workers, help="data worker processes per species (0: in-process)")
    a("--coordinator-address", help="host:port of process 0 for multi-process runs (or set up by SLURM)")
    a("--num-processes", type=int, help="processes in a multi-process run")
    a("--process-id", type=int, help="this process's index in a multi-process run")
    a("--no-progress", action="store_true", help="no progress bar")


def train_config_from_args(args: argparse.Namespace, **fixed) -> TrainConfig:
    """TrainConfig from parsed training flags; `fixed` fields override them."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and k not in ("steps", "fasta")}
    fasta = dict(item.split("=", 1) for item in getattr(args, "fasta", []))
    steps = TrainConfig().steps if getattr(args, "steps", None) is None else args.steps
    return TrainConfig(**{**values, "fasta": tuple(fasta.items()), "steps": steps, **fixed})


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jax_basenji.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_flags(p)
    return parse_with_recipe(p, argv)


def maybe_initialize_distributed(args) -> None:
    """jax.distributed for multi-process runs: explicit flags, or SLURM's environment."""
    if args.num_processes and args.num_processes > 1:
        jax.distributed.initialize(coordinator_address=args.coordinator_address,
                                   num_processes=args.num_processes, process_id=args.process_id)
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()  # reads the SLURM environment


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        model_cfg, tc = demo_configs()
        print("jax_basenji demo: synthetic Basenji data (16 kb, human 8 + mouse 4 tracks), tiny model, "
              f"{tc.steps} rounds on CPU", file=sys.stderr)
        tc = tc.replace(data=demo_data())
        if os.path.exists(tc.workdir):  # the demo always starts afresh, and says what it removes
            print(f"removing the previous demo run {os.path.abspath(tc.workdir)}", file=sys.stderr)
            shutil.rmtree(tc.workdir)
        summary = train(model_cfg, tc)
        for s in tc.species:
            print(f"{s}: validation Pearson R {summary[s]['pearson_r']:.3f} "
                  f"(per assay: {', '.join(f'{k} {v:.3f}' for k, v in summary[s]['pearson_r_by_assay'].items())})")
        print(f"plots: {', '.join(summary['plots'])}\nmodel: {summary['model']} "
              f"(python -m jax_basenji.predict --checkpoint {summary['model']} ...)")
        return 0 if min(summary[s]["pearson_r"] for s in tc.species) >= 0.5 else 1
    args = parse_args(argv)
    if not args.data:
        raise InputError("--data is required (or run without arguments for the demo)")
    maybe_initialize_distributed(args)
    model_cfg = ModelConfig.preset(args.model)
    tc = train_config_from_args(args)
    if args.epochs is not None:
        if args.epochs <= 0:
            raise InputError(f"--epochs must be positive, got {args.epochs}")
        n = len(BasenjiSource(args.data, tc.species[0], "train"))
        tc = tc.replace(steps=max(1, math.ceil(args.epochs * n / tc.batch_size)))
    try:
        summary = train(model_cfg, tc, progress=not args.no_progress)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if jax.process_index() == 0:
        for s in tc.species:
            print(f"{s}: validation loss {summary[s]['loss']:.4f}, Pearson R {summary[s]['pearson_r']:.3f}")
        print(f"plots: {', '.join(summary['plots'])}; model: {summary['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
