"""The training loop: rounds of one optimizer step per species, validation, checkpoints and logs."""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jax_basenji.checkpoint import replace_checkpoint
from jax_basenji.config import ModelConfig
from jax_basenji.data import make_dataset
from jax_basenji.metrics import MetricsWriter, plot_curves
from jax_basenji.sharding import global_batch, local_batch_size, make_mesh, replicated
from jax_basenji.train.checkpoints import RunCheckpoints
from jax_basenji.train.selection import Selection
from jax_basenji.train.setup import resolve
from jax_basenji.train.validation import Validator
from jax_basenji.train_config import TrainConfig
from jax_basenji.trainer import Trainer

LOG_EVERY = 10  # rounds between training-loss lines in metrics.jsonl


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf."""


class TrainLog:
    """Training losses of the last `LOG_EVERY` rounds -> metrics.jsonl rows and the progress bar."""

    def __init__(self, species: tuple[str, ...], batch_size: int, writer: MetricsWriter, bar: tqdm):
        self.species, self.batch_size, self.writer, self.bar = species, batch_size, writer, bar
        self._reset()

    def _reset(self) -> None:
        self.losses = {s: [] for s in self.species}  # float losses, one per round
        self.groups = {s: [] for s in self.species}  # per-group losses of fine-tuning (device arrays)
        self.t0, self.seqs, self.data_wait = time.perf_counter(), 0, 0.0

    def next_batch(self, iterator):
        """The iterator's next batch, its waiting time counted (steps are dispatched asynchronously, so
        this is the time the device could not be fed)."""
        t = time.perf_counter()
        batch = next(iterator)
        self.data_wait += time.perf_counter() - t
        return batch

    def add_round(self, outs: dict[str, dict]) -> None:
        """`outs`: {species: train step output} of a round."""
        for s, out in outs.items():
            self.groups[s].append({k: v for k, v in out.items() if k.startswith("loss_")})
        self.seqs += self.batch_size * len(outs)
        self.bar.update()

    def add_losses(self, values: list[tuple[str, float]]) -> None:
        for s, loss in values:
            self.losses[s].append(loss)

    def flush(self, step: int) -> None:
        elapsed = time.perf_counter() - self.t0
        rate, wait = self.seqs / elapsed, self.data_wait / elapsed
        for s in self.species:
            if self.losses[s]:
                groups = {k: float(np.mean([float(g[k]) for g in self.groups[s]])) for k in self.groups[s][0]}
                self.writer.write({"step": step, "split": "train", "species": s,
                                   "loss": float(np.mean(self.losses[s])), **groups, "seq_per_s": rate,
                                   "data_wait_fraction": wait})
        self.bar.set_postfix({f"loss_{s}": f"{np.mean(v):.3f}" for s, v in self.losses.items() if v}
                             | {"seq/s": f"{rate:.1f}"})
        self._reset()


class FiniteGuard:
    """Stops the run on a non-finite loss, or non-finite weights before anything is checkpointed."""

    def __init__(self, ckpts: RunCheckpoints):
        self.ckpts = ckpts
        self.all_finite = jax.jit(lambda st: jax.tree.reduce(
            lambda a, b: a & b, jax.tree.map(lambda x: jnp.isfinite(x).all(), (st["params"], st["batch_stats"]))))

    def __call__(self, losses: list, step: int, state: dict | None = None) -> list[tuple[str, float]]:
        """The losses as floats; with `state`, its weights are checked too."""
        values = [(s, float(loss)) for s, loss in losses]
        bad = [(s, v) for s, v in values if not math.isfinite(v)]
        if state is not None and not bad and not bool(self.all_finite(state)):
            bad = [("weights", float("nan"))]
        if bad:
            good = self.ckpts.last_good()
            what = "weights became non-finite" if bad[0][0] == "weights" else f"training loss became {bad[0][1]}"
            raise NonFiniteLoss(f"{what} at round {step} ({bad[0][0]}); stopped. Last good checkpoint: "
                                f"{'none' if good is None else f'round {good}'} in {self.ckpts.latest.directory}")
        return values


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
    run = resolve(model_cfg, tc, sources, init)
    tc = tc.replace(n_value=run.n_value)
    trainer = Trainer(run.model_cfg, tc, mesh)
    local_bs = local_batch_size(tc.batch_size, mesh)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    iterators = {s: iter(make_dataset(src, batch_size=local_bs, seed=tc.seed + i, augment=tc.augment,
                                      workers=tc.workers, **shard))
                 for i, (s, src) in enumerate(run.train_src.items())}

    # Resuming compares the architecture only: precision and remat may change between runs.
    ckpts = RunCheckpoints(tc.workdir, {"model_config": trainer.cfg.architecture().to_dict(),
                                        "train_config": tc.to_dict()}, keep=tc.keep_checkpoints)
    restored = ckpts.restore(trainer.abstract_state())
    if restored is not None:
        start, state, positions, saved_selection = restored
        for s, it_state in positions.items():
            iterators[s].set_state(it_state)
        print(f"resumed from round {start} in {ckpts.latest.directory}", file=sys.stderr)
    else:
        start, state, saved_selection = 0, trainer.init_state(run.init_arrays, run.fresh_heads), None
    selection = Selection.for_run(tc, saved_selection)
    extra = {"train_config": tc.to_dict(), "n_value": tc.n_value}

    def save_model(name: str, **more) -> str:
        path = os.path.join(tc.workdir, name)
        if primary:
            replace_checkpoint(path, trainer.model_arrays(state), trainer.cfg, torch_new_head=torch_new_head,
                               extra={**extra, **more})
        return path

    writer = MetricsWriter(tc.workdir, enabled=primary)
    validate = Validator(trainer, run.valid_src, batch_size=local_bs, max_batches=tc.eval_batches,
                         mesh=mesh, shard=shard, progress=progress and primary)
    guard = FiniteGuard(ckpts)
    rep = replicated(mesh)
    bar = tqdm(total=tc.steps, initial=start, unit="round", disable=not (progress and primary), file=sys.stderr)
    log = TrainLog(tc.species, tc.batch_size, writer, bar)
    summary: dict = {}

    def run_validation(step: int) -> None:
        nonlocal summary
        summary, _ = validate(state)
        for s, row in summary.items():
            writer.write({"step": step, "split": "valid", "species": s, **row})

    pending: list = []  # the previous round's losses, read one round late: no device stall
    try:
        for r in range(start + 1, tc.steps + 1):
            if selection.stopped:
                break
            state["step"] = jax.device_put(np.int32(r), rep)
            outs = {}
            for s in tc.species:
                state, outs[s] = trainer.train_step(state, global_batch(log.next_batch(iterators[s]), mesh), head=s)
            log.add_losses(guard(pending, r - 1))
            pending = [(s, out["loss"]) for s, out in outs.items()]
            log.add_round(outs)
            if r % LOG_EVERY == 0 or r == tc.steps:
                log.flush(r)
            eval_due = (tc.eval_every and r % tc.eval_every == 0) or r == tc.steps
            ckpt_due = r % tc.checkpoint_every == 0 or r == tc.steps
            if eval_due or ckpt_due:
                guard(pending, r, state)  # never checkpoint a non-finite state
            if eval_due:
                run_validation(r)
                if selection.update(summary, r):
                    save_model("model_best", selection=selection.to_dict())
                bar.write(f"round {r}: " + "; ".join(
                    f"{s} valid loss {v['loss']:.4f} R {v['pearson_r']:.3f}" for s, v in summary.items()))
                if selection.stopped:
                    log.add_losses(guard(pending, r))
                    pending = []
                    log.flush(r)
                    bar.write(f"stopping early at round {r}: no improvement of {selection.describe()} in "
                              f"{selection.patience} validations (best {selection.best:.4f} at round "
                              f"{selection.round}, in {os.path.join(tc.workdir, 'model_best')})")
                    writer.write({"step": r, "split": "stop", "species": selection.species,
                                  "best": selection.best, "best_round": selection.round})
                    ckpt_due = True  # a re-run resumes here and trains no further
            if ckpt_due:
                ckpts.save_latest(r, state, {s: it.get_state() for s, it in iterators.items()},
                                  selection.to_dict())
        if not summary:  # resumed a finished or stopped run: report its final state
            run_validation(int(jax.device_get(state["step"])) or tc.steps)
    finally:
        bar.close()
        ckpts.close()
        writer.close()
    if primary:
        summary["model"] = save_model("model")
        summary["model_best"] = os.path.join(tc.workdir, "model_best")
        summary["selection"] = selection.to_dict()
        summary["plots"] = plot_curves(tc.workdir, validate.last_r)
    return summary
