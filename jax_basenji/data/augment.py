"""Training augmentation (docs/seed_reference.md), as a grain RandomMap.

- Reverse complement with probability 1/2: the one-hot is reversed along the
  length and along the channels (A C G T -> T G C A is the complement), the
  target reversed along the bins, and stranded tracks swapped with their
  `strand_pair` (targets.txt) so a + strand track stays a + strand track.
- Shift by -3..+3 bp: the sequence moves, vacated positions become N (zero
  rows), the target is unchanged.
Deterministic given the pipeline seed (grain derives one generator per element).

`Augment` applies the draws on the host, per example (evaluation and tests);
training draws the same values with `Draws` and applies them inside the jitted
step (`jax_basenji.data.device_augment`), so the host only copies.
"""

from __future__ import annotations

import grain
import numpy as np


def shift_sequence(one_hot: np.ndarray, shift: int) -> np.ndarray:
    """`[L, 4]` moved right by `shift` (left if negative), zero-padded."""
    if shift == 0:
        return one_hot
    out = np.zeros_like(one_hot)
    if shift > 0:
        out[shift:] = one_hot[:-shift]
    else:
        out[:shift] = one_hot[-shift:]
    return out


def reverse_complement(one_hot: np.ndarray, target: np.ndarray,
                       strand_pair: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(`[L, 4]`, `[bins, T]`) -> the same example read from the other strand."""
    target = target[::-1]
    if strand_pair is not None:
        target = target[:, strand_pair]
    return np.ascontiguousarray(one_hot[::-1, ::-1]), np.ascontiguousarray(target)


MAX_SHIFT = 3  # bp, either way (the seed's and Basenji2's)


def draw(rng: np.random.Generator, rc: bool = True, max_shift: int = MAX_SHIFT) -> tuple[bool, int]:
    """(reverse complement?, shift) of one example: the one place that consumes the generator, so
    host (`Augment`) and device (`Draws`) augmentation get the same values from grain's generator."""
    flip = bool(rc and rng.random() < 0.5)
    shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
    return flip, shift


class Augment(grain.transforms.RandomMap):
    """Random reverse complement and shift of `{"sequence", "target"}` examples."""

    def __init__(self, strand_pair: np.ndarray | None = None, max_shift: int = MAX_SHIFT,
                 reverse_complement: bool = True):
        self.strand_pair = strand_pair
        self.max_shift = max_shift
        self.rc = reverse_complement

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        seq, tgt = element["sequence"], element["target"]
        flip, shift = draw(rng, self.rc, self.max_shift)
        if flip:
            seq, tgt = reverse_complement(seq, tgt, self.strand_pair)
        seq = shift_sequence(seq, shift)
        return {**element, "sequence": seq, "target": tgt}


class Draws(grain.transforms.RandomMap):
    """`Augment`'s draws without the data: `{"index": i}` -> `{"index", "rc", "shift"}`, applied later
    on the device. At the same place in the same grain pipeline, grain gives each element the same
    generator (keyed by seed and position, not by content), hence the same draws."""

    def __init__(self, max_shift: int = MAX_SHIFT, reverse_complement: bool = True):
        self.max_shift, self.rc = max_shift, reverse_complement

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        flip, shift = draw(rng, self.rc, self.max_shift)
        return {**element, "rc": flip, "shift": shift}
