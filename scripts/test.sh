#!/usr/bin/env bash
# Set-up, then the whole test suite (unit tests and torch<->JAX parity tests), in a random
# order (pytest-randomly) on both cores (pytest-xdist; each file stays on one worker, so its
# module fixtures are built once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q -n 2 --dist loadfile tests parity_tests "$@"
