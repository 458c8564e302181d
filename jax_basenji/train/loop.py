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
from jax_basenji.data.pipeline import make_train_iterator
from jax_basenji.metrics import MetricsWriter, plot_curves
from jax_basenji.sharding import global_batch, local_batch_size, make_mesh, replicated_value
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

    def __init__(self, species: tuple[str, ...], batch_size: int, writer: MetricsWriter, bar: tqdm,
                 row_names: dict[str, dict] | None = None):
        self.species, self.batch_size, self.writer, self.bar = species, batch_size, writer, bar
        self.row_names = row_names or {s: {"species": s, "head": s} for s in species}
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
                groups = ({k: float(np.mean([float(g[k]) for g in self.groups[s]])) for k in self.groups[s][0]}
                          if self.groups[s] else {})
                self.writer.write({"step": step, "split": "train", **self.row_names[s],
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


def train_iterator(src, tc: TrainConfig, batch_size: int, seed: int, shard: dict):
    """One species' training batches: `tc.data_threads` threads copying store rows into batch buffers,
    augmented in the jitted step; with `tc.workers`, grain's host-augmented path in worker processes
    (the same batches, much slower: docs/benchmarks.md, "Input pipeline (issue 14)")."""
    if tc.workers:
        return iter(make_dataset(src, batch_size=batch_size, seed=seed, augment=tc.augment, workers=tc.workers,
                                 **shard))
    return make_train_iterator(src, batch_size=batch_size, seed=seed, augment=tc.augment, threads=tc.data_threads,
                               **shard)


class TrainingRun:
    """One run's live parts: train state, data iterators, checkpoints, logs and model selection."""

    def __init__(self, model_cfg: ModelConfig, tc: TrainConfig, *, progress: bool, sources: dict | None,
                 init: tuple | None, torch_new_head: str | None):
        self.mesh, self.primary = make_mesh(), jax.process_index() == 0
        os.makedirs(tc.workdir, exist_ok=True)
        setup = resolve(model_cfg, tc, sources, init)
        self.tc = tc = tc.replace(n_value=setup.n_value)
        # Reverse complements happen in the step (batches of make_train_iterator): it needs the strand pairs.
        pairs = {s: getattr(src, "strand_pair", None) for s, src in setup.train_src.items()}
        self.trainer = Trainer(setup.model_cfg, tc, self.mesh, strand_pairs=pairs)
        self.torch_new_head = torch_new_head
        # Every head's targets table goes into its model checkpoints (those trained here, and the frozen
        # heads' from the initial weights): evaluate, predict and variants name and select tracks by it.
        self.head_targets = {**setup.inherited_targets, **{s: src.targets for s, src in setup.train_src.items()
                                                           if getattr(src, "targets", None)}}
        local_bs = local_batch_size(tc.batch_size, self.mesh)
        shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
        self.iterators = {s: train_iterator(src, tc, local_bs, tc.seed + i, shard)
                          for i, (s, src) in enumerate(setup.train_src.items())}
        # Resuming compares the architecture only: precision and remat may change between runs.
        self.ckpts = RunCheckpoints(tc.workdir, {"model_config": self.trainer.cfg.architecture().to_dict(),
                                                 "train_config": tc.to_dict()}, keep=tc.keep_checkpoints)
        self.start, self.state, saved_selection = self._restore_or_init(setup)
        self.selection = Selection.for_run(tc, saved_selection)
        self.writer = MetricsWriter(tc.workdir, enabled=self.primary)
        self.validator = Validator(self.trainer, setup.valid_src, batch_size=local_bs, max_batches=tc.eval_batches,
                                   mesh=self.mesh, shard=shard, progress=progress and self.primary)
        self.guard = FiniteGuard(self.ckpts)
        self.bar = tqdm(total=tc.steps, initial=self.start, unit="round", disable=not (progress and self.primary),
                        file=sys.stderr)
        # Rows name the head trained and the species of its data (a fine-tuned head: e.g. finetune, mouse).
        self.row_names = {s: {"species": getattr(src, "species", s), "head": s} for s, src in setup.train_src.items()}
        self.log = TrainLog(tc.species, tc.batch_size, self.writer, self.bar, self.row_names)
        self.summary: dict = {}  # {species: the last validation's row}
        self.pending: list = []  # the last round's losses, read one round late: no device stall

    def _restore_or_init(self, setup) -> tuple[int, dict, dict | None]:
        restored = self.ckpts.restore(self.trainer.abstract_state())
        if restored is None:
            return 0, self.trainer.init_state(setup.init_arrays, setup.fresh_heads), None
        start, state, positions, saved_selection = restored
        for s, it_state in positions.items():
            self.iterators[s].set_state(it_state)
        print(f"resumed from round {start} in {self.ckpts.latest.directory}", file=sys.stderr)
        return start, state, saved_selection

    def save_model(self, name: str, **more) -> str:
        """WORKDIR/name as a model checkpoint of the current state (written by process 0)."""
        path = os.path.join(self.tc.workdir, name)
        if self.primary:
            replace_checkpoint(path, self.trainer.model_arrays(self.state), self.trainer.cfg,
                               torch_new_head=self.torch_new_head,
                               extra={"train_config": self.tc.to_dict(), "n_value": self.tc.n_value,
                                      "head_targets": self.head_targets, **more})
        return path

    def train_round(self, r: int) -> None:
        """One optimizer step per species, then the previous round's losses are checked and logged."""
        self.state["step"] = replicated_value(np.int32(r), self.mesh)
        outs = {}
        for s in self.tc.species:
            batch = global_batch(self.log.next_batch(self.iterators[s]), self.mesh)
            self.state, outs[s] = self.trainer.train_step(self.state, batch, head=s)
        self.log.add_losses(self.guard(self.pending, r - 1))
        self.pending = [(s, out["loss"]) for s, out in outs.items()]
        self.log.add_round(outs)
        if r % LOG_EVERY == 0 or r == self.tc.steps:
            self.log.flush(r)

    def validate(self, r: int) -> None:
        self.summary = self.validator(self.state)
        for s, row in self.summary.items():
            self.writer.write({"step": r, "split": "valid", **self.row_names[s], **row})

    def validate_and_checkpoint(self, r: int) -> None:
        """Validation (model_best, early stopping) and the resumable checkpoint, when due at round `r`."""
        tc = self.tc
        eval_due = (tc.eval_every and r % tc.eval_every == 0) or r == tc.steps
        ckpt_due = r % tc.checkpoint_every == 0 or r == tc.steps
        if eval_due or ckpt_due:
            self.guard(self.pending, r, self.state)  # never checkpoint a non-finite state
        if eval_due:
            self.validate(r)
            if self.selection.update(self.summary, r):
                self.save_model("model_best", selection=self.selection.to_dict())
            self.bar.write(f"round {r}: " + "; ".join(
                f"{s} valid loss {v['loss']:.4f} R {v['pearson_r']:.3f}" for s, v in self.summary.items()))
            if self.selection.stopped:
                self._stop(r)
                ckpt_due = True  # a re-run resumes here and trains no further
        if ckpt_due:
            self.ckpts.save_latest(r, self.state, {s: it.get_state() for s, it in self.iterators.items()},
                                   self.selection.to_dict())

    def _stop(self, r: int) -> None:
        sel = self.selection
        self.log.add_losses(self.guard(self.pending, r))
        self.pending = []
        if any(self.log.losses.values()):  # a round of a multiple of LOG_EVERY is logged already
            self.log.flush(r)
        best = "no finite value" if sel.best is None else f"best {sel.best:.4f} at round {sel.round}"
        self.bar.write(f"stopping early at round {r}: no improvement of {sel.describe()} in {sel.patience} "
                       f"validations ({best}, in {os.path.join(self.tc.workdir, 'model_best')})")
        self.writer.write({"step": r, "split": "stop", "head": sel.species, "best": sel.best,
                           "best_round": sel.round})

    def close(self) -> None:
        for it in self.iterators.values():
            if hasattr(it, "close"):  # the reader's threads
                it.close()
        self.bar.close()
        self.ckpts.close()
        self.writer.close()

    def outputs(self) -> dict:
        """The last validation summary, plus model paths, the selection and the plots (process 0)."""
        if self.primary:
            self.summary["model"] = self.save_model("model")
            best = os.path.join(self.tc.workdir, "model_best")
            self.summary["model_best"] = best if self.selection.round is not None else None
            self.summary["selection"] = self.selection.to_dict()
            self.summary["plots"] = plot_curves(self.tc.workdir, self.validator.last_r)
        return self.summary


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
    run = TrainingRun(model_cfg, tc, progress=progress, sources=sources, init=init, torch_new_head=torch_new_head)
    try:
        for r in range(run.start + 1, tc.steps + 1):
            if run.selection.stopped:
                break
            run.train_round(r)
            run.validate_and_checkpoint(r)
        if not run.summary:  # resumed a finished or stopped run: report its final state
            run.validate(int(jax.device_get(run.state["step"])) or tc.steps)
    finally:
        run.close()
    return run.outputs()
