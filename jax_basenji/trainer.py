"""Pure, jitted train and eval steps over an explicit, replicated train state.

The train state is a plain pytree:
  params       nested dict of parameters (float32)
  batch_stats  nested dict of BatchNorm running mean / var / count
  opt          {"trunk": optimizer state, "heads": {name: optimizer state}}
  step         int32 round counter
  key          uint32 PRNG key data (dropout: folded with step and species)

Optimizer semantics follow the seed's torch loop, where one optimizer step
per species batch updates the trunk and *that species'* head only: torch
skips parameters whose gradient is None, so the other heads and their
momentum buffers stay untouched. Hence one optimizer state for the trunk and
one per head, gradient clipping over the parameters of the step, and the
learning rate taken from the schedule at the round counter.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from jax_basenji.config import ModelConfig
from jax_basenji.data.device_augment import augment_batch
from jax_basenji.errors import InputError
from jax_basenji.losses import poisson_loss
from jax_basenji.metrics import centered_moments
from jax_basenji.model import build_model, rng_state
from jax_basenji.ops import fill_n
from jax_basenji.sharding import replicated
from jax_basenji.train_config import TrainConfig


def hyperparameters(tc: TrainConfig) -> dict[str, jax.Array]:
    """The run's numbers that enter the train and eval steps as arguments, not constants: runs that differ
    only in them (learning rate, length, momentum, weight decay, clipping, the N value) share one compiled
    program. float32 scalars (float64 under jax_enable_x64)."""
    values = {"lr": tc.lr, "steps": tc.steps, "warmup_steps": tc.warmup_steps, "momentum": tc.momentum,
              "weight_decay": tc.weight_decay, "n_value": tc.n_value or 0.0,
              "clip_norm": tc.clip_norm or np.inf}  # no clipping: g * min(1, inf) = g exactly
    dtype = jax.dtypes.canonicalize_dtype(np.float64)
    return {k: jnp.asarray(v, dtype) for k, v in values.items()}


def learning_rate(tc: TrainConfig, hyper: dict | None = None):
    """step -> learning rate: linear warm-up to `lr`, then constant or cosine decay to 0 at `steps`
    (optax's linear and cosine schedules). `hyper`: `hyperparameters(tc)`, possibly traced."""
    h = hyperparameters(tc) if hyper is None else hyper
    cosine = tc.schedule == "cosine"

    def schedule(step):
        lr, warm = h["lr"], h["warmup_steps"]
        step = jnp.asarray(step, lr.dtype)
        after = lr
        if cosine:
            decay = jnp.maximum(h["steps"] - warm, 1.0)
            after = lr * (0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(step - warm, decay) / decay)))
        return jnp.where(step < warm, lr * step / jnp.maximum(warm, 1.0), after)

    return schedule


def direction(tc: TrainConfig, hyper: dict | None = None) -> optax.GradientTransformation:
    """The optimizer without its learning rate: the update is -lr * direction. Which transforms (and so the
    optimizer state's structure) comes from `tc`; momentum and weight decay from `hyper` (possibly traced)."""
    h = hyperparameters(tc) if hyper is None else hyper
    decay = [optax.add_decayed_weights(h["weight_decay"])] if tc.weight_decay else []
    if tc.optimizer == "sgd":  # torch SGD: buf = m * buf + (g + wd * p)
        return optax.chain(*decay, optax.trace(decay=h["momentum"]))
    if tc.optimizer == "adam":  # L2 in the gradient, like torch.optim.Adam(weight_decay=...)
        return optax.chain(*decay, optax.scale_by_adam(b1=h["momentum"]))
    # torch AdamW: p <- p - lr * (adam + wd * p), decoupled from the moments.
    return optax.chain(optax.scale_by_adam(b1=h["momentum"]), optax.add_decayed_weights(h["weight_decay"]))


class Trainer:
    """Builds the sharded train state and the jitted steps for one model/train config."""

    def __init__(self, model_cfg: ModelConfig, tc: TrainConfig, mesh: jax.sharding.Mesh,
                 strand_pairs: dict[str, np.ndarray | None] | None = None):
        """`strand_pairs`: {head: its tracks' strand pairs} for reverse complements done in the step
        (batches of `make_train_iterator`; heads without an entry have unstranded tracks)."""
        self.strand_pairs = dict(strand_pairs or {})
        if tc.precision == "bf16":
            model_cfg = model_cfg.replace(dtype="bfloat16")
        self.cfg, self.tc, self.mesh = model_cfg, tc, mesh
        missing = [s for s in tc.species if s not in model_cfg.head_tracks]
        if missing:
            raise InputError(f"the model has no head for {missing}; heads: {sorted(model_cfg.head_tracks)}")
        abstract = nnx.eval_shape(lambda: build_model(model_cfg, tc.seed))
        abstract.train()
        self._graph_train, params, stats, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
        abstract.eval()
        self._graph_eval = nnx.graphdef(abstract)
        self._param_def = jax.tree.structure(params)
        self._stats_def = jax.tree.structure(stats)
        # The train state holds pure dicts; _model() re-threads their leaves into the
        # nnx.State structures by position, which requires the same leaf order.
        for tree in (params, stats):
            paths, pure = ([tuple(k.key for k in p if hasattr(k, "key"))
                            for p, _ in jax.tree_util.tree_flatten_with_path(t)[0]]
                           for t in (tree, nnx.to_pure_dict(tree)))
            assert paths == pure, "nnx.State and pure-dict leaf orders differ"
        # The models' own RNG streams are never drawn from (dropout keys are passed
        # explicitly) but nnx.merge needs them.
        self._rest = rng_state(model_cfg, tc.seed)
        # tc.modalities as (name, channel slice, weight, log1p), channels in order.
        ends = np.cumsum([0] + [m[1] for m in tc.modalities])
        self._groups = [(name, slice(int(ends[i]), int(ends[i + 1])), weight, log1p)
                        for i, (name, _, weight, log1p) in enumerate(tc.modalities)]
        self.tx = direction(tc)  # the optimizer state's structure (init); the step builds its own from `hyper`
        self._train_jit = jax.jit(self._train_step, static_argnames="head", donate_argnums=0)
        self._eval_jit = jax.jit(self._eval_step, static_argnames="head")

    @cached_property
    def hyper(self) -> dict[str, jax.Array]:
        """`hyperparameters(tc)`, replicated on the mesh: placed on first use, so that lowering for devices
        this process cannot run on (scripts/gpu_compile_report.py's deviceless GPU) places nothing."""
        return jax.device_put(hyperparameters(self.tc), replicated(self.mesh))

    def train_step(self, state: dict, batch: dict, head: str) -> tuple[dict, dict]:
        """One optimizer step (`_train_step`, jitted; `state` is donated)."""
        return self._train_jit(state, batch, self.hyper, head=head)

    def eval_step(self, state: dict, batch: dict, head: str) -> dict:
        """Loss and per-track moments of one batch (`_eval_step`, jitted)."""
        return self._eval_jit(state, batch, self.hyper, head=head)

    def lower_train_step(self, state, batch: dict, head: str) -> jax.stages.Lowered:
        """The train step lowered for `state` and `batch` (arrays or ShapeDtypeStructs); its compiled
        program is called as `(state, batch, trainer.hyper)`."""
        return self._train_jit.lower(state, batch, self._abstract(lambda: hyperparameters(self.tc)), head=head)

    # ----- state ---------------------------------------------------------------------------
    def _init(self) -> dict:
        model = build_model(self.cfg, self.tc.seed)
        _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
        trunk, heads = _split_heads(params)
        return {"params": params, "batch_stats": stats,
                "opt": {"trunk": self.tx.init(trunk), "heads": {n: self.tx.init(p) for n, p in heads.items()}},
                "step": jnp.int32(0), "key": jax.random.key_data(jax.random.key(self.tc.seed))}

    def init_state(self, arrays: dict | None = None, fresh_heads: tuple[str, ...] = ()) -> dict:
        """The train state, built directly with replicated shardings (jitted init).

        `arrays` (params + batch statistics, as saved by jax_basenji.checkpoint)
        replace the random initial weights, except the heads named in
        `fresh_heads` (new heads of a fine-tuning), which keep their random init.
        """
        state = jax.jit(self._init, out_shardings=replicated(self.mesh))()
        if arrays is not None:
            state["params"] = _take(state["params"], arrays, self.mesh, fresh_heads)
            state["batch_stats"] = _take(state["batch_stats"], arrays, self.mesh, fresh_heads)
        return state

    def abstract_state(self) -> Any:
        """Shapes, dtypes and shardings of the train state: the checkpoint restore target."""
        return self._abstract(self._init)

    def _abstract(self, make) -> Any:
        """ShapeDtypeStructs, replicated on the mesh, of what `make()` returns (nothing is computed)."""
        rep = replicated(self.mesh)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), jax.eval_shape(make))

    def _model(self, graph, params, stats):
        p = jax.tree.unflatten(self._param_def, jax.tree.leaves(params))
        s = jax.tree.unflatten(self._stats_def, jax.tree.leaves(stats))
        return nnx.merge(graph, p, s, self._rest)

    # ----- loss ----------------------------------------------------------------------------
    def _targets(self, target: jax.Array) -> jax.Array:
        """float32 targets, log(x+1) on the channel groups that ask for it."""
        y = target.astype(jnp.float32)
        if not any(g[3] for g in self._groups):
            return y
        return jnp.concatenate([jnp.log1p(y[..., cols]) if log1p else y[..., cols]
                                for _, cols, _, log1p in self._groups], axis=-1)

    def _loss(self, pred: jax.Array, y: jax.Array) -> tuple[jax.Array, dict]:
        """(joint loss, {"loss_<group>": loss}) of `pred`, `y` `[B, bins, T]`, in float32."""
        if not self._groups:
            return poisson_loss(pred, y), {}
        parts = {f"loss_{name}": poisson_loss(pred[..., cols], y[..., cols]) for name, cols, _, _ in self._groups}
        total = sum(w * parts[f"loss_{name}"] for name, _, w, _ in self._groups)
        return total / len(self._groups), parts

    # ----- steps ---------------------------------------------------------------------------
    def _train_step(self, state: dict, batch: dict, hyper: dict, head: str) -> tuple[dict, dict]:
        """One optimizer step on one species batch: `sequence` [B, L, 4] one-hot and `target` [B, bins, T],
        or a reader batch (`sequence` [B, L] index, `rc`, `shift`) augmented here (`augment_batch`);
        `hyper`: `hyperparameters(tc)`."""
        batch = augment_batch(batch, self.strand_pairs.get(head))
        species_index = list(self.cfg.head_tracks).index(head)
        key = jax.random.wrap_key_data(state["key"])
        dropout_key = jax.random.fold_in(jax.random.fold_in(key, state["step"]), species_index)
        frozen_trunk = self.tc.freeze == "trunk"
        y = self._targets(batch["target"])

        def loss_fn(active):  # a frozen trunk is not in `active`: no gradient is computed for it
            params = {**state["params"], **active["trunk"],
                      "heads": {**state["params"]["heads"], head: active["head"]}}
            # A frozen trunk runs in eval mode: its BatchNorm statistics stay as loaded.
            model = self._model(self._graph_eval if frozen_trunk else self._graph_train, params,
                                state["batch_stats"])
            pred = model(fill_n(batch["sequence"], hyper["n_value"]), head, rngs=nnx.Rngs(dropout=dropout_key))
            loss, parts = self._loss(pred, y)  # float32 whatever the compute dtype
            return loss, (parts, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

        trunk, heads = _split_heads(state["params"])
        active = {"trunk": {} if frozen_trunk else trunk, "head": heads[head]}
        (loss, (parts, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(active)
        grad_norm = optax.tree.norm(grads)
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, hyper["clip_norm"] / (grad_norm + 1e-6)), grads)
        lr = learning_rate(self.tc, hyper)(state["step"])
        tx = direction(self.tc, hyper)
        if frozen_trunk:
            new_trunk, opt_trunk = trunk, state["opt"]["trunk"]
        else:
            d_trunk, opt_trunk = tx.update(grads["trunk"], state["opt"]["trunk"], active["trunk"])
            new_trunk = jax.tree.map(lambda p, d: p - lr * d, active["trunk"], d_trunk)
        d_head, opt_head = tx.update(grads["head"], state["opt"]["heads"][head], active["head"])
        new_head = jax.tree.map(lambda p, d: p - lr * d, active["head"], d_head)
        new_state = {
            "params": {**new_trunk, "heads": {**heads, head: new_head}},
            "batch_stats": stats,
            "opt": {"trunk": opt_trunk, "heads": {**state["opt"]["heads"], head: opt_head}},
            "step": state["step"], "key": state["key"],
        }
        return new_state, {"loss": loss, "grad_norm": grad_norm, "lr": lr, **parts}

    def _eval_step(self, state: dict, batch: dict, hyper: dict, head: str) -> dict:
        """Loss(es) and per-track centred moments over [batch, bins] (`metrics.centered_moments`), `[T]` float32."""
        model = self._model(self._graph_eval, state["params"], state["batch_stats"])
        pred = model(fill_n(batch["sequence"], hyper["n_value"]), head).astype(jnp.float32)
        y = self._targets(batch["target"])
        loss, parts = self._loss(pred, y)
        return {"loss": loss, **parts, **centered_moments(pred, y, axis=(0, 1))}

    def model_arrays(self, state: dict) -> dict:
        """Params + batch statistics in the layout of jax_basenji.checkpoint."""
        return unflatten_dict({**flatten_dict(jax.device_get(state["params"])),
                               **flatten_dict(jax.device_get(state["batch_stats"]))})


def _split_heads(params: dict) -> tuple[dict, dict]:
    """(everything but the heads, {head name: head params})."""
    return {k: v for k, v in params.items() if k != "heads"}, dict(params["heads"])


def _take(template: dict, arrays: dict, mesh, fresh_heads: tuple[str, ...] = ()) -> dict:
    """`template`'s leaves read from the nested dict `arrays` (shape-checked), replicated.

    Leaves of the heads in `fresh_heads` keep the template's value when `arrays` lacks them.
    """
    rep = replicated(mesh)

    def pick(path, leaf):
        name = "/".join(str(p.key) for p in path)
        node = arrays
        for p in path:
            if not isinstance(node, dict) or p.key not in node:
                if len(path) > 1 and path[0].key == "heads" and path[1].key in fresh_heads:
                    return leaf
                raise InputError(f"initial weights lack {name}")
            node = node[p.key]
        value = np.asarray(node)
        if value.shape != leaf.shape:
            raise InputError(f"initial weights: {name} has shape {value.shape}, the model expects {leaf.shape}")
        return jax.device_put(value.astype(leaf.dtype), rep)

    return jax.tree_util.tree_map_with_path(pick, template)
