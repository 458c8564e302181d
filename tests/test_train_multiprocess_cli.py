"""The real training CLI as 2 processes on localhost (jax.distributed), killed with SIGKILL and resumed.

Both processes are killed once a checkpoint exists, mid-run; the same commands run again
resume from it. The final weights must be bit-identical to an uninterrupted run of the same command
in one process holding 2 devices: the same layout (one batch half per device; a 2-operand all-reduce
sums in either order to the same bits), and one process compiles once where two compile twice (on
CPU, JAX's compilation-cache key includes the device assignment and only process 0 writes entries,
so process 1 of every 2-process run compiles everything itself). One species trains, so each process
compiles one train program; a single-process run resumes through the same code, minus jax.distributed,
and tests/test_train_resume.py resumes two species in-process (where each species' data stream was). That 2
processes compute what 1 process of 1 device computes is shown in float64 by
tests/test_train_distributed.py; in float32 the reduction order differs between those layouts.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jax_basenji import checkpoint
from tests.train_helpers import flat, make_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("multiprocess_data"))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _start(store, workdir, processes: int = 2) -> list[subprocess.Popen]:
    """The processes of one CLI run on 2 CPU devices: 2 processes of 1 device, or 1 process of 2."""
    # LLVM -O0: five processes compile the tiny program (process 1 of a 2-process run always compiles) and
    # run 6 tiny steps, so compilation is most of this test (236 -> 193 CPU-seconds alone, 2026-12-07). All
    # three runs share the flag, so their weights stay comparable bit for bit.
    flags = (f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0 "
             f"--xla_force_host_platform_device_count={2 // processes}")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    cmd = [sys.executable, "-m", "jax_basenji.train", "--data", store, "--model", "tiny", "--workdir", str(workdir),
           "--species", "human", "--steps", str(STEPS), "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-3",
           "--eval-every", "0", "--eval-batches", "1", "--checkpoint-every", "2", "--no-progress"]
    coordinator = ["--coordinator-address", f"127.0.0.1:{_port()}", "--num-processes", str(processes)]
    roles = [[*coordinator, "--process-id", str(i)] for i in range(processes)] if processes > 1 else [[]]
    return [subprocess.Popen([*cmd, *role], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for role in roles]


def _finish(procs) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]


def _saved_rounds(workdir) -> list[int]:
    ckpts = os.path.join(workdir, "checkpoints", "latest")  # orbax: one directory per saved round, when complete
    return sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if os.path.isdir(ckpts) else []


def test_two_process_cli_killed_and_resumed_equals_an_uninterrupted_run(store, tmp_path):
    _finish(_start(store, tmp_path / "whole", processes=1))

    procs = _start(store, tmp_path / "killed")
    deadline = time.time() + 300
    while not _saved_rounds(tmp_path / "killed") and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    for p in procs:  # no goodbye: what a node failure or scheduler kill does
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=60)
    saved = _saved_rounds(tmp_path / "killed")
    assert saved and max(saved) < STEPS, f"killed after round {saved}: too late to test a resume"
    assert not os.path.exists(tmp_path / "killed" / "model")

    _finish(_start(store, tmp_path / "killed"))
    whole, _, _ = checkpoint.load_arrays(str(tmp_path / "whole" / "model"))
    resumed, _, _ = checkpoint.load_arrays(str(tmp_path / "killed" / "model"))
    a, b = flat(whole), flat(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
