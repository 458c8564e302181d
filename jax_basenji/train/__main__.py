import sys

from jax_basenji.train.cli import main

sys.exit(main())
