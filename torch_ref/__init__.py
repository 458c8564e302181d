"""PyTorch reference of the seed's Basenji2' / Basenji2'' (state_dict-compatible)."""

from torch_ref.model import Basenji2, FineTunedBasenji2, load_seed_state_dict, strip_module_prefix

__all__ = ["Basenji2", "FineTunedBasenji2", "load_seed_state_dict", "strip_module_prefix"]
