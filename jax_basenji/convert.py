"""torch <-> JAX checkpoint conversion, as a module and a CLI.

  python -m jax_basenji.convert torch-to-jax --variant basenji2-prime --input model.pt --output CKPT
  python -m jax_basenji.convert jax-to-torch --input CKPT --output model.pt

Seed checkpoints load with or without the `module.` prefix of nn.DataParallel;
fine-tuned ones (`model.pretrained_model.*` + `new_head.head.0.*`) are detected
from their keys and get a JAX head named `finetune` (or `--head-name`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict
from typing import Mapping

import jax
import numpy as np
import torch
from flax import nnx

from jax_basenji import checkpoint
from jax_basenji.cli import InputError, atomic_output, one_line_errors
from jax_basenji.config import ModelConfig
from jax_basenji.convert_table import (ConversionError, flatten, infer_heads, is_finetuned,
                                       jax_to_torch, torch_to_jax)
from jax_basenji.model import Basenji2, build_model
from torch_ref import strip_module_prefix


def load_torch_state_dict(path: str) -> OrderedDict:
    """A seed `.pt` as an ordered {key: numpy array}, `module.` prefix removed."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle/zip errors: say which file, in one line
        reason = (str(e).strip().splitlines() or [""])[0]
        raise ConversionError(f"{path} is not a readable torch checkpoint: {type(e).__name__}: {reason}") from e
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} does not hold a state_dict (a mapping of tensor names to tensors)")
    return OrderedDict((k, v.detach().cpu().numpy()) for k, v in strip_module_prefix(obj).items())


def arrays_from_torch(state_dict: Mapping[str, np.ndarray], base: ModelConfig,
                      head_name: str = "finetune") -> tuple[dict, ModelConfig, str | None]:
    """Seed state_dict -> (JAX arrays, config with the checkpoint's heads, new-head name or None).

    `base` fixes the variant and widths (the weights cannot reveal the variant);
    heads and their track counts come from the weights.
    """
    new_head = head_name if is_finetuned(state_dict) else None
    cfg = base.replace(heads=infer_heads(state_dict, new_head))
    shapes = {p: s.shape for p, s in flatten(checkpoint.abstract_arrays(cfg)).items()}
    return torch_to_jax(state_dict, cfg, shapes, new_head), cfg, new_head


def model_from_torch(state_dict: Mapping, base: ModelConfig, head_name: str = "finetune") -> Basenji2:
    """A JAX model (train mode) holding the weights of a seed state_dict (tensors or arrays)."""
    sd = OrderedDict((k, v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                     for k, v in strip_module_prefix(state_dict).items())
    arrays, cfg, _ = arrays_from_torch(sd, base, head_name)
    model = build_model(cfg)
    nnx.update(model, arrays)
    return model


def torch_state_from_arrays(arrays: Mapping, cfg: ModelConfig, new_head: str | None = None) -> OrderedDict:
    """JAX arrays -> an OrderedDict of torch tensors in the seed's key order."""
    return OrderedDict((k, torch.from_numpy(np.array(v)))
                       for k, v in jax_to_torch(jax.tree.map(np.asarray, arrays), cfg, new_head).items())


def torch_to_jax_file(input_path: str, output_dir: str, base: ModelConfig, *,
                      head_name: str = "finetune", overwrite: bool = False) -> ModelConfig:
    sd = load_torch_state_dict(input_path)
    arrays, cfg, new_head = arrays_from_torch(sd, base, head_name)
    checkpoint.save_arrays(output_dir, arrays, cfg, torch_new_head=new_head, overwrite=overwrite)
    return cfg


def jax_to_torch_file(input_dir: str, output_path: str, *, overwrite: bool = False) -> None:
    arrays, cfg, meta = checkpoint.load_arrays(input_dir)
    state = torch_state_from_arrays(arrays, cfg, meta.get("torch_new_head"))
    tmp = atomic_output(output_path, overwrite)
    try:
        torch.save(state, tmp)
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _base_config(args: argparse.Namespace) -> ModelConfig:
    if args.config:
        with open(args.config) as f:
            base = ModelConfig.from_dict(json.load(f))
        if args.variant:
            base = base.replace(variant=args.variant)
    elif args.variant in ("basenji2-double-prime", "basenji2-prime"):
        base = ModelConfig.preset(args.variant)
    else:
        raise InputError("--variant is required (basenji2-double-prime or basenji2-prime): "
                         "the weights of the two variants are indistinguishable")
    if args.bn_momentum is not None:
        base = base.replace(bn_momentum=args.bn_momentum)
    return base


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jax_basenji.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="direction", required=True)
    t2j = sub.add_parser("torch-to-jax", help="seed .pt state_dict -> orbax checkpoint directory")
    t2j.add_argument("--input", required=True, help="seed .pt file (state_dict, with or without 'module.')")
    t2j.add_argument("--output", required=True, help="checkpoint directory to create")
    t2j.add_argument("--variant", choices=["basenji2-double-prime", "basenji2-prime"],
                     help="residual variant the .pt was trained as (recorded in the checkpoint)")
    t2j.add_argument("--config", help="model config JSON for non-preset architectures (e.g. tiny)")
    t2j.add_argument("--bn-momentum", type=float, default=None,
                     help="BatchNorm momentum in PyTorch semantics to record (default: the preset's 0.9)")
    t2j.add_argument("--head-name", default="finetune",
                     help="JAX name of a fine-tuned checkpoint's new head (default: finetune)")
    t2j.add_argument("--overwrite", action="store_true", help="replace an existing output")
    j2t = sub.add_parser("jax-to-torch", help="orbax checkpoint directory -> seed .pt state_dict")
    j2t.add_argument("--input", required=True, help="checkpoint directory")
    j2t.add_argument("--output", required=True, help=".pt file to write")
    j2t.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.direction == "torch-to-jax":
        cfg = torch_to_jax_file(args.input, args.output, _base_config(args),
                                head_name=args.head_name, overwrite=args.overwrite)
        print(f"wrote {args.output}: {cfg.variant}, heads {cfg.head_tracks}")
    else:
        jax_to_torch_file(args.input, args.output, overwrite=args.overwrite)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
