"""Foreign weight files -> JAX arrays and back: torch I/O and the choice of layout.

  seed .pt (Basenji2' / Basenji2'', DataParallel, fine-tuned)  -> seed_torch
  basenji2-pytorch .pth (keys `model.trunk.*`)                 -> basenji2_pytorch
  Keras .h5 (model.save or save_weights)                       -> keras_h5
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from typing import Callable, Mapping

import jax
import numpy as np
import torch
from flax import nnx
from flax.traverse_util import flatten_dict

from jax_basenji import checkpoint
from jax_basenji.atomic import atomic_open
from jax_basenji.cli import InputError
from jax_basenji.config import SEED_VARIANTS, ModelConfig
from jax_basenji.convert import basenji2_pytorch, keras_h5, seed_torch
from jax_basenji.convert.table import ConversionError
from jax_basenji.model import Basenji2
from torch_ref import strip_module_prefix

def expected_shapes(cfg: ModelConfig) -> dict:
    """{JAX leaf path: shape} of every saved array of a model with `cfg`."""
    return {p: s.shape for p, s in flatten_dict(checkpoint.abstract_arrays(cfg)).items()}


def _as_state_dict(obj) -> OrderedDict:
    # A Lightning checkpoint nests the state_dict; PLBasenji2 prefixes its model with `basenji2.`.
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    sd = strip_module_prefix(obj)
    if sd and all(k.startswith("basenji2.") for k in sd):
        sd = OrderedDict((k[len("basenji2."):], v) for k, v in sd.items())
    return sd


def check_zip(path: str) -> None:
    """ConversionError if a zip-format torch file fails its per-entry CRC32 (torch.load never checks
    them: a flipped byte in a tensor would load as a silently different weight)."""
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format, or not a torch file: torch.load says which
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ConversionError(f"{path}: damaged torch checkpoint ({type(e).__name__}: {e})") from None
    if bad is not None:
        raise ConversionError(f"{path}: damaged torch checkpoint: entry {bad} does not match its CRC32")


def load_torch_state_dict(path: str) -> OrderedDict:
    """A `.pt`/`.pth` as an ordered {key: numpy array}, wrapper prefixes removed."""
    try:
        check_zip(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, ConversionError):
        raise
    except Exception as e:  # pickle/zip errors: say which file, in one line
        reason = (str(e).strip().splitlines() or [""])[0]
        raise ConversionError(f"{path} is not a readable torch checkpoint: {type(e).__name__}: {reason}") from e
    sd = _as_state_dict(obj) if isinstance(obj, Mapping) else None
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConversionError(f"{path} does not hold a state_dict (a mapping of tensor names to tensors)")
    # numpy has no bfloat16: such weights are read as float32 (exactly).
    return OrderedDict((k, (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy())
                       for k, v in sd.items())


def arrays_from_torch(state_dict: Mapping[str, np.ndarray], base: ModelConfig, head_name: str = "finetune",
                      head: str | None = None) -> tuple[dict, ModelConfig, str | None]:
    """A torch state_dict in either layout -> (JAX arrays, config, seed fine-tuning head or None).

    `base` gives the architecture: a seed variant for seed `.pt` files (the
    weights cannot tell Basenji2' from Basenji2''), `basenji2` for basenji2-pytorch.
    """
    published = basenji2_pytorch.is_basenji2_pytorch(state_dict)
    if published != (base.variant == "basenji2"):
        layout = "basenji2-pytorch (published Basenji2)" if published else "seed (Basenji2'/'')"
        raise ConversionError(f"the state_dict is in the {layout} layout, not {base.variant}: "
                              f"pass --variant {'basenji2' if published else ' or '.join(SEED_VARIANTS)}")
    if published:
        return (*basenji2_pytorch.arrays_from_state_dict(state_dict, base, expected_shapes, head), None)
    return seed_torch.arrays_from_state_dict(state_dict, base, expected_shapes, head_name)


def is_keras(path: str) -> bool:
    """An HDF5 file (Keras' format), told by its signature, whatever its name."""
    import h5py

    return os.path.isfile(path) and h5py.is_hdf5(path)


def read_weights(path: str, variant: str | None, base_for: Callable[[str | None], ModelConfig], *,
                 head: str | None = None, head_name: str = "finetune") -> tuple[dict, ModelConfig, str | None]:
    """A Keras `.h5`, a basenji2-pytorch `.pth` or a seed `.pt` -> (JAX arrays, config, seed fine-tuning head).

    The published files are recognised (HDF5; `model.trunk.*` keys) when `variant`
    is None; a seed `.pt` needs the variant (the weights cannot tell Basenji2' from
    Basenji2''). `base_for(variant)` gives the architecture to read the file as (a
    preset, tiny widths or a config JSON) and raises InputError if it cannot.
    """
    keras = is_keras(path)
    state_dict = None if keras else load_torch_state_dict(path)
    if variant is None and (keras or basenji2_pytorch.is_basenji2_pytorch(state_dict)):
        variant = "basenji2"
    base = base_for(variant)
    if keras:
        if base.variant != "basenji2":
            raise InputError(f"{path} is a Keras file: only the published Basenji2 (--variant basenji2) comes as one")
        return (*keras_h5.arrays_from_file(path, base, expected_shapes, head), None)
    try:
        return arrays_from_torch(state_dict, base, head_name, head)
    except ConversionError as e:
        fits = [w for w in WIDTHS if _reads_as(state_dict, width_preset(base.variant, w), head_name, head)]
        if fits:  # the right variant at other widths: say which flag reads it
            raise ConversionError(f"{path} has the layers of --widths {fits[0]}: pass it ({e})") from None
        raise


def foreign_record(cfg: ModelConfig) -> dict:
    """What a foreign file's weights were trained with, as a checkpoint records it: the N encoding and,
    for heads of the Basenji2 data set's sizes, their targets tables."""
    from jax_basenji.tracks import basenji2_targets

    return {"n_value": checkpoint.foreign_n_value(cfg), "head_targets": basenji2_targets(cfg.head_tracks)}


WIDTHS = ("basenji2", "tiny")  # layer widths of the presets: the real Basenji2, or the tiny test model


def width_preset(variant: str, widths: str = "basenji2") -> ModelConfig:
    """The preset of `variant` at `widths` (`tiny`: the test model's layer widths)."""
    if widths == "tiny":
        return ModelConfig.preset("tiny-basenji2" if variant == "basenji2" else "tiny", variant=variant)
    return ModelConfig.preset(variant)


def _reads_as(state_dict, cfg: ModelConfig, head_name: str, head: str | None) -> bool:
    try:
        arrays_from_torch(state_dict, cfg, head_name, head)
    except ConversionError:
        return False
    return True


def model_from_torch(state_dict: Mapping, base: ModelConfig, head_name: str = "finetune") -> Basenji2:
    """A JAX model (train mode) holding the weights of a torch state_dict (tensors or arrays)."""
    sd = OrderedDict((k, v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                     for k, v in _as_state_dict(state_dict).items())
    arrays, cfg, _ = arrays_from_torch(sd, base, head_name)
    return checkpoint.model_with(cfg, arrays)


def torch_state_from_arrays(arrays: Mapping, cfg: ModelConfig, new_head: str | None = None,
                            head: str | None = None) -> OrderedDict:
    """JAX arrays -> torch tensors in the layout of `cfg`'s variant (seed or basenji2-pytorch)."""
    arrays = jax.tree.map(np.asarray, arrays)
    if cfg.variant == "basenji2":
        sd = basenji2_pytorch.state_dict_from_arrays(arrays, cfg, head)
    else:
        sd = seed_torch.state_dict_from_arrays(arrays, cfg, new_head)
    return OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in sd.items())


def save_torch(state: Mapping, output_path: str, overwrite: bool = False) -> None:
    """torch.save under a temporary name, renamed when complete.

    Through a file object: torch names the archive's inner folder after the file name, and
    refuses the temporary name `.tmp-NAME-…` of an output NAME without an extension."""
    with atomic_open(output_path, "wb", overwrite) as f:
        torch.save(state, f)
