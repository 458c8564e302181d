#!/usr/bin/env bash
# Set-up, then the whole test suite (unit tests and torch<->JAX parity tests), in a random
# order (pytest-randomly) on both cores (pytest-xdist; each file stays on one worker, so its
# module fixtures are built once; tests/conftest.py hands out the longest files first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One XLA compilation cache for the run: the same small programs (training runs in subprocesses,
# repeated CLI calls) are compiled once, not once per process. A fresh directory per run keeps
# runs independent; XLA flags, devices and versions are part of each entry's key.
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$cache}"
# Every program, not only those over 1 s to compile: the CLI subprocesses recompile hundreds of small
# ones (measured: tests/test_finetune_evaluate.py 103 -> 96 s, test_train_selection.py 65 -> 60 s).
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"
# The suite is compile-bound (XLA compilation is ~45 % of its time): LLVM at -O1 instead of -O2 compiles
# a tiny train step in 9.6 s instead of 12.9 s at the same speed (docs/benchmarks.md); results differ
# only by float rounding. Tests that set XLA_FLAGS for their subprocesses append to it.
export XLA_FLAGS="${XLA_FLAGS:---xla_backend_optimization_level=1}"
"${PYTHON:-python3}" -m pytest -q -n 2 --dist loadfile tests parity_tests "$@"
