"""Evaluation: `python -m jax_basenji.evaluate {positions,tss,ridge,attribution}`."""
