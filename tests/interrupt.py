"""Interrupting a long command after its first batch, as a kill would after a flushed batch."""

from jax_basenji.predict import core


def interrupt_after_first_batch(monkeypatch) -> None:
    """Every Predictor call after the first raises KeyboardInterrupt (undo with monkeypatch.undo())."""
    original, calls = core.Predictor.__call__, {"n": 0}

    def dies_after_one_batch(self, batch, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, batch, **kwargs)

    monkeypatch.setattr(core.Predictor, "__call__", dies_after_one_batch)
