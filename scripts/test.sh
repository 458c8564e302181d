#!/usr/bin/env bash
# Set-up, then the whole test suite (unit tests and torch<->JAX parity tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q tests parity_tests "$@"
