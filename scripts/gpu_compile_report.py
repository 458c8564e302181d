"""Compile the Basenji2 train step (and eval forward) for an NVIDIA H200 on a machine without a GPU, and
report what the program does: kernels, GB moved per step, convolution kinds, bf16 convolutions whose
channel counts cuDNN must pad. Regressions of the GPU program show on a CPU machine this way.

  python scripts/gpu_compile_report.py [--preset basenji2-double-prime] [--batch 4] [--precision bf16]
      [--modes train,forward] [--xla-option NAME=VALUE ...] [--json report.json] [--hlo-dir DIR]

Needs the jax CUDA plugin of the installed jax version (not a GPU), e.g. in a separate environment:
  pip install "jax-cuda13-plugin==$(python -c 'import jax; print(jax.__version__)')" jax-cuda13-pjrt==...
Without it the script says so and exits 0 (skipped). The target description is scripts/gpu/h200.txtpb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the host runs on CPU; the program is compiled for the GPU
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from jax_basenji.bench.hlo import entry_kernels, summary  # noqa: E402
from jax_basenji.config import ModelConfig  # noqa: E402
from jax_basenji.model import GPU_LAYOUT, build_model  # noqa: E402
from jax_basenji.train_config import TrainConfig  # noqa: E402
from jax_basenji.trainer import Trainer  # noqa: E402

TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu", "h200.txtpb")


def gpu_mesh(target: str) -> Mesh | None:
    """A one-device mesh of the deviceless GPU target, or None without the CUDA plugin."""
    from jax.experimental import topologies

    try:
        topo = topologies.get_topology_desc("deviceless", "cuda", target_config=open(target).read(),
                                            topology="1x1x1")
    except Exception as e:  # noqa: BLE001 - no plugin: jax raises several kinds
        print(f"skipped: no deviceless CUDA compiler ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
              file=sys.stderr)
        return None
    return Mesh(np.asarray(topo.devices), ("data",))


def compile_programs(cfg: ModelConfig, mesh: Mesh, batch: int, precision: str, modes: list[str],
                     options: dict | None = None) -> dict:
    """{mode: compiled} for "train" (the Trainer's own step, SGD as the paper) and "forward" (eval),
    compiled with XLA `options` (`compile(compiler_options=...)`) on top of the defaults."""
    rep, shard = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    bins, tracks = cfg.output_bins(cfg.seq_length), cfg.head_tracks["human"]
    seq = jax.ShapeDtypeStruct((batch, cfg.seq_length, 4), jnp.float32, sharding=shard)
    out = {}
    if "train" in modes:
        tc = TrainConfig(species=("human",), batch_size=batch, precision=precision)
        trainer = Trainer(cfg, tc, mesh)
        # The batch as the training reader hands it over (uint8 index, float16 targets, augmentation
        # draws), so the program is the one `train` runs, on-device augmentation included.
        reader = {"sequence": jax.ShapeDtypeStruct((batch, cfg.seq_length), jnp.uint8, sharding=shard),
                  "target": jax.ShapeDtypeStruct((batch, bins, tracks), jnp.float16, sharding=shard),
                  "rc": jax.ShapeDtypeStruct((batch,), jnp.bool_, sharding=shard),
                  "shift": jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=shard)}
        out["train"] = trainer.lower_train_step(trainer.abstract_state(), reader, "human").compile(options)
    if "forward" in modes:
        model_cfg = cfg.replace(dtype="bfloat16") if precision == "bf16" else cfg
        abstract = nnx.eval_shape(lambda: build_model(model_cfg))
        abstract.eval()
        graph, state = nnx.split(abstract)
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), state)
        forward = jax.jit(lambda state, x: nnx.merge(graph, state)(x, "human"))
        out["forward"] = forward.lower(state, seq).compile(options)
    return out


def parse_option(text: str) -> tuple[str, bool | int | str]:
    """"NAME=VALUE" -> (NAME, VALUE as a bool, an int or the string): XLA's option parser takes typed values."""
    name, value = text.split("=", 1)
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    return name, int(value) if value.lstrip("-").isdigit() else value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="basenji2-double-prime")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--modes", default="train,forward")
    p.add_argument("--channel-multiple", type=int, default=GPU_LAYOUT["channel_multiple"],
                   help="compute channel multiple (default: what a GPU runs; 1 = true widths)")
    p.add_argument("--gemm-convs", default=GPU_LAYOUT["gemm_convs"],
                   help="convolutions as matmuls (default: what a GPU runs; none = all convolutions)")
    p.add_argument("--target", default=TARGET, help="GPU target description (default: H200)")
    p.add_argument("--xla-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an XLA compiler option on top of the defaults (repeatable), e.g. "
                        "xla_gpu_enable_triton_gemm=false")
    p.add_argument("--json", help="write the report here too")
    p.add_argument("--hlo-dir", help="also write each program's optimized HLO text here")
    args = p.parse_args(argv)
    mesh = gpu_mesh(args.target)
    if mesh is None:
        return 0
    # The host's backend is the CPU: the GPU's "auto" layout is spelled out.
    cfg = ModelConfig.preset(args.preset, channel_multiple=args.channel_multiple, gemm_convs=args.gemm_convs)
    t0 = time.time()
    options = dict(parse_option(o) for o in args.xla_option)
    programs = compile_programs(cfg, mesh, args.batch, args.precision, args.modes.split(","), options)
    report = {"device": mesh.devices.flat[0].device_kind, "preset": args.preset, "batch": args.batch,
              "precision": args.precision,
              "channel_multiple": args.channel_multiple, "gemm_convs": args.gemm_convs, "xla_options": options, "compile_s": round(time.time() - t0, 1)}
    for mode, compiled in programs.items():
        text = compiled.as_text()
        if args.hlo_dir:
            os.makedirs(args.hlo_dir, exist_ok=True)
            with open(os.path.join(args.hlo_dir, f"{mode}.after_opt.hlo.txt"), "w") as f:
                f.write(text)
        memory = compiled.memory_analysis()
        report[mode] = {**summary(entry_kernels(text)),
                        "temp_gb": getattr(memory, "temp_size_in_bytes", 0) / 1e9}
        r = report[mode]
        print(f"{mode}: {r['kernels']} kernels, {r['gb_moved']:.2f} GB moved, temp {r['temp_gb']:.2f} GB; "
              f"convolutions {r['conv_kinds']}; bf16 convolutions with channels not a multiple of 8: "
              f"{len(r['bf16_convs_not_multiple_of_8'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
