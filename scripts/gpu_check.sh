#!/usr/bin/env bash
# The GPU check of issue 14, one script (at most GPU_CHECK_BUDGET_S, default 480 s, on an H100/H200):
#   1. fp32 parity on the GPU: full-model and block parity tests (TF32 off, "highest" precision), and
#      the hand-written backward passes the GPU layout runs (tests/test_fused.py, tests/test_gemm_conv.py:
#      float64 exactness, bf16 rounding) on the device itself;
#   2. 200 bf16 training rounds of `python3 -m jax_basenji.train` at the real size, batch 8, from a
#      synthetic store on local disk: seq/s and data_wait_fraction, the figure users will see;
#   3. bench model, bf16 at batch 4 / 16 / 32 in one run and fp32 at batch 4: JAX vs torch_ref eager
#      and torch.compile, forward and training step, blocking and async, TFLOP/s, MFU, memory;
#   4. variant scoring (issue 22): the variant tests on the GPU (upstream basenji_sad.py parity included),
#      then bench variants on the published Basenji2 (131,072 bp, 5,313 tracks), batch 4 and 16, JAX vs
#      torch_ref on the same GPU: variants/s, host-window wait share, peak RSS; incremental scoring
#      (issue 26) on random, dense-clustered and sparse SNVs beside the full path.
#   3b. (section "layout") bench model bf16 at batch 4 and 16 with the plain layout (true channel widths,
#      every convolution a convolution) beside 3's GPU layout (widths x 8, stem and dilated convs as
#      matmuls): the deviceless compile counts bytes (plain 13.95 GB, GPU layout 14.60 GB at batch 4) but
#      only a GPU can time the two.
#   5. (opt-in, section "xla") bench model bf16 train+forward at batch 4 and 16 with Triton GEMM fusions
#      off (XLA_FLAGS=--xla_gpu_enable_triton_gemm=false), the one XLA option the deviceless compile
#      once favoured (1.0 GB less per train step at batch 4 with the dilated convs as im2col; with today's
#      output-side matmuls 0.26 GB more, docs/benchmarks.md): compare with 3.
# GPU_CHECK_STEPS picks sections (default "parity train model layout variants"; add "xla" for 5).
# Every result is JSON in OUT_DIR (plus the logs); a failing step is recorded and the next one runs.
#
#   scripts/gpu_check.sh OUT_DIR           on the GPU machine (first, here: bash scripts/gpu_wheels.sh)
#   scripts/gpu_check.sh OUT_DIR --tiny    the same steps at test sizes on the CPU (checks the script)
set -uo pipefail

out=${1:?usage: scripts/gpu_check.sh OUT_DIR [--tiny]}
mode=${2:-gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."  # the repository: parity_tests/ and the package
# The packages the GPU machine lacks (scripts/gpu_wheels.sh writes .whl/; the device tool carries it),
# installed apart from its own and put first on the path.
if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
        || { echo "gpu_check: the wheels in .whl/ did not install (made for another Python? scripts/gpu_wheels.sh)" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export NVIDIA_TF32_OVERRIDE=0  # fp32 means fp32 on both sides: no TF32 in cuBLAS/cuDNN
if [ "$mode" = "--tiny" ]; then
    preset=tiny; model=tiny; seq=16384; model_runs="bf16:1,2:compile fp32:2"; device=cpu
    steps=4; train_batch=2; tracks=8; examples="train=8,valid=4,test=4"; bench_repeats=2; default_budget=1500
    xla_batches=1; layout_batches=1
    parity_limit=900; variant_preset=tiny; variant_count=41; variant_batches="4"; dense_count=200; dense_batch=4
    export JAX_PLATFORMS=cpu
else
    preset=basenji2-double-prime; model=basenji2-double-prime; seq=131072; device=gpu
    model_runs="bf16:4,16,32:compile fp32:4:compile"  # precision:batches[:compile]
    steps=200; train_batch=8; tracks=5313; examples="train=64,valid=8,test=8"; bench_repeats=5; default_budget=480
    parity_limit=180; variant_preset=basenji2; variant_count=1000; variant_batches="4 16"; dense_count=20000
    dense_batch=16; xla_batches="4 16"; layout_batches="4 16"
fi
sections=" ${GPU_CHECK_STEPS:-parity train model layout variants} "
want() { [[ $sections == *" $1 "* ]]; }
status=0
budget=${GPU_CHECK_BUDGET_S:-$default_budget}  # the script's seconds: later steps are skipped, and recorded so
: >"$out/steps.jsonl"
step() {  # step NAME LIMIT_S COMMAND...: run, log, record its exit code and seconds
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS left=$((budget - SECONDS))
    if [ $left -le 10 ]; then
        printf '{"step": "%s", "rc": null, "skipped": "time budget spent"}\n' "$name" >>"$out/steps.jsonl"
        status=1; return
    fi
    [ $limit -le $left ] || limit=$left
    echo "== $name" >&2
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    printf '{"step": "%s", "rc": %d, "seconds": %d}\n' "$name" "$rc" "$((SECONDS - t0))" >>"$out/steps.jsonl"
    [ $rc -eq 0 ] || { status=1; tail -3 "$out/$name.log" >&2; }
}

# 1. Parity at fp32 on whatever device JAX sees (the GPU there).
want parity && step parity "$parity_limit" python3 -m pytest -q -p no:randomly parity_tests/test_full_model.py parity_tests/test_blocks.py \
    tests/test_fused.py tests/test_gemm_conv.py \
    --junitxml "$out/parity.xml"

# 2. End-to-end training from a synthetic store on local disk.
data=$(mktemp -d)
if want train; then
step synth 240 python3 -m jax_basenji.data synth --output "$data/basenji" --species human --seq-length "$seq" \
    --tracks "human=$tracks" --examples "$examples" --no-progress
step convert 240 python3 -m jax_basenji.data convert --input "$data/basenji" --output "$data/store" --no-progress
step train 420 python3 -m jax_basenji.train --data "$data/store" --model "$model" --species human \
    --workdir "$data/run" --steps "$steps" --batch-size "$train_batch" --precision bf16 \
    --eval-every 0 --eval-batches 1 --checkpoint-every "$steps" --no-progress
python3 - "$data/run/metrics.jsonl" "$out/train.json" "$train_batch" "$model" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
train = [r for r in rows if r["split"] == "train"][1:] or [r for r in rows if r["split"] == "train"]
summary = {"model": sys.argv[4], "batch_size": int(sys.argv[3]), "precision": "bf16", "logged_windows": len(train),
           "seq_per_s": sum(r["seq_per_s"] for r in train) / len(train),  # the first window holds compilation
           "data_wait_fraction": sum(r["data_wait_fraction"] for r in train) / len(train), "rows": train}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
print(f"training: {summary['seq_per_s']:.1f} seq/s, data_wait_fraction {summary['data_wait_fraction']:.3f}")
EOF
[ $? -eq 0 ] || status=1
fi
# 3. Model benchmarks, both frameworks in the same run.
# Most telling first, so a spent budget skips the least: bf16 over the batch sizes (its JSON is rewritten
# after each, so a time limit keeps the finished ones), then fp32 parity-grade.
model_step() {  # model_step NAME PRECISION "BATCHES" [bench options...], under the env given before it
    local name=$1 precision=$2 batches=$3
    shift 3
    step "$name" 420 env XLA_FLAGS="${XLA_FLAGS:-}" python3 -m jax_basenji.bench model --preset "$preset" \
        --seq-length "$seq" --batch-size $batches --precision "$precision" --device "$device" \
        --repeats "$bench_repeats" --json "$out/$name.json" "$@"
}
want model || model_runs=""
for run in $model_runs; do
    precision=${run%%:*}; rest=${run#*:}; batches=${rest%%:*}
    extra=()
    [ "${rest#*:}" = compile ] && extra=(--torch-compile)
    model_step "model_${precision}_b${batches//,/_}" "$precision" "${batches//,/ }" "${extra[@]}"
done

# 3b. The compute layout A/B, before variant scoring (measured on an H200 already) in the time budget.
want layout && model_step model_bf16_plain_layout bf16 "$layout_batches" --channel-multiple 1 --gemm-convs none

# 4. Variant scoring: the tests on this device, then throughput at the real size.
if want variants; then
    step variant_tests 300 python3 -m pytest -q -p no:randomly parity_tests/test_basenji_sad.py tests/test_variants.py \
        tests/test_incremental.py --junitxml "$out/variant_tests.xml"
    for b in $variant_batches; do  # random SNVs: the full path and incremental (one window per SNV)
        step "variants_b$b" 300 python3 -m jax_basenji.bench variants --preset "$variant_preset" \
            --seq-length "$seq" --tracks "$tracks" --variants "$variant_count" --batch-size "$b" \
            --json "$out/variants_b$b.json"
    done
    # issue 26: a dense VCF (1 SNV per 300 bp, clustered at P = 0.1) and a sparse one (1 per 100 kb)
    step variants_dense 300 python3 -m jax_basenji.bench variants --preset "$variant_preset" --seq-length "$seq" \
        --tracks "$tracks" --variants "$dense_count" --full-variants "$variant_count" --spacing 300 \
        --cluster-pct 0.1 --batch-size "$dense_batch" --json "$out/variants_dense.json"
    step variants_sparse 300 python3 -m jax_basenji.bench variants --preset "$variant_preset" --seq-length "$seq" \
        --tracks "$tracks" --variants "$variant_count" --spacing 100000 --batch-size "$dense_batch" \
        --json "$out/variants_sparse.json"
fi

# 5 (opt-in). An XLA option A/B: the deviceless compile cannot autotune, so only a GPU can say whether
# cuBLAS beats Triton's GEMM fusions here (tiny: the same run without the GPU-only flag, to check the step).
if want xla; then
    xla_flags="${XLA_FLAGS:-}"
    [ "$device" = gpu ] && xla_flags="$xla_flags --xla_gpu_enable_triton_gemm=false"
    XLA_FLAGS="$xla_flags" model_step model_bf16_no_triton_gemm bf16 "$xla_batches"
fi
rm -rf "$data"
python3 - "$out" <<'EOF'
import importlib.metadata as metadata, json, platform, sys
try:
    import jax
    device = jax.devices()[0].device_kind
except Exception as e:  # noqa: BLE001 - recorded, not fatal
    device = f"unknown ({e})"
versions = {"python": platform.python_version()}  # the machine's own (jax, torch, numpy) and the carried ones
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "torch", "numpy"):
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
json.dump({"device": device, "host": platform.node(), "versions": versions},
          open(f"{sys.argv[1]}/device.json", "w"), indent=1)
EOF
echo "results in $out (steps.jsonl lists every step's exit code)" >&2
exit $status
