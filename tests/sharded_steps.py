"""Helper of test_train_distributed.py, run in a subprocess: a few float64 training rounds on
however many (simulated) devices XLA_FLAGS gives, saving the parameters.

  JAX_ENABLE_X64=1 XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharded_steps.py STORE OUT.npz
  JAX_ENABLE_X64=1 python tests/sharded_steps.py STORE OUT.npz COORDINATOR_PORT NUM_PROCESSES PROCESS_ID
The second form is one of several processes joined by jax.distributed on localhost.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource
from jax_basenji.data.pipeline import make_train_iterator
from jax_basenji.sharding import global_batch, make_mesh, replicated
from jax_basenji.train_config import TrainConfig
from jax_basenji.trainer import Trainer


def main(store: str, out: str, rounds: int = 3) -> None:
    mesh = make_mesh()
    # One species: a second head adds a compile per process, not another sharding case.
    tc = TrainConfig(data=store, batch_size=8, optimizer="sgd", lr=0.05, momentum=0.9, species=("human",))
    sources = {s: BasenjiSource(store, s, "train") for s in tc.species}
    # Training's input path: the threaded reader, augmentation in the step (strand pairs per head).
    trainer = Trainer(ModelConfig.tiny(dtype="float64"), tc, mesh,
                      strand_pairs={s: src.strand_pair for s, src in sources.items()})
    state = trainer.init_state()
    state = jax.device_put(jax.tree.map(  # float64 variables: no float32 rounding anywhere
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, state), replicated(mesh))
    local = 8 // jax.process_count()
    iters = {s: make_train_iterator(src, batch_size=local, seed=i, augment=True,
                                    process_index=jax.process_index(), process_count=jax.process_count())
             for i, (s, src) in enumerate(sources.items())}
    for r in range(1, rounds + 1):
        state["step"] = jax.device_put(np.int32(r), replicated(mesh))
        for s in tc.species:
            state, _ = trainer.train_step(state, global_batch(next(iters[s]), mesh), head=s)
    for it in iters.values():
        it.close()
    flat = jax.tree_util.tree_flatten_with_path(trainer.model_arrays(state))[0]
    if jax.process_index() == 0:
        np.savez(out, devices=len(jax.devices()), **{jax.tree_util.keystr(p): np.asarray(v) for p, v in flat})


if __name__ == "__main__":
    if len(sys.argv) > 3:
        port, n, pid = sys.argv[3:6]
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=int(n),
                                   process_id=int(pid))
    main(sys.argv[1], sys.argv[2])
