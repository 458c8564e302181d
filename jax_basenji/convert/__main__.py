import sys

from jax_basenji.convert.cli import main

sys.exit(main())
