#!/usr/bin/env bash
# Installs jax-basenji and its test dependencies into the current Python.
# torch is installed first, by exact version: on the CPU machines this project
# is developed on, `torch==2.13.0` is a CPU wheel; a range would pull CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e ".[torch,dev]"
