"""Sharded training equals one device: 2 processes joined by jax.distributed, 4 simulated devices each."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.train_helpers import make_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("distributed_data"))


def _sharded_steps(store, out, devices=1, distributed=None):
    """tests/sharded_steps.py in subprocesses: float64 rounds on `devices` simulated devices (per
    process), in one process or as `distributed` processes joined by jax.distributed on localhost."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, os.path.join(ROOT, "tests", "sharded_steps.py"), store, str(out)]
    if distributed:
        with socket.socket() as sock:
            sock.bind(("localhost", 0))
            port = sock.getsockname()[1]
        procs = [subprocess.Popen(cmd + [str(port), str(distributed), str(i)], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(distributed)]
    else:
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)]
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
    result = dict(np.load(out))
    return int(result.pop("devices")), result


def _assert_same_training(a, b):
    # Conv biases feed a train-mode BatchNorm, which removes them: their gradient is 0
    # up to rounding, so only their scale (~1e-17) is checked.
    biases = [k for k in a if k.endswith(("'conv']['bias']", "'conv1']['bias']", "'conv2']['bias']"))]
    assert len(biases) == 1 + 6 + 2 * 4 + 1
    for k in a:
        if k in biases:
            assert np.abs(b[k]).max() < 1e-9, k
        else:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_two_processes_of_four_devices_equal_one_device(store, tmp_path):
    """Global batch 8 on 1 device, and on 8 devices: 2 processes joined by jax.distributed (CPU
    collectives, 4 examples each), each holding 4 simulated devices (1 example each). 3 rounds of
    the human head with dropout and augmentation, in float64. (In float32 the runs differ by up to
    1e-2 upstream of the max-pools, where rounding decides near-ties, see
    parity_tests/test_train_mode.py: that says nothing about the sharding.) One run covers both
    the devices of one process and the processes: a separate 8-device run cost 30 s more."""
    n1, one = _sharded_steps(store, tmp_path / "one.npz", devices=1)
    n8, eight = _sharded_steps(store, tmp_path / "eight.npz", devices=4, distributed=2)
    assert (n1, n8) == (1, 8)
    _assert_same_training(one, eight)
