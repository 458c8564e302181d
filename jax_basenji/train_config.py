"""Training configuration: a frozen dataclass beside ModelConfig."""

from __future__ import annotations

import dataclasses
from typing import Any

from jax_basenji.errors import InputError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (docs/seed_reference.md); defaults follow the paper and the seed."""

    # Converted store directory (python -m jax_basenji.data convert).
    data: str = ""
    # Output directory: checkpoints, metrics.jsonl, TensorBoard events, PNG plots.
    workdir: str = "runs/train"
    # Species trained alternately, each through its own head (seed order: human, mouse).
    species: tuple[str, ...] = ("human", "mouse")
    # Global batch size per species (split over devices and processes).
    batch_size: int = 4
    # Training rounds; each round takes one batch per species, one optimizer step each.
    steps: int = 1000
    # Optimizer: "sgd" (momentum, as the seed), "adam" or "adamw".
    optimizer: str = "sgd"
    # Peak learning rate (paper: 0.15 with SGD; seed pre-training script: 1e-4).
    lr: float = 0.15
    # SGD momentum, or Adam's b1 (beta1) for adam/adamw: pass e.g. 0.9 with Adam.
    momentum: float = 0.99
    # Linear warm-up rounds from 0 to `lr`.
    warmup_steps: int = 0
    # Learning-rate schedule after warm-up: "constant" or "cosine" (to 0 at `steps`).
    schedule: str = "constant"
    # Global gradient-norm clipping (paper: 2); 0 disables it.
    clip_norm: float = 2.0
    # Decoupled weight decay (adamw) or L2 added to the gradient (sgd/adam).
    weight_decay: float = 0.0
    # Random reverse complement and +-3 bp shift of training examples.
    augment: bool = True
    # Input length; differs from the stored one only with `fasta` (re-extraction).
    seq_length: int | None = None
    # Genome FASTA per species for `seq_length` re-extraction, e.g. (("human", "hg38.ml.fa"),).
    fasta: tuple[tuple[str, str], ...] = ()
    # "fp32", or "bf16": bf16 convolutions/matmuls, fp32 params, BN statistics and loss.
    precision: str = "fp32"
    # Rematerialise each block in the backward pass (less memory, ~30 % more compute).
    remat: bool = False
    # BatchNorm momentum (torch semantics) to train with; None: the model's own (preset,
    # checkpoint or foreign file). Applies the same way whatever the initial weights.
    bn_momentum: float | None = None
    # Seed of initialisation, data order, augmentation and dropout.
    seed: int = 0
    # Rounds between validations (0: only at the end).
    eval_every: int = 200
    # Validation batches per species (the seed: up to 400).
    eval_batches: int = 400
    # Rounds between checkpoints of the latest state.
    checkpoint_every: int = 200
    # Validation metric that picks WORKDIR/model_best: "valid_loss" (lower is better, the
    # seed's) or "pearson_r" (mean over tracks, higher is better).
    select: str = "valid_loss"
    # Whose metric: a species/head name, or "mean" over them; None: "human" when trained
    # (the seed's pre-training choice), else the first species (a fine-tuning's joint loss).
    select_species: str | None = None
    # Stop after this many validations without improvement of the selection metric (the
    # paper: 16 epochs); 0 never stops early.
    patience: int = 0
    # Value of every channel at N positions of sequences built from a store or genome: 0 (the
    # Basenji TFRecords, the published model) or 0.25 (kipoiseq's, which the seed code trained
    # on); None: the value the initial weights recorded (a seed .pt: 0.25), else 0.
    n_value: float | None = None
    # Latest checkpoints kept: a resume falls back to the newest one that reads back completely.
    keep_checkpoints: int = 2
    # Initial weights: a jax_basenji checkpoint directory or a seed .pt.
    init_from: str | None = None
    # Data worker processes per species for grain's host-augmented path (slow; 0: the threaded reader).
    workers: int = 0
    # Threads per species reading training batches into batch buffers (augmented in the step);
    # 0 reads each batch in the training loop's thread. Results do not depend on it.
    data_threads: int = 2
    # "none": the trunk trains with each head; "trunk": only the heads train (the trunk
    # runs in eval mode: running BatchNorm statistics, no dropout; fine-tuning a new head).
    freeze: str = "none"
    # Channel groups of a head's targets for the loss, in channel order, as
    # (name, tracks, weight, log1p): loss = sum(weight * Poisson(group)) / groups, with
    # log(x+1) applied to that group's targets (training and validation). Empty: one
    # Poisson loss over all channels. The seed's joint ATAC+RNA fine-tuning:
    # (("atac", 35, 1.0, False), ("rna", 37, w, True)) -> (w * L_rna + L_atac) / 2.
    modalities: tuple[tuple[str, int, float, bool], ...] = ()

    def __post_init__(self):
        # Option values come from the command line: InputError, one line, exit 2.
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise InputError(f"unknown optimizer {self.optimizer!r}; expected sgd, adam or adamw")
        if self.schedule not in ("constant", "cosine"):
            raise InputError(f"unknown schedule {self.schedule!r}; expected constant or cosine")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"unknown precision {self.precision!r}; expected fp32 or bf16")
        if self.select not in ("valid_loss", "pearson_r"):
            raise InputError(f"unknown --select {self.select!r}; expected valid_loss or pearson_r")
        if self.select_species not in (None, "mean", *self.species):
            raise InputError(f"--select-species {self.select_species!r} is not trained; expected mean or one of "
                             f"{', '.join(self.species)}")
        if self.n_value is not None and not 0.0 <= self.n_value <= 1.0:
            raise InputError(f"--n-value must be in [0, 1] (0 or 0.25 in practice), got {self.n_value}")
        if self.data_threads < 0 or self.workers < 0:
            raise InputError(f"--data-threads and --workers must be 0 or positive, got {self.data_threads} "
                             f"and {self.workers}")
        if self.patience < 0:
            raise InputError(f"--patience must be 0 (off) or positive, got {self.patience}")
        if self.freeze not in ("none", "trunk"):
            raise InputError(f"unknown freeze {self.freeze!r}; expected none or trunk")
        object.__setattr__(self, "modalities", tuple((str(n), int(t), float(w), bool(l))
                                                     for n, t, w, l in self.modalities))
        for name in ("batch_size", "steps", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        object.__setattr__(self, "species", tuple(self.species))
        object.__setattr__(self, "fasta", tuple(tuple(p) for p in (dict(self.fasta).items()
                                                                   if isinstance(self.fasta, dict) else self.fasta)))

    @property
    def selection_species(self) -> str:
        """The species/head whose metric selects model_best, or "mean"."""
        if self.select_species:
            return self.select_species
        return "human" if "human" in self.species else self.species[0]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
