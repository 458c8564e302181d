import sys

from jax_basenji.predict.cli import main

sys.exit(main())
