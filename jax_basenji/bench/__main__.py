"""`python -m jax_basenji.bench model|data|predict|variants` (and the internal `_child`)."""

import sys

from jax_basenji.bench.cli import main

sys.exit(main())
