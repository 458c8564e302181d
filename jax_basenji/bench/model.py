"""Model benchmark: the JAX engine and torch_ref side by side, same weights, same inputs.

Each (framework, mode) pair runs in its own child process so that its peak
memory is its own and the two thread pools never compete for the cores. The
parent writes one seed-format `.pt` (torch init, fixed seed); the torch child
loads it, the JAX child converts it with `jax_basenji.convert`. Both read the
same one-hot input and Poisson-like targets drawn from a fixed numpy seed, and
both forward children save their output so the parent can check that the two
sides computed the same function (`max_rel_diff`).

Modes
  forward  eval-mode forward pass of the human head.
  train    one full training step of the seed's recipe on the human head:
           forward in train mode (dropout, BN batch statistics and running
           updates), Poisson loss, backward, global-norm clipping at 2, SGD with
           momentum 0.99. The mouse head is untouched (torch skips grad-None
           parameters; the JAX trainer keeps one optimizer state per head).

FLOPs (multiply-add = 2 FLOP) come from the layer shapes (`model_flops`):
for Basenji2 at 131,072 bp and the human head, ~233 GFLOP per forward. A
training step costs forward + input-gradient + weight-gradient passes = 3x
the forward, minus the input gradient of the stem (the one-hot input needs
none), ~695 GFLOP.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from jax_basenji.atomic import write_json
from jax_basenji.config import ModelConfig

# Dense bf16 peak of the accelerators we report MFU for (TFLOP/s, no sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def model_flops(cfg: ModelConfig, seq_length: int, head: str = "human") -> dict[str, float]:
    """FLOPs per sequence: {"forward": F, "train_step": T}, counting 2 per multiply-add."""
    length, convs = seq_length, []  # (output positions, kernel * cin * cout)
    widths = [cfg.stem_channels, *cfg.tower_channels]
    convs.append((length, cfg.stem_kernel * 4 * cfg.stem_channels))
    length //= 2
    for i in range(cfg.tower_layers):
        convs.append((length, cfg.tower_kernel * widths[i] * widths[i + 1]))
        length //= 2
    for _ in cfg.dilations:
        convs.append((length, cfg.dilated_kernel * cfg.trunk_channels * cfg.bottleneck_channels))
        convs.append((length, cfg.bottleneck_channels * cfg.trunk_channels))
    bins = length - 2 * cfg.crop_bins
    convs.append((bins, cfg.trunk_channels * cfg.final_channels))
    convs.append((bins, cfg.final_channels * cfg.head_tracks[head]))
    per_layer = [2.0 * n * w for n, w in convs]
    forward = sum(per_layer)
    # backward = weight gradients (1x) + input gradients (1x) except for the stem's input.
    return {"forward": forward, "train_step": 3 * forward - per_layer[0]}


def bench_inputs(batch: int, seq_length: int, bins: int, tracks: int, seed: int = 0):
    """One-hot `[batch, seq_length, 4]` float32 and Poisson targets `[batch, bins, tracks]`."""
    rng = np.random.default_rng(seed)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch, seq_length))]
    target = rng.poisson(1.0, (batch, bins, tracks)).astype(np.float32)
    return seq, target


def _timed(step, sync, warmup: int, repeats: int) -> dict:
    """First call timed alone (compilation for JAX), then `warmup` untimed, then the median of `repeats`
    blocking calls (`step()` then `sync()`, each timed), then `repeats` calls issued back to back with one
    `sync()` at the end (`async_s` per call: what a training loop that does not wait for every step sees)."""
    def blocking() -> float:
        t0 = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - t0

    first = blocking()
    for _ in range(warmup):
        blocking()
    times = [blocking() for _ in range(repeats)]
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    sync()
    return {"first_call_s": first, "median_s": statistics.median(times), "times_s": times,
            "async_s": (time.perf_counter() - t0) / repeats}


def eval_state(cfg: ModelConfig, arrays: dict, mesh):
    """(graph, state) of a `cfg` model in eval mode with `arrays` as its weights, the state on the devices once
    (replicated), as a trainer's is: numpy leaves would be copied in on every call (120 MB of fp32 weights
    per forward, which once doubled this benchmark's GPU forward time)."""
    import jax
    from flax import nnx

    from jax_basenji.checkpoint import model_with
    from jax_basenji.sharding import replicated

    model = model_with(cfg, arrays)
    model.eval()
    graph, state = nnx.split(model)
    return graph, jax.device_put(state, replicated(mesh))


# ----- children ----------------------------------------------------------------------------
def _torch_child(a: dict) -> dict:
    import torch

    from torch_ref import build_torch_model
    from torch_ref.losses import poisson_loss

    cfg = ModelConfig.from_dict(a["config"])
    device = torch.device("cuda" if a["device"] == "gpu" else "cpu")
    # Same precision on both sides: no TF32 behind an fp32 label.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = build_torch_model(cfg)
    model.load_state_dict(torch.load(a["weights"], map_location="cpu", weights_only=True))
    model.to(device)
    if a["framework"] == "torch_compile":  # TorchInductor; its compilation falls in the first call
        model = torch.compile(model)
    seq_np, target_np = bench_inputs(a["batch_size"], a["seq_length"], a["bins"], cfg.head_tracks["human"])
    seq, target = torch.from_numpy(seq_np).to(device), torch.from_numpy(target_np).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a["precision"] == "bf16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    if a["mode"] == "forward":
        model.eval()

        def step():
            with torch.no_grad(), autocast:
                out["pred"] = model(seq, "human")
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=a["lr"], momentum=0.99)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                pred = model(seq, "human")
            loss = poisson_loss(pred.float(), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = _timed(step, sync, a["warmup"], a["repeats"])
    result["peak_memory_gb"] = (torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None)
    result["threads"] = torch.get_num_threads()
    result["version"] = torch.__version__
    if "pred" in out:
        np.save(a["prediction"], out["pred"].float().cpu().numpy())
    return result


def _jax_child(a: dict) -> dict:
    import jax

    if a["precision"] == "fp32":  # fp32 means fp32 matmuls/convs on GPU too (no TF32)
        jax.config.update("jax_default_matmul_precision", "highest")
    from flax import nnx

    from jax_basenji.convert import arrays_from_torch, load_torch_state_dict
    from jax_basenji.sharding import global_batch, make_mesh
    from jax_basenji.train_config import TrainConfig
    from jax_basenji.model import compute_layout
    from jax_basenji.trainer import Trainer

    base = ModelConfig.from_dict(a["config"])
    if a["precision"] == "bf16":
        base = base.replace(dtype="bfloat16")
    arrays, cfg, _ = arrays_from_torch(load_torch_state_dict(a["weights"]), base)
    seq_np, target_np = bench_inputs(a["batch_size"], a["seq_length"], a["bins"], cfg.head_tracks["human"])
    mesh = make_mesh()
    batch = global_batch({"sequence": seq_np, "target": target_np}, mesh)
    out = {}
    if a["mode"] == "forward":
        graph, state = eval_state(cfg, arrays, mesh)

        @jax.jit
        def forward(state, sequence):
            return nnx.merge(graph, state)(sequence, "human")

        t0 = time.perf_counter()
        compiled = forward.lower(state, batch["sequence"]).compile()
        compile_s = time.perf_counter() - t0

        def step():
            out["pred"] = compiled(state, batch["sequence"])

        def sync():
            out["pred"].block_until_ready()
    else:
        tc = TrainConfig(species=("human",), batch_size=a["batch_size"], optimizer="sgd", lr=a["lr"],
                         momentum=0.99, clip_norm=2.0, precision=a["precision"])
        trainer = Trainer(cfg, tc, mesh)
        holder = {"state": trainer.init_state(arrays)}
        t0 = time.perf_counter()
        compiled = trainer.lower_train_step(holder["state"], batch, "human").compile()
        compile_s = time.perf_counter() - t0

        def step():
            holder["state"], holder["metrics"] = compiled(holder["state"], batch, trainer.hyper)

        def sync():
            holder["metrics"]["loss"].block_until_ready()
    result = _timed(step, sync, a["warmup"], a["repeats"])
    result["compile_s"] = compile_s
    mem = compiled.memory_analysis()
    result["xla_temp_gb"] = getattr(mem, "temp_size_in_bytes", 0) / 1e9 if mem is not None else None
    stats = jax.devices()[0].memory_stats() or {}
    result["peak_memory_gb"] = stats["peak_bytes_in_use"] / 1e9 if "peak_bytes_in_use" in stats else None
    result["version"] = jax.__version__
    result["device_kind"] = jax.devices()[0].device_kind
    multiple, gemm = compute_layout(cfg)  # "auto" as this device resolved it
    result["layout"] = {"channel_multiple": multiple, "gemm_convs": ",".join(gemm) or "none"}
    if "pred" in out:
        np.save(a["prediction"], np.asarray(out["pred"], dtype=np.float32))
    return result


def child_main(args_json: str) -> int:
    """Entry of a child process: run one (framework, mode) and write its figures."""
    a = json.loads(args_json)
    result = (_jax_child if a["framework"] == "jax" else _torch_child)(a)
    # Linux reports ru_maxrss in KiB: the whole process, imports and weights included.
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    with open(a["result"], "w") as f:
        json.dump(result, f)
    return 0


# ----- parent ------------------------------------------------------------------------------
def _run_child(a: dict) -> dict:
    env = dict(os.environ)
    if a["device"] == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "jax_basenji.bench", "_child", json.dumps(a)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{a['framework']} {a['mode']} benchmark failed: {tail}")
    with open(a["result"]) as f:
        return json.load(f)


def _row(r: dict, batch_size: int, flop: float, device: str, precision: str) -> dict:
    """`r` (a child's figures) with throughput, TFLOP/s and, for bf16 on a known GPU, MFU added."""
    r["sequences_per_s"] = batch_size / r["median_s"]
    r["async_sequences_per_s"] = batch_size / r["async_s"]
    r["tflops"] = flop * batch_size / r["median_s"] / 1e12
    r["async_tflops"] = flop * batch_size / r["async_s"] / 1e12
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in r.get("device_kind", "")), None)
    if device == "gpu" and peak and precision == "bf16":
        r["mfu"], r["async_mfu"] = r["tflops"] / peak, r["async_tflops"] / peak
    return r


def _bench_batch(spec: dict, batch_size: int, modes, frameworks, flops: dict, tmp: str, log) -> dict:
    """Every (mode, framework) at one batch size: {"batch_size", "rows", ratios, forward_max_rel_diff}."""
    result, rows = {"batch_size": batch_size}, {}
    for mode in modes:
        key = "train_step" if mode == "train" else "forward"
        for framework in frameworks:
            a = {**spec, "framework": framework, "mode": mode, "batch_size": batch_size,
                 "result": os.path.join(tmp, f"{framework}_{mode}.json"),
                 "prediction": os.path.join(tmp, f"{framework}_{mode}.npy")}
            r = rows[f"{framework}_{mode}"] = _row(_run_child(a), batch_size, flops[key], spec["device"],
                                                   spec["precision"])
            mfu = f"  MFU {r['mfu']:.1%} (async {r['async_mfu']:.1%})" if "mfu" in r else ""
            log(f"batch {batch_size:3d} {framework:13s} {mode:7s} median {r['median_s'] * 1e3:9.1f} ms  async "
                f"{r['async_s'] * 1e3:9.1f} ms  {r['sequences_per_s']:8.2f} seq/s  compile "
                f"{r.get('compile_s', 0):5.1f} s  {r['tflops']:7.3f} TFLOP/s{mfu}  peak RSS {r['peak_rss_gb']:.2f} GB")
        result[f"{key}_ratio"] = rows[f"jax_{mode}"]["median_s"] / rows[f"torch_{mode}"]["median_s"]
        result[f"{key}_async_ratio"] = rows[f"jax_{mode}"]["async_s"] / rows[f"torch_{mode}"]["async_s"]
        log(f"batch {batch_size:3d} {key}_ratio (JAX time / torch time) = {result[f'{key}_ratio']:.3f} "
            f"(async {result[f'{key}_async_ratio']:.3f})")
        if "torch_compile" in frameworks:
            ratio = rows[f"jax_{mode}"]["median_s"] / rows[f"torch_compile_{mode}"]["median_s"]
            result[f"{key}_ratio_vs_compile"] = ratio
            log(f"batch {batch_size:3d} {key}_ratio_vs_compile (JAX time / torch.compile time) = {ratio:.3f}")
    if "forward" in modes:
        ref = np.load(os.path.join(tmp, "torch_forward.npy"))
        got = np.load(os.path.join(tmp, "jax_forward.npy"))
        result["forward_max_rel_diff"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        log(f"batch {batch_size:3d} forward outputs agree to max|d|/max|ref| = {result['forward_max_rel_diff']:.2e}")
    result["rows"] = rows
    return result


def bench_model(*, preset: str, batch_sizes: Sequence[int], seq_length: int | None, precision: str,
                device: str, modes: tuple[str, ...] = ("forward", "train"), warmup: int = 1, repeats: int = 5,
                lr: float = 1e-4, torch_compile: bool = False, layout: dict | None = None,
                json_path: str | None = None, log=print) -> dict:
    """Both frameworks, every mode, at each batch size: {..., "runs": [one `_bench_batch` result per batch
    size]} with the JAX / torch time ratios (with `torch_compile`, torch_ref under torch.compile too).
    `layout`: the JAX compute layout asked for (`ModelConfig.channel_multiple`, `gemm_convs`; default
    "auto"); each JAX row records the layout its device ran.
    `json_path` is rewritten after each batch size, so a run cut short (a time limit, an out-of-memory
    child at the largest batch) keeps the figures of the batch sizes it finished."""
    import torch

    from torch_ref import build_torch_model

    cfg = ModelConfig.preset(preset, **(layout or {}))
    seq_length = seq_length or cfg.seq_length
    flops = model_flops(cfg, seq_length)
    result = {"benchmark": "model", "preset": preset, "batch_sizes": list(batch_sizes), "seq_length": seq_length,
              "layout_asked": {"channel_multiple": cfg.channel_multiple, "gemm_convs": cfg.gemm_convs},
              "precision": precision, "device": device, "host": platform.processor() or platform.machine(),
              "cpu_cores": os.cpu_count(), "gflop_per_sequence": {k: round(v / 1e9, 2) for k, v in flops.items()}}
    frameworks = ("torch", "torch_compile", "jax") if torch_compile else ("torch", "jax")
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        torch.manual_seed(0)
        weights = os.path.join(tmp, "weights.pt")
        torch.save(build_torch_model(cfg).state_dict(), weights)
        spec = {"config": cfg.to_dict(), "weights": weights, "seq_length": seq_length,
                "bins": cfg.output_bins(seq_length), "precision": precision, "device": device,
                "warmup": warmup, "repeats": repeats, "lr": lr}
        result["versions"] = {"torch": torch.__version__, "python": platform.python_version()}
        result["runs"] = []
        for b in batch_sizes:
            run = _bench_batch(spec, b, modes, frameworks, flops, tmp, log)
            result["runs"].append(run)
            result["versions"]["jax"] = run["rows"][f"jax_{modes[0]}"]["version"]
            if json_path:
                write_json(json_path, result)
    return result
