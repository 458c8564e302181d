#!/usr/bin/env bash
# Set-up, then the embedded demo (tiny model: torch -> JAX -> torch, parity check, prediction).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m jax_basenji.demo "$@"
