"""Parity tests run in float32 with the highest matmul precision on both sides."""

import jax
import pytest
import torch

jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


# Measured errors, printed at the end of the run (the README's parity table
# comes from here): name -> worst value seen.
_MEASURED: dict[str, float] = {}


@pytest.fixture
def record():
    """`record(name, value)` keeps the worst measured error under `name`."""

    def _record(name: str, value: float) -> None:
        _MEASURED[name] = max(float(value), _MEASURED.get(name, 0.0))

    return _record


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured parity (max |Δ| / max |ref|)")
        for name in sorted(_MEASURED):
            terminalreporter.write_line(f"{name:60s} {_MEASURED[name]:.2e}")


def pytest_sessionfinish(session):
    # Under pytest-xdist each worker measures its own tests: hand the figures to the controller.
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["measured"] = dict(_MEASURED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for name, value in getattr(node, "workeroutput", {}).get("measured", {}).items():
        _MEASURED[name] = max(float(value), _MEASURED.get(name, 0.0))
