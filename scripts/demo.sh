#!/usr/bin/env bash
# Set-up, then the embedded demo: `python -m jax_basenji.train` with no arguments
# (synthetic Basenji data, tiny model, ~7 min on 2 CPU cores; exits 1 unless validation human R >= 0.65
# and every assay's R >= 0.5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m jax_basenji.train "$@"
