"""Benchmarks (`python -m jax_basenji.bench model|data|predict|variants`), one module per job.

  cli        the argument parser and `main` (what `python -m jax_basenji.bench` runs)
  data       the data benchmark: training input pipeline throughput (`bench_pipeline`, `bench_data`)
  model      the model benchmark: JAX vs torch_ref forward and training step, each in its own child
             process (`bench_model`, `model_flops`, `eval_state`, `child_main`)
  inference  the inference benchmarks: `predict genome` tiling and `variants score`, JAX vs torch_ref
             (`bench_predict`, `bench_variants`, `gflop`)

`inference` is imported on first use of its names: it loads the model and predictor, which the
model benchmark's torch child (this package, run as `_child`) should not carry in its memory.
"""

from jax_basenji.bench.cli import main, parse_args
from jax_basenji.bench.data import bench_data, bench_pipeline
from jax_basenji.bench.model import bench_model, child_main, eval_state, model_flops

_INFERENCE = ("bench_predict", "bench_variants", "gflop")


def __getattr__(name):
    if name in _INFERENCE:
        from jax_basenji.bench import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["bench_data", "bench_model", "bench_pipeline", "bench_predict", "bench_variants", "child_main",
           "eval_state", "gflop", "main", "model_flops", "parse_args"]
