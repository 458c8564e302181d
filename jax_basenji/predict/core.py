"""Batched prediction from one-hot sequences.

  python -m jax_basenji.predict --checkpoint CKPT --head human --input seqs.npy --output preds.npy
      [--rc] [--shifts -1 0 1] [--targets-txt targets.txt]
  (from a genome: `python -m jax_basenji.predict regions --help` and `... genome --help`)

`seqs.npy`: `[N, L, 4]` one-hot (bool, integer or float; an all-zero row is N).
`preds.npy`: `[N, bins, tracks]` float32 (bins = 896 at L = 131,072). The input
is memory-mapped and the output written batch by batch into a temporary file
that is renamed when complete. Batches are padded to one shape, so the model
is compiled once.

Ensembles, as upstream basenji's `--rc --shifts`: the prediction is the mean
over every listed shift (the sequence moved right by `s` bp, the vacated positions
N in the model's encoding: all-zero rows, or the Predictor's `n_value`, e.g. 0.25 for
the seed's models, unless `Ensemble.shift_pad` gives them a value of their own as
upstream's variant scoring does; the prediction is not shifted back) and, with `--rc`, over the reverse complement
of each (its prediction flipped back along the bins and, given a targets.txt
with `strand_pair`, stranded tracks swapped with their pair).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jax_basenji import checkpoint
from jax_basenji.atomic import atomic_path
from jax_basenji.cli import InputError, Parser, one_line_errors
from jax_basenji.model import Basenji2
from jax_basenji.ops import fill_n
from jax_basenji.sharding import batch_sharded, local_mesh, replicated


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


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """What a prediction averages over (upstream basenji's `--rc --shifts`)."""

    rc: bool = False  # also predict the reverse complement, flipped back
    # bp the sequence is moved right (negative: left); vacated positions are N in the
    # model's encoding (all-zero rows, then the Predictor's n_value: 0 or 0.25), or shift_pad.
    shifts: tuple[int, ...] = (0,)
    strand_pair: tuple[int, ...] | None = None  # track permutation for the reverse strand
    # One-hot value of the positions a shift vacates. None: N in the model's encoding (N rows
    # are filled after shifting). A number: N rows are filled first and the vacated positions
    # get this value, as upstream basenji's EnsembleShift (0) does for its 0.25-coded windows.
    shift_pad: float | None = None

    def __post_init__(self):
        if not self.shifts:
            raise InputError("--shifts needs at least one value")
        object.__setattr__(self, "shifts", tuple(int(s) for s in self.shifts))
        if self.strand_pair is not None:
            object.__setattr__(self, "strand_pair", tuple(int(t) for t in self.strand_pair))

    @property
    def size(self) -> int:
        return len(self.shifts) * (2 if self.rc else 1)

    def members(self) -> list[tuple[int, bool]]:
        """(shift, rc) of each member, in the order `ensemble_members` yields them."""
        return [(s, rc) for s in self.shifts for rc in ((False, True) if self.rc else (False,))]


def shift_batch(x: jax.Array, shift: int, value: float = 0.0) -> jax.Array:
    """`[batch, length, 4]` moved right by `shift` bp (left if negative), vacated positions `value`
    (0: N as all-zero rows)."""
    if shift == 0:
        return x
    pad = [(0, 0), (max(shift, 0), max(-shift, 0)), (0, 0)]
    return jnp.pad(x, pad, constant_values=value)[:, max(-shift, 0): max(-shift, 0) + x.shape[1]]


def ensemble_members(x: jax.Array, ensemble: Ensemble, n_value: float = 0.0) -> Iterator[tuple[int, bool, jax.Array]]:
    """(shift, rc, model input `[batch, length, 4]`) for each member of `ensemble`, `x` `[batch, length, 4]`.

    `n_value`: the model's encoding of N, set on all-zero rows after shifting, so the
    positions a shift vacates are N in that encoding too (unless `ensemble.shift_pad` is set)."""
    filled = None if ensemble.shift_pad is None else fill_n(x, n_value)
    for shift, rc in ensemble.members():
        if not rc:
            if filled is None:
                xs = fill_n(shift_batch(x, shift), n_value)
            else:
                xs = shift_batch(filled, shift, ensemble.shift_pad)
        yield shift, rc, xs[:, ::-1, ::-1] if rc else xs


def member_output(y: jax.Array, rc: bool, ensemble: Ensemble) -> jax.Array:
    """A member's prediction `[batch, bins, tracks]` in the forward strand's bins and tracks."""
    if not rc:
        return y
    y = y[:, ::-1]
    return y if ensemble.strand_pair is None else y[..., np.asarray(ensemble.strand_pair)]


def ensemble_forward(model: Basenji2, x: jax.Array, head: str, ensemble: Ensemble,
                     n_value: float = 0.0) -> jax.Array:
    """Mean prediction `[batch, bins, tracks]` over `ensemble`'s shifts and strands, `x` `[batch, length, 4]`."""
    total = 0.0
    for _, rc, xs in ensemble_members(x, ensemble, n_value):
        total = total + member_output(model(xs, head), rc, ensemble)
    return total / ensemble.size


class Predictor:
    """Eval-mode forward pass of one head (optionally an ensemble), jit-compiled once per batch shape,
    each batch split over the local devices (the first `devices`; all by default), padded to a multiple
    of their number so that every device computes.

    `n_value` is for sequences built from a store or genome (N = all-zero rows): the value
    the model expects at N (0.25 for the seed's models). A user's one-hot array is already
    encoded and is predicted as given (0). `layer` "final" or "trunk" returns that layer's
    activations `[B, bins, channels]` instead of the head's output (one pass, no ensemble).
    A batch is `[B, L, 4]` one-hot, or `[B, L]` uint8 base indices (A0 C1 G2 T3, N 4), one-hot
    coded on the device (a sixteenth of the float32 one-hot's transfer).
    """

    def __init__(self, model: Basenji2, head: str, ensemble: Ensemble = Ensemble(), n_value: float = 0.0,
                 layer: str = "head", devices: int | None = None):
        if head not in model.heads:
            raise InputError(f"unknown head {head!r}; this checkpoint has {sorted(model.heads)}")
        tracks = model.cfg.head_tracks[head]
        if ensemble.strand_pair is not None and len(ensemble.strand_pair) != tracks:
            raise InputError(f"the targets table has {len(ensemble.strand_pair)} tracks; head {head!r} has {tracks}")
        if layer != "head" and ensemble.size > 1:
            raise InputError("--embed gives one pass's activations: --rc and --shifts average head outputs only")
        model.eval()
        self.model, self.head, self.ensemble, self.n_value = model, head, ensemble, n_value
        graphdef, state = nnx.split(model)
        self.mesh = local_mesh(devices)
        self.state = jax.device_put(state, replicated(self.mesh))

        def forward(state, x):
            model = nnx.merge(graphdef, state)
            if x.ndim == 2:  # base indices; 4 (N) -> an all-zero row
                x = jax.nn.one_hot(x, 4, dtype=jnp.float32)
            if layer != "head":
                return model.embed(fill_n(x, n_value), layer=layer).astype(jnp.float32)
            return ensemble_forward(model, x, head, ensemble, n_value)

        self.graphdef = graphdef  # with `state`, the model as a pure function (variants.incremental)
        self._raw_forward = forward
        self._forward = jax.jit(forward)
        self._reduced: dict = {}

    def __call__(self, batch: np.ndarray, reduce=None):
        """`[B, L, 4]` (or `[B, L]` indices) -> `[B, bins, tracks]` float32 numpy; with `reduce`, a function
        of the `[B, bins, tracks]` device array compiled into the same program, its result (numpy arrays)
        instead: only what it returns leaves the device. Rows are padded to a multiple of the devices
        (a `reduce` pairs rows, so its batch is split over them only when it divides evenly)."""
        if max(abs(s) for s in self.ensemble.shifts) >= batch.shape[1]:
            raise InputError(f"--shifts {list(self.ensemble.shifts)} move the whole {batch.shape[1]} bp input out")
        rows, devices = batch.shape[0], self.mesh.devices.size
        if reduce is None and rows % devices:
            batch = np.concatenate([batch, np.zeros((devices - rows % devices, *batch.shape[1:]), batch.dtype)])
        x = batch if batch.ndim == 2 else batch.astype(np.float32)
        if batch.shape[0] % devices == 0:
            x = jax.device_put(x, batch_sharded(self.mesh))
        if reduce is None:
            return np.asarray(self._forward(self.state, x))[:rows]
        if reduce not in self._reduced:
            forward = self._raw_forward
            self._reduced[reduce] = jax.jit(lambda state, x: reduce(forward(state, x)))
        return jax.tree.map(np.asarray, self._reduced[reduce](self.state, x))

    def padded(self, batch: np.ndarray, size: int) -> np.ndarray:
        """Predictions for the rows of `batch`, zero-padded to `size` rows so the compiled shape never changes."""
        real = batch.shape[0]
        if real < size:
            batch = np.concatenate([batch, np.zeros((size - real, *batch.shape[1:]), batch.dtype)])
        return self(batch)[:real]

    def batches(self, seqs: np.ndarray, batch_size: int, progress: bool = True,
                name: str = "input") -> Iterator[tuple[int, np.ndarray]]:
        """Yield (start, predictions) for consecutive batches of `seqs` (`[N, L, 4]` one-hot, checked, or
        `[N, L]` base indices)."""
        n = seqs.shape[0]
        bar = tqdm(total=n, unit="seq", disable=not progress or n <= batch_size, file=sys.stderr)
        for start in range(0, n, batch_size):
            batch = np.asarray(seqs[start:start + batch_size])
            if batch.ndim == 3:
                check_one_hot(batch, start, name)
            yield start, self.padded(batch, batch_size)
            bar.update(batch.shape[0])
        bar.close()


def batch_for(batch_size: int, items: int) -> int:
    """The batch to compile for a run of `items` inputs: `batch_size`, or `items` when they all fit in one
    batch (one variant with --batch-size 4 would compute 3 empty windows). A run of several batches pads
    its last one to the full batch: one compiled shape costs less than compiling a second one."""
    return max(1, min(batch_size, items))


def ensemble_from_args(args: argparse.Namespace, shift_pad: float | None = None) -> Ensemble:
    """`--rc`, `--shifts` and the strand pairs of `--targets-txt` (a store's come in `load_predictor`)."""
    strand_pair = None
    if getattr(args, "targets_txt", None):
        from jax_basenji.data.layout import read_targets_file, strand_pairs

        rows = read_targets_file(args.targets_txt)
        strand_pair = strand_pairs(rows, args.targets_txt)
        if strand_pair is None:  # unstranded: the identity, which still checks the table fits the head
            strand_pair = np.arange(len(rows))
    return Ensemble(rc=args.rc, shifts=tuple(args.shifts),
                    strand_pair=None if strand_pair is None else tuple(strand_pair),
                    shift_pad=shift_pad)


def head_ensemble(ensemble: Ensemble, meta: dict, head: str, fallback: np.ndarray | None = None) -> Ensemble:
    """`ensemble` with the strand pairs its --rc needs when --targets-txt gave none: those of the head's
    table recorded in the checkpoint, else `fallback` (the evaluated store's). Without them a stranded
    track (CAGE +/-) would be averaged with its own reverse-strand reading."""
    if not ensemble.rc or ensemble.strand_pair is not None:
        return ensemble
    from jax_basenji.data.layout import strand_pairs
    from jax_basenji.tracks import recorded_targets

    rows = recorded_targets(meta, head)
    pairs = strand_pairs(rows) if rows else None
    pairs = fallback if pairs is None else pairs
    return ensemble if pairs is None else dataclasses.replace(ensemble, strand_pair=tuple(int(t) for t in pairs))


def load_predictor(checkpoint_dir: str, head: str, ensemble: Ensemble = Ensemble(),
                   strand_pair: np.ndarray | None = None, precision: str = "fp32",
                   n_value: float | None = None, layer: str = "head",
                   devices: int | None = None) -> tuple[Predictor, dict]:
    """(eval-mode predictor of one head, checkpoint metadata); InputError naming the heads if `head` is unknown.

    `strand_pair` (e.g. an evaluated store's) is used for `ensemble.rc` when neither the ensemble
    (--targets-txt) nor the checkpoint's record of the head has any. Sequences built from a store
    or genome get `n_value` at N, by default the value the checkpoint records.
    """
    model, meta = checkpoint.load_model(checkpoint_dir, precision)
    ensemble = head_ensemble(ensemble, meta, head, strand_pair)
    return Predictor(model, head, ensemble, checkpoint.n_value_of(meta, n_value), layer, devices), meta


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="compute precision (default fp32, whatever the model was trained with)")


def add_devices_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, metavar="N",
                   help="compute on this process's first N devices (GPUs, TPU cores; default all): each batch "
                        "is split over them")


def add_ensemble_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rc", action="store_true",
                   help="average with the reverse complement's prediction (flipped back; stranded tracks "
                        "swapped by the targets.txt strand_pair)")
    p.add_argument("--shifts", type=int, nargs="+", default=[0],
                   help="average over these sequence shifts in bp, e.g. -1 0 1 (default 0)")


def predict_file(checkpoint_dir: str, head: str, input_path: str, output_path: str, *,
                 batch_size: int = 4, overwrite: bool = False, progress: bool = True,
                 ensemble: Ensemble = Ensemble(), precision: str = "fp32",
                 devices: int | None = None) -> tuple[int, ...]:
    """Predict every sequence of `input_path` into `output_path`; returns the output shape."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {batch_size}")
    try:
        seqs = np.load(input_path, mmap_mode="r")
    except ValueError as e:
        raise InputError(f"{input_path} is not a readable .npy array: {e}") from None
    model, _ = checkpoint.load_model(checkpoint_dir, precision)
    predictor = Predictor(model, head, ensemble, devices=devices)
    bins = check_sequences(seqs, model, input_path)
    batch_size = batch_for(batch_size, seqs.shape[0])
    shape = (seqs.shape[0], bins, model.cfg.head_tracks[head])
    with atomic_path(output_path, overwrite) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for start, preds in predictor.batches(seqs, batch_size, progress, input_path):
            out[start:start + len(preds)] = preds
        out.flush()
        del out
    return shape


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m jax_basenji.predict", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="jax_basenji checkpoint directory")
    p.add_argument("--head", required=True, help="output head, e.g. human, mouse, finetune")
    p.add_argument("--input", required=True, help="[N, L, 4] one-hot .npy")
    p.add_argument("--output", required=True, help="[N, bins, tracks] float32 .npy to write")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per forward pass (default 4)")
    add_ensemble_flags(p)
    add_precision_flag(p)
    add_devices_flag(p)
    p.add_argument("--targets-txt", help="targets.txt of the head: strand pairs for --rc")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = predict_file(args.checkpoint, args.head, args.input, args.output,
                         batch_size=args.batch_size, overwrite=args.overwrite,
                         progress=not args.no_progress, ensemble=ensemble_from_args(args),
                         precision=args.precision, devices=args.devices)
    print(f"wrote {args.output}: {shape} float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
