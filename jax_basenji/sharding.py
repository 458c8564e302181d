"""Every Mesh and NamedSharding, of training and inference: one code path for 1 or N devices, 1 or N hosts.

Data parallelism on a 1-D `data` mesh axis over all devices of all processes:
parameters, BatchNorm statistics and optimizer state are replicated; batches
are sharded along their first axis. Under `jax.jit` the BatchNorm means and
variances of a sharded batch are reduced over the *global* batch (XLA inserts
the all-reduce), so N devices compute what one device would with the same
global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_basenji.errors import InputError

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """All devices of all processes on one `data` axis."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def local_mesh(devices: int | None = None) -> Mesh:
    """This process's first `devices` devices (default all) on one `data` axis (inference needs no other
    process); InputError naming the devices there are if more are asked for."""
    local = jax.local_devices()
    if devices is not None and not 1 <= devices <= len(local):
        raise InputError(f"--devices {devices}: this process has {len(local)} {local[0].platform} device(s)")
    return Mesh(np.asarray(local[:devices]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicated_value(value, mesh: Mesh) -> jax.Array:
    """A host value that every process holds (e.g. the round counter), replicated on the mesh.
    `jax.device_put` would first check across processes that all pass the same value: in a multi-process
    run a blocking all-gather, which every training round paid before its step could be queued."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, replicated(mesh), lambda _: value)


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
    """This process's share of a global batch; the batch must split evenly over devices."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if global_batch % n_dev:
        raise InputError(f"batch size {global_batch} does not split over {n_dev} devices")
    return global_batch // n_proc


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's numpy batch -> global arrays sharded on the data axis."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
