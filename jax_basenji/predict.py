"""Batched prediction from one-hot sequences.

  python -m jax_basenji.predict --checkpoint CKPT --head human --input seqs.npy --output preds.npy

`seqs.npy`: `[N, L, 4]` one-hot (bool, integer or float; an all-zero row is N).
`preds.npy`: `[N, bins, tracks]` float32 (bins = 896 at L = 131,072). The input
is memory-mapped and the output written batch by batch into a temporary file
that is renamed when complete. Batches are padded to one shape, so the model
is compiled once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from jax_basenji import checkpoint
from jax_basenji.cli import InputError, atomic_output, one_line_errors
from jax_basenji.model import Basenji2


def check_sequences(seqs: np.ndarray, model: Basenji2, name: str = "input") -> int:
    """Validate `[N, L, 4]` one-hot shape/dtype; return the number of output bins."""
    if seqs.ndim != 3:
        raise InputError(f"{name} has shape {seqs.shape}; expected [N, length, 4] one-hot")
    if seqs.shape[2] != 4:
        raise InputError(f"{name} has last dimension {seqs.shape[2]}; expected 4 (A, C, G, T)")
    if not (seqs.dtype == np.bool_ or np.issubdtype(seqs.dtype, np.integer)
            or np.issubdtype(seqs.dtype, np.floating)):
        raise InputError(f"{name} has dtype {seqs.dtype}; expected bool, integer or float one-hot")
    try:
        return model.cfg.output_bins(seqs.shape[1])
    except ValueError as e:
        raise InputError(f"{name}: {e}") from None


def check_one_hot(batch: np.ndarray, offset: int, name: str = "input") -> None:
    """Every position must be a one-hot row or all zeros (N)."""
    ok_values = (batch == 0) | (batch == 1)
    row_sums = batch.sum(axis=-1, dtype=np.float32)
    bad = ~ok_values.all(axis=-1) | (row_sums > 1)
    if bad.any():
        i, pos = np.argwhere(bad)[0]
        raise InputError(f"{name}: sequence {offset + i} is not one-hot at position {pos} "
                         f"(values {batch[i, pos].tolist()})")


class Predictor:
    """Eval-mode forward pass of one head, jit-compiled once per batch shape."""

    def __init__(self, model: Basenji2, head: str):
        if head not in model.heads:
            raise InputError(f"unknown head {head!r}; this checkpoint has {sorted(model.heads)}")
        model.eval()
        self.model = model
        graphdef, state = nnx.split(model)
        self._state = state
        self._forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, head))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """`[B, L, 4]` -> `[B, bins, tracks]` float32 numpy."""
        return np.asarray(self._forward(self._state, batch.astype(np.float32)))

    def padded(self, batch: np.ndarray, size: int) -> np.ndarray:
        """Predictions for the rows of `batch`, zero-padded to `size` rows so the compiled shape never changes."""
        real = batch.shape[0]
        if real < size:
            batch = np.concatenate([batch, np.zeros((size - real, *batch.shape[1:]), batch.dtype)])
        return self(batch)[:real]

    def batches(self, seqs: np.ndarray, batch_size: int, progress: bool = True,
                name: str = "input") -> Iterator[tuple[int, np.ndarray]]:
        """Yield (start, predictions) for consecutive batches of `seqs`."""
        n = seqs.shape[0]
        bar = tqdm(total=n, unit="seq", disable=not progress or n <= batch_size, file=sys.stderr)
        for start in range(0, n, batch_size):
            batch = np.asarray(seqs[start:start + batch_size])
            check_one_hot(batch, start, name)
            yield start, self.padded(batch, batch_size)
            bar.update(batch.shape[0])
        bar.close()


def predict_file(checkpoint_dir: str, head: str, input_path: str, output_path: str, *,
                 batch_size: int = 4, overwrite: bool = False, progress: bool = True) -> tuple[int, ...]:
    """Predict every sequence of `input_path` into `output_path`; returns the output shape."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {batch_size}")
    try:
        seqs = np.load(input_path, mmap_mode="r")
    except ValueError as e:
        raise InputError(f"{input_path} is not a readable .npy array: {e}") from None
    model, _ = checkpoint.load_model(checkpoint_dir)
    predictor = Predictor(model, head)
    bins = check_sequences(seqs, model, input_path)
    shape = (seqs.shape[0], bins, model.cfg.head_tracks[head])
    tmp = atomic_output(output_path, overwrite)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for start, preds in predictor.batches(seqs, batch_size, progress, input_path):
            out[start:start + len(preds)] = preds
        out.flush()
        del out
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return shape


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jax_basenji.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
    p.add_argument("--head", required=True, help="output head, e.g. human, mouse, finetune")
    p.add_argument("--input", required=True, help="[N, L, 4] one-hot .npy")
    p.add_argument("--output", required=True, help="[N, bins, tracks] float32 .npy to write")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per forward pass (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = predict_file(args.checkpoint, args.head, args.input, args.output,
                         batch_size=args.batch_size, overwrite=args.overwrite,
                         progress=not args.no_progress)
    print(f"wrote {args.output}: {shape} float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
