"""Weights from the files users hold, and back: seed `.pt`, basenji2-pytorch `.pth`, Keras `.h5`.

One module per foreign layout (`seed_torch`, `basenji2_pytorch`, `keras_h5`)
over the shared name-table machinery (`table`); `foreign` reads and writes
files, `cli` is `python -m jax_basenji.convert`. Exports load lazily so that
importing `jax_basenji.convert.table` (for `ConversionError`) pulls in no torch.
"""

from jax_basenji.convert.table import ConversionError

_LAZY = {
    "read_weights": "foreign", "arrays_from_torch": "foreign", "load_torch_state_dict": "foreign",
    "model_from_torch": "foreign", "torch_state_from_arrays": "foreign", "save_torch": "foreign",
    "expected_shapes": "foreign", "main": "cli",
}

__all__ = ["ConversionError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jax_basenji.convert.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jax_basenji.convert' has no attribute {name!r}")
