"""`python -m jax_basenji.bench model`: runs both frameworks, reports ratios (no timing assertions)."""

import json
import os

import numpy as np
import pytest

from jax_basenji import bench
from jax_basenji.bench.model import model_flops
from jax_basenji.config import ModelConfig


def test_flop_count_of_basenji2_matches_the_derivation():
    flops = model_flops(ModelConfig.basenji2_double_prime(), 131_072)
    assert flops["forward"] / 1e9 == pytest.approx(233.15, abs=0.01)
    assert flops["train_step"] / 1e9 == pytest.approx(694.92, abs=0.01)


def test_model_benchmark_smoke(tmp_path, monkeypatch):
    # The children compile tiny programs and time one call each: LLVM -O0 (62.6 -> 51.4 CPU-seconds).
    monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
    out = tmp_path / "bench.json"
    assert bench.main(["model", "--preset", "tiny", "--seq-length", "4096", "--batch-size", "2",
                       "--warmup", "0", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    [run] = result["runs"]
    assert run["batch_size"] == 2
    assert set(run["rows"]) == {"torch_forward", "jax_forward", "torch_train", "jax_train"}
    for row in run["rows"].values():
        assert row["median_s"] > 0 and row["sequences_per_s"] > 0 and row["peak_rss_gb"] > 0
        assert row["async_s"] > 0 and row["async_sequences_per_s"] > 0
        assert "mfu" not in row  # MFU only for bf16 on a GPU whose peak is known
    assert run["rows"]["jax_train"]["layout"] == {"channel_multiple": 1, "gemm_convs": "none"}  # "auto" on a CPU
    for key in ("forward_ratio", "train_step_ratio", "forward_async_ratio", "train_step_async_ratio"):
        assert run[key] > 0
    # Both sides ran the same weights on the same input.
    assert run["forward_max_rel_diff"] < 1e-5
    assert run["rows"]["jax_train"]["compile_s"] > 0


def test_model_benchmark_runs_each_batch_size_and_reports_mfu_on_a_gpu(monkeypatch, tmp_path):
    """The parent's bookkeeping, with children that report fixed times as a bf16 H200 would; a child
    that fails at the largest batch leaves the JSON of the batch sizes already measured. The JAX compute
    layout asked for reaches the children and the report."""
    from jax_basenji.bench import model as bench_model_module

    times = {"torch": 0.02, "torch_compile": 0.015, "jax": 0.01}  # seconds per call, async 80 % of it
    layouts = set()

    def fake_child(a):
        layouts.add((a["config"]["channel_multiple"], a["config"]["gemm_convs"]))
        np.save(a["prediction"], np.ones((a["batch_size"], 3)))
        scale = a["batch_size"] / 4 * (3 if a["mode"] == "train" else 1)
        median = times[a["framework"]] * scale
        return {"median_s": median, "async_s": 0.8 * median, "peak_rss_gb": 1.0, "version": "x",
                "device_kind": "NVIDIA H200"}

    monkeypatch.setattr(bench_model_module, "_run_child", fake_child)
    plain = {"channel_multiple": 1, "gemm_convs": "none"}
    result = bench_model_module.bench_model(preset="tiny", batch_sizes=(4, 16), seq_length=4096, precision="bf16",
                                            device="gpu", torch_compile=True, layout=plain, log=lambda *_: None)
    assert [run["batch_size"] for run in result["runs"]] == [4, 16]
    assert result["layout_asked"] == plain and layouts == {(1, "none")}
    flops = model_flops(ModelConfig.tiny(), 4096)
    for run in result["runs"]:
        assert run["forward_ratio"] == pytest.approx(0.5) and run["train_step_ratio"] == pytest.approx(0.5)
        assert run["forward_ratio_vs_compile"] == pytest.approx(0.01 / 0.015)
        jax_train = run["rows"]["jax_train"]
        expected = flops["train_step"] * run["batch_size"] / jax_train["median_s"] / 1e12
        assert jax_train["tflops"] == pytest.approx(expected)
        assert jax_train["mfu"] == pytest.approx(expected / 989.0)
        assert jax_train["async_mfu"] == pytest.approx(expected / 0.8 / 989.0)

    def out_of_memory_at_32(a):
        if a["batch_size"] == 32:
            raise RuntimeError("jax train benchmark failed: RESOURCE_EXHAUSTED")
        return fake_child(a)

    monkeypatch.setattr(bench_model_module, "_run_child", out_of_memory_at_32)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        bench_model_module.bench_model(preset="tiny", batch_sizes=(4, 32), seq_length=4096, precision="bf16",
                                       device="gpu", json_path=str(tmp_path / "out.json"), log=lambda *_: None)
    saved = json.load(open(tmp_path / "out.json"))
    assert [run["batch_size"] for run in saved["runs"]] == [4] and saved["runs"][0]["forward_ratio"] == 0.5


def test_model_benchmark_keeps_the_forward_weights_on_the_device():
    """No host array among the forward's state: each call would copy the weights in again."""
    import jax

    from jax_basenji.bench.model import eval_state
    from jax_basenji.checkpoint import model_arrays
    from jax_basenji.model import build_model
    from jax_basenji.sharding import make_mesh

    model = build_model(ModelConfig.tiny(), seed=0)
    host = jax.tree.map(np.asarray, model_arrays(model))
    _, state = eval_state(ModelConfig.tiny(), host, make_mesh())
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))


def test_predict_benchmark_tiles_the_same_windows_in_both_frameworks(tmp_path):
    out = tmp_path / "predict.json"
    assert bench.main(["predict", "--preset", "tiny", "--chrom-length", "60000", "--tracks", "8",
                       "--batch-size", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["windows"] == -(-60_000 // result["bp_per_window"])
    assert result["max_abs_diff_over_max"] < 1e-4  # the same predictions: the same work
    for side in ("jax", "torch_ref"):
        assert result[side]["windows_per_s"] > 0 and result[side]["bp_per_s"] > 0
    assert result["jax_over_torch_time"] > 0


def test_variants_benchmark_scores_the_same_snvs_in_both_frameworks(tmp_path):
    out = tmp_path / "variants.json"
    assert bench.main(["variants", "--preset", "tiny", "--variants", "6", "--tracks", "8", "--batch-size", "2",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # the same SADs from the full and incremental paths, the same REF sums from torch
    assert result["sad_incremental_vs_full_max_diff_over_max_sad"] < 1e-5
    assert result["ref_sums_full_vs_torch_max_diff_over_max"] < 1e-5
    for row in ("jax_full", "jax_incremental", "torch_ref"):
        assert result[row]["variants_per_s"] > 0
    assert 0 <= result["jax_incremental"]["host_wait_share"] < 1 and result["jax_incremental"]["peak_rss_mb"] > 100
    g = result["gflop_per_variant"]
    assert 0 < g["incremental"] < g["full"]


def test_data_benchmark_rows_count_the_bytes_copied(tmp_path, capsys):
    """One row per thread count; bytes = examples x (sequence index + float16 targets)."""
    from jax_basenji.bench.data import AsManyExamples
    from jax_basenji.data import BasenjiSource
    from jax_basenji.data.__main__ import main as data_main
    from jax_basenji.data.store import convert

    assert data_main(["synth", "--output", str(tmp_path / "basenji"), "--species", "human", "--seq-length", "4096",
                      "--tracks", "human=8", "--examples", "train=8,valid=1,test=1", "--no-progress"]) == 0
    convert(str(tmp_path / "basenji"), str(tmp_path / "store"), progress=False)
    out = tmp_path / "data.json"
    assert bench.main(["data", "--store", str(tmp_path / "store"), "--species", "human", "--batch-size", "2",
                       "--threads", "1", "2", "--seconds", "0.2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and [r["threads"] for r in rows] == [1, 2]
    per_example = 4096 + 28 * 8 * 2  # uint8 index + [bins, tracks] float16 (4096 bp: 32 bins, 2 cropped per side)
    for row in rows:
        assert row["pipeline"] == "reader" and row["target_shape"] == [28, 8] and row["seq_length"] == 4096
        assert row["examples"] > 0 and row["examples"] % 2 == 0
        assert row["bytes"] == row["examples"] * per_example
        assert row["gb_per_s"] == pytest.approx(row["bytes"] / row["seconds"] / 1e9, rel=0.01, abs=1e-3)
        assert row["examples_per_s"] == pytest.approx(row["examples"] / row["seconds"], rel=0.01)
        assert row["memcpy_gb_per_s"] > 0 and row["copy_crc_gb_per_s"] > 0 and row["order_ms_per_batch"] > 0
        assert row["order_examples"] == 8
    assert "scaling_vs_1_thread" not in rows[0]
    rate = [r["bytes"] / r["seconds"] for r in rows]  # unrounded: this store's gb_per_s can round to 0.000
    assert rows[1]["scaling_vs_1_thread"] == pytest.approx(rate[1] / rate[0], rel=0.01)

    # A small store read as if it held 1,000 examples: the order is a 1,000-example store's, every row a real one.
    assert bench.main(["data", "--store", str(tmp_path / "store"), "--species", "human", "--batch-size", "2",
                       "--threads", "1", "--seconds", "0.2", "--order-examples", "1000", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["order_examples"] == 1000 and row["examples"] > 0 and row["bytes"] == row["examples"] * per_example
    source = BasenjiSource(str(tmp_path / "store"), "human", "train")
    wide = AsManyExamples(source, 1000)
    assert len(wide) == 1000 and wide.target_shape == source.target_shape
    got = (np.empty(4096, np.uint8), np.empty((28, 8), np.float16))
    want = (np.empty(4096, np.uint8), np.empty((28, 8), np.float16))
    wide.read_into(803, *got)
    source.read_into(803 % 8, *want)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert bench.main(["data", "--store", str(tmp_path / "store"), "--species", "human", "--order-examples", "4"]) == 2
    assert "error: --order-examples 4 is below the store's 8 examples" in capsys.readouterr().err


def test_data_benchmark_threads_default_to_a_scaling_curve_up_to_the_cores(monkeypatch):
    """1, 2, 4, ... and the core count: each power of two below the cores, then all of them."""
    from jax_basenji.bench.data import default_threads

    for cores, expected in ((1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (16, [1, 2, 4, 8, 16])):
        monkeypatch.setattr("os.cpu_count", lambda: cores)
        assert default_threads() == expected


GPU_HLO = """HloModule step

ENTRY %main (p0: bf16[4,1024,1,288], p1: bf16[5,1,288,339], p2: f32[339]) -> bf16[4,1024,1,339] {
  %p0 = bf16[4,1024,1,288]{3,2,1,0} parameter(0)
  %p1 = bf16[5,1,288,339]{3,2,1,0} parameter(1)
  %p2 = f32[339]{0} parameter(2)
  %conv = (bf16[4,1024,1,339]{3,2,1,0}, u8[0]{0}) custom-call(%p0, %p1), window={size=5x1 pad=2_2x0_0}, dim_labels=b01f_01io->b01f, custom_call_target="__cudnn$convForward"
  %gte = bf16[4,1024,1,339]{3,2,1,0} get-tuple-element(%conv), index=0
  ROOT %fusion = bf16[4,1024,1,339]{3,2,1,0} fusion(%gte, %p2, %p2, %p2, %p2, /*index=5*/%gte), kind=kLoop, calls=%fused_gelu
}
"""


def test_hlo_reading_counts_kernels_bytes_and_odd_conv_channels():
    """The GPU program report (scripts/gpu_compile_report.py) read off HLO text: a cuDNN convolution from 288
    to 339 channels (cuDNN pads it) and a GELU fusion; bookkeeping instructions are not kernels. Operands
    from the sixth on, written `/*index=5*/%name`, are read too."""
    from jax_basenji.bench.hlo import array_bytes, conv_channels, entry_kernels, summary

    assert array_bytes("bf16[4,1024,768]{2,1,0}") == 4 * 1024 * 768 * 2
    assert array_bytes("(f32[2,3]{1,0}, u8[0]{0})") == 24
    kernels = entry_kernels(GPU_HLO)
    assert [(k.op, k.kind) for k in kernels] == [("custom-call", "__cudnn$convForward"), ("fusion", "kLoop")]
    x, w, y = 4 * 1024 * 288 * 2, 5 * 288 * 339 * 2, 4 * 1024 * 339 * 2
    fused = 3 * y + 4 * 339 * 4  # the conv output twice, four f32[339], the result
    assert [k.bytes for k in kernels] == [x + w + y, fused]
    assert conv_channels(kernels[0]) == (288, 339)
    report = summary(kernels)
    assert report["kernels"] == 2 and report["gb_moved"] == pytest.approx((x + w + y + fused) / 1e9)
    assert report["conv_kinds"] == {"__cudnn$convForward": 1}
    assert report["bf16_convs_not_multiple_of_8"] == ["conv"]


SLICED_HLO = """HloModule moments

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%fused_shift (param_0: bf16[4,1024,8]) -> f32[8] {
  %param_0 = bf16[4,1024,8]{2,1,0} parameter(0)
  %convert = f32[4,1024,8]{2,1,0} convert(%param_0)
  %slice = f32[4,16,8]{2,1,0} slice(%convert), slice={[0:4:1], [0:1024:64], [0:8:1]}
  %zero = f32[] constant(0)
  ROOT %reduce = f32[8]{0} reduce(%slice, %zero), dimensions={0,1}, to_apply=%add
}

%fused_sum (param_0.1: bf16[4,1024,8], param_1: f32[8]) -> f32[8] {
  %param_0.1 = bf16[4,1024,8]{2,1,0} parameter(0)
  %param_1 = f32[8]{0} parameter(1)
  %slice.1 = bf16[4,16,8]{2,1,0} slice(%param_0.1), slice={[0:4:1], [0:1024:64], [0:8:1]}
  %convert.1 = f32[4,1024,8]{2,1,0} convert(%param_0.1)
  %zero.1 = f32[] constant(0)
  ROOT %reduce.1 = f32[8]{0} reduce(%convert.1, %zero.1), dimensions={0,1}, to_apply=%add
}

%fused_ends (param_1.2: bf16[4,1024,8], param_0.2: f32[8]) -> (bf16[4,8], bf16[4,8], f32[8]) {
  %param_0.2 = f32[8]{0} parameter(0)
  %param_1.2 = bf16[4,1024,8]{2,1,0} parameter(1)
  %reshape = bf16[4,8192]{1,0} reshape(%param_1.2)
  %head = bf16[4,8]{1,0} slice(%reshape), slice={[0:4:1], [0:8:1]}
  %tail = bf16[4,8]{1,0} slice(%reshape), slice={[0:4:1], [8184:8192:1]}
  ROOT %ends = (bf16[4,8]{1,0}, bf16[4,8]{1,0}, f32[8]{0}) tuple(%head, %tail, %param_0.2)
}

ENTRY %main (p0: bf16[4,1024,8]) -> f32[8] {
  %p0 = bf16[4,1024,8]{2,1,0} parameter(0)
  %shift = f32[8]{0} fusion(%p0), kind=kInput, calls=%fused_shift
  %first = bf16[4,1,8]{2,1,0} slice(%p0), slice={[0:4:1], [0:1:1], [0:8:1]}
  %ends = (bf16[4,8]{1,0}, bf16[4,8]{1,0}, f32[8]{0}) fusion(%shift, %p0), kind=kLoop, calls=%fused_ends
  ROOT %sum = f32[8]{0} fusion(%p0, %shift), kind=kInput, calls=%fused_sum
}
"""


def test_hlo_reading_counts_only_the_sliced_part_of_a_sliced_operand():
    """BatchNorm's shift estimate reads every 64th position of its input: a fusion parameter used only
    through slices (after a convert; after a reshape, twice) counts the sliced elements, whichever its
    parameter number, as does a slice instruction's operand; a parameter also read whole counts whole."""
    from jax_basenji.bench.hlo import entry_kernels

    shift, first, ends, total = entry_kernels(SLICED_HLO)
    assert shift.bytes == 4 * 16 * 8 * 2 + 8 * 4
    assert first.bytes == 2 * (4 * 1 * 8 * 2)
    assert ends.bytes == 8 * 4 + 2 * (4 * 8 * 2) + (2 * 4 * 8 * 2 + 8 * 4)  # read [8], two [4, 8]; the result
    assert total.bytes == 4 * 1024 * 8 * 2 + 2 * 8 * 4


def test_hlo_reading_of_a_compiled_cpu_program():
    """The same reading on XLA:CPU's program of the tiny model: its convolutions' channel counts are the
    config's (stem 4 -> 16)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jax_basenji.bench.hlo import conv_channels, entry_kernels, summary
    from jax_basenji.model import build_model

    model = build_model(ModelConfig.tiny(), seed=0)
    model.eval()
    graph, state = nnx.split(model)
    text = jax.jit(lambda s, x: nnx.merge(graph, s)(x, "human")).lower(state, jnp.zeros((1, 16_384, 4))).compile()
    kernels = entry_kernels(text.as_text())
    convs = [conv_channels(k) for k in kernels if k.dim_labels]
    assert convs[0] == (4, ModelConfig.tiny().stem_channels)
    assert summary(kernels)["gb_moved"] > 0


def test_the_train_step_lowers_without_placing_anything():
    """scripts/gpu_compile_report.py lowers the Trainer's own step for a deviceless GPU, where placing an
    array crashes the process: lowering transfers nothing to a device (hyperparameters included)."""
    import jax
    import jax.numpy as jnp

    from jax_basenji.sharding import local_mesh
    from jax_basenji.train_config import TrainConfig
    from jax_basenji.trainer import Trainer

    cfg = ModelConfig.tiny(seq_length=4096)
    trainer = Trainer(cfg, TrainConfig(species=("human",), batch_size=2), local_mesh())
    batch = {"sequence": jax.ShapeDtypeStruct((2, 4096, 4), jnp.float32),
             "target": jax.ShapeDtypeStruct((2, cfg.output_bins(4096), 8), jnp.float32)}
    with jax.transfer_guard("disallow_explicit"):
        lowered = trainer.lower_train_step(trainer.abstract_state(), batch, "human")
    assert "hyper" not in vars(trainer)  # placed on the first real step only
    assert lowered.out_info[1]["loss"].shape == ()


def test_the_gpu_check_gets_every_requirement_on_a_machine_without_a_package_index():
    """scripts/gpu_wheels.sh sorts each requirement of pyproject.toml (runtime and extras) into what the
    GPU image has, what the check carries as a wheel, or what the check never imports: a new dependency
    not sorted there would fail the one GPU run of a session at import time."""
    import re
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = open(os.path.join(root, "scripts", "gpu_wheels.sh")).read()

    def names(var):
        return set(re.search(rf'^{var}="([^"]*)"', script, re.M).group(1).lower().split())

    lists = [names("image_has"), names("carried"), names("not_needed")]
    project = tomllib.load(open(os.path.join(root, "pyproject.toml"), "rb"))["project"]
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in wanted:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        assert sum(name in sorted_ for sorted_ in lists) == 1, f"{name}: in none or several of gpu_wheels.sh's lists"
    assert {"grain", "pybigwig", "basenji2-pytorch", "flax"} <= lists[1]
