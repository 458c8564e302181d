"""Exact incremental variant scoring: an ALT window recomputes the conv tower only where the allele reaches.

An edited window (a base window with a few bases replaced) differs from it, after the
stem and conv tower, only in the tower bins whose receptive field holds an edited bp:
bin j reads bp [bin * j - r, bin * (j + 1) - 1 + r], r = `ModelConfig.tower_reach` (259 bp for
Basenji2, so 6 of 1,024 bins for an SNV). So the edited window's tower output is the base
window's, with a short slice recomputed: the slice of the edited (shifted, reverse-complemented)
input aligned to the pooling grid, with the real neighbouring sequence; from it, every bin whose
receptive field lies inside the slice (or meets the window's own edge, where both see the same
zero padding) is exact and replaces the base's. The dilated stack and the head then run on all
bins. Nothing is approximated: the two paths differ by float rounding only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.predict.core import Predictor, ensemble_members, member_output
from jax_basenji.sharding import batch_sharded

MAX_EDIT = 16  # bp: widest same-length edit (SNV, MNV) taken incrementally; wider ones take the full path


@dataclasses.dataclass(frozen=True)
class SliceGeometry:
    """Where an edit's tower slice lies in a window of `length` bp (all in tower bins unless said)."""

    length: int  # window bp
    bin_size: int  # bp per tower bin
    reach: int  # bp a tower bin reads beyond its own on each side
    edit: int = MAX_EDIT  # widest edit, bp

    @classmethod
    def of(cls, cfg: ModelConfig, length: int, edit: int = MAX_EDIT) -> "SliceGeometry":
        return cls(length, cfg.bin_size, cfg.tower_reach, edit)

    @property
    def bins(self) -> int:
        """Tower bins of the window."""
        return self.length // self.bin_size

    @property
    def margin(self) -> int:
        """Bins between the bins an edit reaches and the slice's ends: their fields stay inside the slice."""
        return -(-self.reach // self.bin_size)

    @property
    def slice_bins(self) -> int:
        """Slice length: the most bins an edit of `edit` bp reaches, plus a margin at each end."""
        reached = (self.edit - 1 + 2 * self.reach) // self.bin_size + 2
        return min(reached + 2 * self.margin, self.bins)

    def reached(self, lo, hi):
        """(first, last) tower bin whose field holds a bp of [lo, hi] (numpy or jax integers)."""
        return (lo - self.reach) // self.bin_size, (hi + self.reach) // self.bin_size

    def slice_start(self, lo, hi):
        """First bin of the slice for an edit of bp [lo, hi], kept inside the window."""
        first, _ = self.reached(lo, hi)
        xp = jnp if isinstance(lo, jax.Array) else np
        return xp.clip(first - self.margin, 0, self.bins - self.slice_bins)

    def exact(self, start):
        """`[..., slice_bins]` bool: the slice's bins computed as in the whole window, for slices at `start`
        `[...]`: their field is inside the slice, or passes the window's end at the slice's end."""
        xp = jnp if isinstance(start, jax.Array) else np
        start = xp.asarray(start)[..., None]
        b = start + xp.arange(self.slice_bins)
        left = (b * self.bin_size - self.reach >= start * self.bin_size) | (start == 0)
        end = start + self.slice_bins
        right = ((b + 1) * self.bin_size - 1 + self.reach < end * self.bin_size) | (end == self.bins)
        return left & right


def member_span(lo, hi, shift: int, rc: bool, length: int):
    """Edited bp [lo, hi] of a window, in an ensemble member's input (shifted right by `shift`, then
    reverse-complemented if `rc`), clipped to the window."""
    lo, hi = lo + shift, hi + shift
    if rc:
        lo, hi = length - 1 - hi, length - 1 - lo
    return jnp.clip(lo, 0, length - 1), jnp.clip(hi, 0, length - 1)


def _take(x: jax.Array, starts: jax.Array, size: int) -> jax.Array:
    """`[batch, size, ...]`: rows `starts[i]` to `starts[i] + size` of each `x[i]`."""
    return jax.vmap(lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, size, axis=0))(x, starts)


def _put(x: jax.Array, starts: jax.Array, values: jax.Array) -> jax.Array:
    """Each `x[i]` with `values[i]` written from row `starts[i]` on."""
    return jax.vmap(lambda a, v, s: jax.lax.dynamic_update_slice_in_dim(a, v, s, axis=0))(x, values, starts)


class IncrementalScorer:
    """Predictions of base windows and statistics of their edits, from jitted pieces of a Predictor's model.

    `base(windows)` runs the whole model on `[R, L]` base windows (uint8 indices) once, keeping on
    the device each ensemble member's conv tower output and the ensemble-mean prediction of
    `columns`; `edits(...)` then scores `[E]` edits of those windows (see its docstring). Four
    programs: member towers, splicing an edit's slice into them, the rest of the model from
    towers (shared by REF and ALT), and the statistics.
    """

    def __init__(self, predictor: Predictor, length: int, columns: list[int] | None,
                 statistics, edit: int = MAX_EDIT):
        self.geometry = geo = SliceGeometry.of(predictor.model.cfg, length, edit)
        self.predictor = predictor
        model_def, head, ensemble, n_value = predictor.graphdef, predictor.head, predictor.ensemble, predictor.n_value
        cols = None if columns is None else np.asarray(columns)
        bp = geo.slice_bins * geo.bin_size

        def towers(state, windows):
            """`[members, R, L / bin, C]` conv tower outputs of `[R, L]` windows' ensemble members."""
            model = nnx.merge(model_def, state)
            x = jax.nn.one_hot(windows, 4, dtype=jnp.float32)
            return jnp.stack([model.conv_tower(xs) for _, _, xs in ensemble_members(x, ensemble, n_value)])

        def top(state, towers):
            """`[R, bins, kept tracks]` ensemble-mean prediction from the members' tower outputs. A program of
            its own for base and edited windows alike: the bins an edit cannot reach are then computed by
            the same code from the same values, and cancel in ALT - REF as in one whole-model batch."""
            model = nnx.merge(model_def, state)
            total = 0.0
            for (_, rc), tower in zip(ensemble.members(), towers):
                y = member_output(model.from_tower(tower, head), rc, ensemble)
                total = total + (y if cols is None else y[..., cols])
            return total / ensemble.size

        def spliced(state, windows, towers, parent, at, bases, lo, hi):
            """`[members, E, L / bin, C]`: each edit's base tower output with the bins it reaches recomputed."""
            model = nnx.merge(model_def, state)
            edited = jax.nn.one_hot(_put(windows[parent], at, bases), 4, dtype=jnp.float32)
            out = []
            for m, (shift, rc, xs) in enumerate(ensemble_members(edited, ensemble, n_value)):
                start = geo.slice_start(*member_span(lo, hi, shift, rc, length))
                fresh = model.conv_tower(_take(xs, start * geo.bin_size, bp))  # [E, slice_bins, C]
                tower = towers[m][parent]
                old = _take(tower, start, geo.slice_bins)
                out.append(_put(tower, start, jnp.where(geo.exact(start)[..., None], fresh, old)))
            return jnp.stack(out)

        def compare(ref, alt, parent, swap):
            ref, swap = ref[parent], swap[:, None, None]
            return statistics(jnp.where(swap, alt, ref), jnp.where(swap, ref, alt))

        self._towers, self._top, self._spliced, self._compare = map(jax.jit, (towers, top, spliced, compare))

    def _put_batch(self, x: np.ndarray):
        mesh = self.predictor.mesh
        return jax.device_put(x, batch_sharded(mesh)) if x.shape[0] % mesh.devices.size == 0 else x

    def base(self, windows: np.ndarray) -> tuple:
        """Device state of `[R, L]` uint8 base windows: (windows, `[members, R, L / bin, C]` tower outputs,
        `[R, bins, kept tracks]` mean predictions)."""
        windows = self._put_batch(windows)
        towers = self._towers(self.predictor.state, windows)
        return windows, towers, self._top(self.predictor.state, towers)

    def edits(self, base: tuple, parent: np.ndarray, at: np.ndarray, bases: np.ndarray, lo: np.ndarray,
              hi: np.ndarray, swap: np.ndarray) -> dict[str, np.ndarray]:
        """{stat: `[E, kept tracks]`} of `E` edits: edit i writes `bases[i]` (`[E, edit]` uint8) into base
        window `parent[i]` from bp `at[i]`, changing bp `lo[i]`..`hi[i]`; its statistics compare the
        edited window (ALT) with the base (REF), or the base (ALT) with the edited one (REF) where `swap[i]`."""
        parent, at, bases, lo, hi, swap = (self._put_batch(np.asarray(a)) for a in (parent, at, bases, lo, hi, swap))
        windows, towers, ref = base
        state = self.predictor.state
        alt = self._top(state, self._spliced(state, windows, towers, parent, at, bases, lo, hi))
        return jax.tree.map(np.asarray, self._compare(ref, alt, parent, swap))
