"""Checkpoint conversion between the files users hold and jax_basenji checkpoints.

  python -m jax_basenji.convert torch-to-jax --variant basenji2-prime --input model.pt --output CKPT
  python -m jax_basenji.convert torch-to-jax --variant basenji2 --input basenji2.pth --output CKPT [--gelu erf]
  python -m jax_basenji.convert keras-to-jax --input model_human.h5 --output CKPT [--head human] [--gelu sigmoid]
  python -m jax_basenji.convert jax-to-torch --input CKPT --output model.pt [--head human]

Seed `.pt` files load with or without `nn.DataParallel`'s `module.` prefix;
fine-tuned ones (`model.pretrained_model.*` + `new_head.head.0.*`) get a JAX
head named `finetune` (or `--head-name`). The published Basenji2 (`--variant
basenji2`: basenji2-pytorch's `.pth` or the Keras `.h5`) holds one head, named
by `--head` or its size (5313 human, 1643 mouse). Its GELU form defaults to
"sigmoid", the form the published weights were trained with; `--gelu erf`
reproduces basenji2-pytorch's own outputs. jax-to-torch writes the layout of
the checkpoint's variant (seed, or basenji2-pytorch for basenji2).
"""

from __future__ import annotations

import argparse
import json

from jax_basenji import checkpoint
from jax_basenji.cli import InputError, Parser, one_line_errors
from jax_basenji.config import GELU_FORMS, SEED_VARIANTS, VARIANTS, ModelConfig
from jax_basenji.convert import keras_h5
from jax_basenji.convert.foreign import (WIDTHS, expected_shapes, foreign_record, read_weights, save_torch,
                                        torch_state_from_arrays, width_preset)


def base_config(variant: str | None, config_path: str | None = None, gelu: str | None = None,
                bn_momentum: float | None = None, widths: str = "basenji2") -> ModelConfig:
    """The architecture a foreign file is read as: a preset, or a config JSON (e.g. tiny widths)."""
    if config_path:
        try:
            with open(config_path) as f:
                base = ModelConfig.from_dict(json.load(f))
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise InputError(f"{config_path}: not a model config: {e}") from None
        if variant and variant != base.variant:  # the other fields belong to the config's own variant
            raise InputError(f"{config_path} describes {base.variant}, not {variant}")
    elif variant:
        base = width_preset(variant, widths)
    else:
        raise InputError(f"--variant is required for a seed .pt ({' or '.join(SEED_VARIANTS)}): "
                         "the weights of the two variants are indistinguishable")
    changes = {"gelu": gelu, "bn_momentum": bn_momentum}
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


def torch_to_jax(args: argparse.Namespace) -> tuple[ModelConfig, str | None]:
    # A config JSON names its own variant; else the file's keys may (basenji2-pytorch).
    arrays, cfg, new_head = read_weights(
        args.input, args.variant, lambda v: base_config(v, args.config, args.gelu, args.bn_momentum, args.widths),
        head=args.head, head_name=args.head_name)
    return _save(args, arrays, cfg, new_head)


def keras_to_jax(args: argparse.Namespace) -> tuple[ModelConfig, str | None]:
    base = base_config("basenji2", args.config, args.gelu, widths=args.widths)
    arrays, cfg = keras_h5.arrays_from_file(args.input, base, expected_shapes, args.head)
    return _save(args, arrays, cfg, None)


def _save(args, arrays, cfg, new_head):
    checkpoint.save_arrays(args.output, arrays, cfg, torch_new_head=new_head, overwrite=args.overwrite,
                           extra={"converted_from": {"path": args.input, "command": args.direction},
                                  **foreign_record(cfg)})
    return cfg, new_head


def jax_to_torch(args: argparse.Namespace) -> None:
    arrays, cfg, meta = checkpoint.load_arrays(args.input)
    save_torch(torch_state_from_arrays(arrays, cfg, meta.get("torch_new_head"), args.head),
               args.output, args.overwrite)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m jax_basenji.convert", description=__doc__)
    sub = p.add_subparsers(dest="direction", required=True)

    def common(q, what):
        q.add_argument("--input", required=True, help=what)
        q.add_argument("--output", required=True, help="checkpoint directory to create")
        q.add_argument("--config", help="model config JSON for non-preset widths (ModelConfig.to_json())")
        q.add_argument("--widths", choices=WIDTHS, default="basenji2",
                       help="layer widths without --config: the real Basenji2, or the tiny test model")
        q.add_argument("--head", help="JAX name of a one-head published file's head (default: by its size, "
                                      "5313 human, 1643 mouse)")
        q.add_argument("--gelu", choices=GELU_FORMS, help="GELU form to record (basenji2 default: sigmoid, the "
                                                          "published Keras model's; erf = basenji2-pytorch's)")
        q.add_argument("--overwrite", action="store_true", help="replace an existing output")

    t2j = sub.add_parser("torch-to-jax", help="seed .pt or basenji2-pytorch .pth -> checkpoint directory")
    common(t2j, "seed .pt (with or without 'module.') or basenji2-pytorch .pth state_dict")
    t2j.add_argument("--variant", choices=VARIANTS,
                     help="architecture of the file (required for seed .pt; basenji2 is detected from its keys)")
    t2j.add_argument("--bn-momentum", type=float, default=None,
                     help="BatchNorm momentum in PyTorch semantics to record (default: the preset's)")
    t2j.add_argument("--head-name", default="finetune",
                     help="JAX name of a seed fine-tuned checkpoint's new head (default: finetune)")
    k2j = sub.add_parser("keras-to-jax", help="published Keras Basenji2 .h5 -> checkpoint directory")
    common(k2j, "Keras HDF5 (model.save or save_weights), e.g. model_human.h5")
    j2t = sub.add_parser("jax-to-torch", help="checkpoint directory -> seed .pt or basenji2-pytorch .pth")
    j2t.add_argument("--input", required=True, help="checkpoint directory")
    j2t.add_argument("--output", required=True, help=".pt/.pth file to write")
    j2t.add_argument("--head", help="basenji2 checkpoints with several heads: the one to write")
    j2t.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.direction == "jax-to-torch":
        jax_to_torch(args)
        print(f"wrote {args.output}")
        return 0
    cfg, _ = (torch_to_jax if args.direction == "torch-to-jax" else keras_to_jax)(args)
    print(f"wrote {args.output}: {cfg.variant} (GELU {cfg.gelu}), heads {cfg.head_tracks}")
    return 0
