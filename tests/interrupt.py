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



def interrupt_after_first_record(monkeypatch, module) -> None:
    """`module.record_done` (a progress record) raises KeyboardInterrupt once it has written the first
    record, as a kill right after it would (undo with monkeypatch.undo())."""
    real = module.record_done

    def dies(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "record_done", dies)


def planned_groups(monkeypatch) -> list[int]:
    """The list that the first row of each group of variants planned from now on is appended to."""
    from jax_basenji.variants import plan

    real, firsts = plan.plan, []

    def planned(genome, first, *args):
        firsts.append(first)
        return real(genome, first, *args)

    monkeypatch.setattr(plan, "plan", planned)
    return firsts
