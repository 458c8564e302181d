"""Training augmentation inside the jitted step: the host's `Augment`, applied to a whole batch.

The reader (`jax_basenji.data.reader`) hands over sequences as the store holds
them, `[B, L]` uint8 index (A0 C1 G2 T3 N4), with each example's draws ("rc",
"shift", from `augment.Draws`); here they become exactly the one-hot batch
that host augmentation would have built:

- reverse complement: the index reversed along L with A<->T, C<->G (N stays N),
  which is the one-hot reversed on both axes; targets reversed along bins and
  their tracks permuted by `strand_pair`;
- shift by s: position i takes position i - s, vacated positions are N, i.e.
  all-zero one-hot rows, the host's padding (`augment.shift_sequence`);
- then the index becomes one-hot (N -> zeros), as `layout.index_to_one_hot`.

On an accelerator this is a few elementwise passes over ~10 MB per example,
against the host's per-example copies it replaces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

N_INDEX = 4  # the index code of N (layout.index_to_one_hot: an all-zero row)


def reverse_complement_index(index: jax.Array) -> jax.Array:
    """`[B, L]` index -> the other strand's: reversed, A0<->T3 and C1<->G2, N4 kept."""
    flipped = index[:, ::-1]
    return jnp.where(flipped < N_INDEX, 3 - flipped, flipped).astype(index.dtype)


def shift_index(index: jax.Array, shift: jax.Array) -> jax.Array:
    """`[B, L]` index moved right by `shift` `[B]` (left if negative), N-padded."""
    length = index.shape[1]
    source = jnp.arange(length)[None, :] - shift[:, None].astype(jnp.int32)
    inside = (source >= 0) & (source < length)
    moved = jnp.take_along_axis(index, jnp.clip(source, 0, length - 1), axis=1)
    return jnp.where(inside, moved, jnp.asarray(N_INDEX, index.dtype))


def one_hot_index(index: jax.Array) -> jax.Array:
    """`[..., L]` uint8 index -> `[..., L, 4]` uint8 one-hot, N (4) -> all zeros."""
    return (index[..., None] == jnp.arange(4, dtype=index.dtype)).astype(jnp.uint8)


def augment_batch(batch: dict, strand_pair: np.ndarray | None = None) -> dict:
    """A reader batch -> the model's inputs, inside jit.

    `batch`: "sequence" `[B, L]` uint8 index, "target" `[B, bins, T]`, and with augmentation
    "rc" `[B]` bool and "shift" `[B]` int. Returns {"sequence": `[B, L, 4]` uint8 one-hot,
    "target": `[B, bins, T]`}. A batch whose sequence is one-hot already (`[B, L, 4]`, from
    `make_dataset`) is returned as it is.
    """
    sequence, target = batch["sequence"], batch["target"]
    if sequence.ndim == 3:
        if "rc" in batch or "shift" in batch:
            raise ValueError("augmentation draws come with index sequences [B, L], not one-hot")
        return {"sequence": sequence, "target": target}
    if "rc" in batch:
        rc = batch["rc"].astype(bool)
        sequence = jnp.where(rc[:, None], reverse_complement_index(sequence), sequence)
        flipped = target[:, ::-1]
        if strand_pair is not None:
            flipped = flipped[..., np.asarray(strand_pair)]
        target = jnp.where(rc[:, None, None], flipped, target)
    if "shift" in batch:
        sequence = shift_index(sequence, batch["shift"])
    return {"sequence": one_hot_index(sequence), "target": target}
