"""What a training run is made of: its data sources, its model config and its initial weights."""

from __future__ import annotations

import dataclasses
import os

from jax_basenji import checkpoint
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource
from jax_basenji.errors import InputError
from jax_basenji.tracks import inherited_targets
from jax_basenji.train_config import TrainConfig


def initial_arrays(path: str, base: ModelConfig) -> tuple[dict, ModelConfig]:
    """Weights to start from: a jax_basenji checkpoint, a torch `.pt`/`.pth` or a Keras `.h5` (-> arrays, config)."""
    if os.path.isdir(path):
        arrays, cfg, _ = checkpoint.load_arrays(path)
        return arrays, cfg.replace(seq_length=base.seq_length)
    from jax_basenji.convert.foreign import read_weights

    arrays, cfg, _ = read_weights(path, base.variant, lambda _: base)
    return arrays, cfg


@dataclasses.dataclass
class RunSetup:
    """The resolved inputs of a run."""

    model_cfg: ModelConfig  # with every head, the data's length and the run's BatchNorm momentum/remat
    train_src: dict  # {species or head: source of training examples}
    valid_src: dict  # {species or head: source of validation examples}
    init_arrays: dict | None  # initial weights; None: fresh init
    fresh_heads: tuple[str, ...]  # heads of `init_arrays` that start from random init
    n_value: float  # one-hot value of N: the run's, else the one the initial weights recorded
    inherited_targets: dict  # {head: targets.txt rows} the initial weights bring for heads not trained here


def resolve(model_cfg: ModelConfig, tc: TrainConfig, sources: dict | None,
            init: tuple[dict, ModelConfig, tuple[str, ...]] | None) -> RunSetup:
    """Sources from `tc` (unless given), the initial weights, and a model config that fits the data.

    `sources`: {species or head: (train source, valid source)}; `init`: (arrays, model
    config with every head, heads that start from random init), as fine-tuning passes them.
    """
    if sources is None:
        fasta = dict(tc.fasta)
        sources = {s: tuple(BasenjiSource(tc.data, s, subset, seq_length=tc.seq_length, fasta=fasta.get(s))
                            for subset in ("train", "valid")) for s in tc.species}
    train_src = {s: pair[0] for s, pair in sources.items()}
    valid_src = {s: pair[1] for s, pair in sources.items()}
    length = train_src[tc.species[0]].seq_length
    fresh_heads: tuple[str, ...] = ()
    if init is not None:
        init_arrays, model_cfg, fresh_heads = init
        model_cfg = model_cfg.replace(seq_length=length)
    elif tc.init_from:
        init_arrays, model_cfg = initial_arrays(tc.init_from, model_cfg.replace(seq_length=length))
    else:
        init_arrays = None
        model_cfg = model_cfg.replace(seq_length=length,
                                      heads=tuple((s, train_src[s].num_targets) for s in tc.species))
    # Run options apply whatever the initial weights (fresh, checkpoint, .pt, .pth, .h5).
    model_cfg = model_cfg.replace(remat=tc.remat, **({"bn_momentum": tc.bn_momentum}
                                                      if tc.bn_momentum is not None else {}))
    for s, src in train_src.items():
        bins = model_cfg.output_bins(src.seq_length)
        if (bins, model_cfg.head_tracks.get(s)) != src.target_shape:
            raise InputError(f"{s} data: targets are {src.target_shape} (bins, tracks); the model "
                             f"gives {bins} bins x {model_cfg.head_tracks.get(s)} tracks at {src.seq_length} bp")
    n_value, inherited = (0.0 if tc.n_value is None else tc.n_value), {}
    if tc.init_from:  # what the initial weights recorded: a checkpoint's metadata (None for a foreign file)
        meta = checkpoint.read_meta(tc.init_from) if os.path.isdir(tc.init_from) else None
        if tc.n_value is None:
            n_value = checkpoint.recorded_n_value(meta, model_cfg)
        inherited = inherited_targets(meta, model_cfg.head_tracks)
    return RunSetup(model_cfg, train_src, valid_src, init_arrays, fresh_heads, n_value, inherited)
