#!/usr/bin/env bash
# Download into .whl/ the Python packages that scripts/gpu_check.sh needs and the lent GPU machine lacks
# (it reaches no package index; gpu_check.sh installs .whl/ into a temporary directory first).
#
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]     default 3.12, the GPU image's Python
#
# Versions: scripts/constraints.txt, else this machine's installed ones (the environment the tests ran in).
# About 11 MB; .whl/ is ignored by git. Then run on the device (tool `run`, carry [".whl"]):
#   bash scripts/gpu_check.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
# The project's requirements (pyproject.toml) by where the GPU check gets them; tests/test_bench.py
# checks that every requirement is in one of the three lists.
# - what the GPU image has (the device tool's KINDS.md): jax with CUDA, torch, the scientific stack;
image_has="jax torch numpy scipy scikit-learn h5py matplotlib pandas tqdm absl-py protobuf pytest pytest-xdist"
# - what it lacks, with what those need and it lacks too (grain: array-record, portpicker;
#   basenji2-pytorch: natsort, pooch, platformdirs, torchinfo), and flax, optax and orbax-checkpoint
#   at the tested versions, so that only jax, jaxlib and torch differ from CI there;
carried="grain google-crc32c pyfaidx pyBigWig pysam tensorboardX basenji2-pytorch flax optax orbax-checkpoint
         array-record portpicker natsort pooch platformdirs torchinfo"
# - what no step of the GPU check imports (sequence logos; the check keeps the file order).
not_needed="logomaker pytest-randomly"
pin() {  # NAME==VERSION from scripts/constraints.txt, else from this environment
    local line
    line=$(grep -i "^$1==" scripts/constraints.txt || true)
    [ -n "$line" ] && { echo "$line"; return; }
    echo "$1==$(python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1")"
}
platforms=()
for p in manylinux_2_{17,24,27,28,31,34,35}_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
rm -rf .whl
for name in $carried; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
        --implementation cp "${platforms[@]}" -d .whl "$(pin "$name")" 2>&1 | grep -v "^WARNING: Location" || true
done
n=$(ls .whl/*.whl | wc -l) want=$(echo $carried | wc -w)
[ "$n" -eq "$want" ] || { echo "gpu_wheels: got $n wheels for $want packages" >&2; exit 1; }
echo "$n wheels, $(du -sh .whl | cut -f1), in .whl/ for Python $python_version" >&2
