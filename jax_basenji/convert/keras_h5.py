"""The published Keras HDF5 files (`model_human.h5`, `model_mouse.h5`), read with h5py.

Keras names layers with numeric suffixes that depend on what the saving process
had built before (`conv1d_30` ...), so layers are matched by their order in the
file's `layer_names` and by the variables they hold, never by suffix. The name
table uses the ordinal of each layer among those of its kind:

  Keras layer (ordinal)            JAX module path                  kind
  conv[0], bn[0]                   stem/{conv,bn}                   conv, bn
  conv[1 + i], bn[1 + i]           tower/i/{conv,bn}                i < tower_layers
  conv[T + 1 + 2j], bn[...]        dilated/j/{conv1,bn1}            T = tower_layers
  conv[T + 2 + 2j], bn[...]        dilated/j/{conv2,bn2}
  conv[T + 1 + 2D], bn[...]        final/{conv,bn}                  D = dilated_layers
  dense[0]                         heads/<head>/linear              linear
Both `model.save` files (weights under `model_weights/`) and `save_weights`
files (layer groups at the root) are read. Keras stores no batch counter: the
JAX `count` of every BatchNorm starts at 0.
"""

from __future__ import annotations

import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.convert.table import KERAS_KINDS, ConversionError, Path, head_name, param_table, to_jax

# Variables a weighted layer holds -> its kind; anything else is not part of Basenji2.
LAYER_KINDS = {("kernel",): "conv", ("bias", "kernel"): "conv_or_dense",
               ("beta", "gamma", "moving_mean", "moving_variance"): "bn"}


def module_table(cfg: ModelConfig, head: str) -> list[tuple[str, Path, str]]:
    """(Keras layer ordinal, JAX module path, kind), in the file's layer order per kind."""
    blocks: list[Path] = [("stem",), *[("tower", i) for i in range(cfg.tower_layers)]]
    convs = [(*b, "conv") for b in blocks]
    norms = [(*b, "bn") for b in blocks]
    for j in range(cfg.dilated_layers):
        convs += [("dilated", j, "conv1"), ("dilated", j, "conv2")]
        norms += [("dilated", j, "bn1"), ("dilated", j, "bn2")]
    convs.append(("final", "conv"))
    norms.append(("final", "bn"))
    return ([(f"conv[{i}]", p, "conv") for i, p in enumerate(convs)]
            + [(f"bn[{i}]", p, "bn") for i, p in enumerate(norms)]
            + [("dense[0]", ("heads", head, "linear"), "linear")])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_weighted_layers(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """[(Keras layer name, {variable: array})] of every layer with weights, in `layer_names` order."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path} is not a readable HDF5 file: {e}") from None
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs or np.ndim(group.attrs["layer_names"]) != 1:
            raise ConversionError(f"{path} is not a Keras weights file (no layer_names list)")
        layers = []
        for name in map(_text, group.attrs["layer_names"]):
            try:
                g = group[name]
                names = [_text(w) for w in g.attrs.get("weight_names", [])]
                if names:  # variable 'conv1d/kernel:0' -> 'kernel'
                    layers.append((name, {w.split("/")[-1].split(":")[0]: np.asarray(g[w]) for w in names}))
            except (KeyError, OSError) as e:  # a listed group or dataset is missing or unreadable
                raise ConversionError(f"{path}: layer {name!r} is damaged or incomplete: {e}") from None
    return layers


def foreign_arrays(path: str, layers) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """{ordinal key: array} and {ordinal: Keras layer name} from the weighted layers."""
    arrays, names, counts = {}, {}, {"conv": 0, "bn": 0, "dense": 0}
    for layer, weights in layers:
        kind = LAYER_KINDS.get(tuple(sorted(weights)))
        if kind == "conv_or_dense":
            kind = "conv" if weights["kernel"].ndim == 3 else "dense"
        if kind is None:
            raise ConversionError(f"{path}: layer {layer!r} holds {sorted(weights)}: not a layer of Basenji2")
        ordinal = f"{kind}[{counts[kind]}]"
        counts[kind] += 1
        names[ordinal] = layer
        arrays.update({f"{ordinal}/{var}": value for var, value in weights.items()})
    return arrays, names


def arrays_from_file(path: str, base: ModelConfig, expected_shapes, head: str | None = None
                     ) -> tuple[dict, ModelConfig]:
    """A Keras Basenji2 `.h5` -> (JAX arrays, `base` with the file's one head)."""
    layers = read_weighted_layers(path)
    arrays, names = foreign_arrays(path, layers)
    want = 2 * (1 + base.tower_layers + 2 * base.dilated_layers + 1) + 1
    if len(layers) != want or "dense[0]/kernel" not in arrays:
        raise ConversionError(f"{path} has {len(layers)} weighted layers; {base.variant} with {base.tower_layers} "
                              f"tower and {base.dilated_layers} residual blocks has {want} (Conv1D and "
                              f"BatchNormalization pairs, then one Dense)")
    tracks = int(arrays["dense[0]/kernel"].shape[1])
    cfg = base.replace(heads=((head_name(tracks, head, base), tracks),))
    shapes = expected_shapes(cfg)
    table = param_table(module_table(cfg, cfg.heads[0][0]), KERAS_KINDS, conv_bias=cfg.conv_bias, sep="/")
    counts = {p: np.zeros(s, np.int32) for p, s in shapes.items() if p[-1] == "count"}
    try:
        return to_jax(arrays, table, shapes, f"{path} does not match {cfg.variant}", counts), cfg
    except ConversionError as e:
        msg = str(e)
        for ordinal, layer in names.items():  # name the file's own layers in the message
            msg = msg.replace(ordinal + "/", f"{layer}/")
        raise ConversionError(msg) from None
