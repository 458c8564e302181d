"""PyTorch references: the seed's Basenji2' / Basenji2'' and the published Basenji2
(basenji2-pytorch's state_dict), each state_dict-compatible with the files users hold."""

from torch_ref.model import Basenji2, FineTunedBasenji2, load_seed_state_dict, strip_module_prefix
from torch_ref.published import PublishedBasenji2


def build_torch_model(cfg):
    """The torch reference of `cfg`'s variant: the published Basenji2 or the seed's."""
    return PublishedBasenji2(cfg) if cfg.variant == "basenji2" else Basenji2(cfg)


__all__ = ["Basenji2", "FineTunedBasenji2", "PublishedBasenji2", "build_torch_model", "load_seed_state_dict",
           "strip_module_prefix"]
