"""Training: `python -m jax_basenji.train` (no arguments: the embedded demo).

  python -m jax_basenji.train --data STORE --workdir runs/exp --model basenji2-double-prime \\
      --species human mouse --batch-size 4 --steps 100000 --lr 0.15 --momentum 0.99 --clip-norm 2

Each round takes one batch per species (human then mouse, as the seed), one
optimizer step each through the species' head. Data parallel over every
device of every process (see jax_basenji.sharding). Re-running in the same
workdir resumes from the latest checkpoint, data position included.

  setup.py        the run's data sources, model config and initial weights
  checkpoints.py  the workdir's resumable checkpoints
  selection.py    model_best and early stopping
  validation.py   validation passes and their metrics
  loop.py         the training loop (`train`)
  cli.py          flags, recipes, the embedded demo, `main`
"""

from jax_basenji.train.cli import (RECIPES, add_train_flags, demo_configs, demo_data, main,
                                   maybe_initialize_distributed, parse_args, parse_with_recipe,
                                   train_config_from_args)
from jax_basenji.train.loop import NonFiniteLoss, train
from jax_basenji.train.setup import initial_arrays

__all__ = ["RECIPES", "NonFiniteLoss", "add_train_flags", "demo_configs", "demo_data", "initial_arrays", "main",
           "maybe_initialize_distributed", "parse_args", "parse_with_recipe", "train", "train_config_from_args"]
