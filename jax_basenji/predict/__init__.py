"""Prediction: `python -m jax_basenji.predict` (see __main__.py for the three modes).

  core.py     the batched, jitted forward pass (Predictor, ensembles), and `.npy` in -> `.npy` out
  windows.py  input windows from a genome, built on worker threads (where they lie: jax_basenji.geometry)
  regions.py  `predict regions`: BED regions -> HDF5 (and bigWig)
  genome.py   `predict genome`: whole chromosomes -> bigWig / bedGraph, resumable
  bigwig.py   bigWig / bedGraph writing at the model's bin resolution
  plot.py     one region's predicted (and measured) tracks as a PNG
  cli.py      the command line: `.npy` mode, `regions`, `genome`
"""

from jax_basenji.predict.core import (Ensemble, Predictor, add_ensemble_flags, add_precision_flag, check_one_hot,
                                      check_sequences, ensemble_forward, ensemble_from_args, predict_file,
                                      shift_batch)
from jax_basenji.predict.cli import main

__all__ = ["Ensemble", "Predictor", "add_ensemble_flags", "add_precision_flag", "check_one_hot", "check_sequences",
           "ensemble_forward", "ensemble_from_args", "main", "predict_file", "shift_batch"]
