"""The compiled programs of a training run, built for a mesh without allocating anything.

``build_program`` is what ``deepdive train`` runs and what ahead-of-time compilation checks
(``deepdive compile``, the TPU compile tests): the abstract model and optimizer state from
``jax.eval_shape``, every parameter's and optimizer slot's sharding from the logical-axis rules,
and the jitted train and eval steps with those shardings. The kernels the steps use follow the
platform of the mesh's devices (``framework.models.backend``), so the same program lowers for a
TPU topology from a CPU machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from framework.models import backend, layers
from framework.train import sharding
from framework.train import step as train_step


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """A run's compiled pieces and the abstract state they take."""

    mesh: jax.sharding.Mesh
    graphdef: Any
    abstract_state: dict[str, Any]  # {"params", "opt_state", "step"} as ShapeDtypeStructs
    state_sharding: dict[str, Any]
    batch_sharding: jax.sharding.NamedSharding
    replicated: jax.sharding.NamedSharding
    optimizer: Any
    train_step: Callable  # (state, batch [B, T+1] int32 or packed dict) -> (state, metrics)
    eval_step: Callable  # (params, batch) -> metrics
    init_state: Callable  # (key) -> state, already in its shardings

    def abstract_arguments(
        self, batch_size: int, seq_len: int, packed: bool = False
    ) -> tuple[Any, Any]:
        """(state, batch) as sharded ShapeDtypeStructs, for ``train_step.lower``; ``packed``: the
        batch is ``{"tokens", "segment_ids", "loss_mask"}`` (``step.target_weights``)."""
        state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self.abstract_state,
            self.state_sharding,
        )
        batch = jax.ShapeDtypeStruct(
            (batch_size, seq_len + 1), jnp.int32, sharding=self.batch_sharding
        )
        if packed:
            batch = {"tokens": batch, "segment_ids": batch, "loss_mask": batch}
        return state, batch


def build_program(
    model: Any,
    mesh: jax.sharding.Mesh,
    rules: tuple[tuple[str, Any], ...],
    *,
    seed: int,
    optimizer: Callable[[Any], Any],
    grad_accum_steps: int = 1,
) -> TrainProgram:
    """The train and eval steps of ``model`` (a model plugin's config) over ``mesh``.

    ``optimizer(abstract_params)`` returns the optax transformation (it may inspect parameter
    names, e.g. for the weight-decay mask). The dtype policy is the model's
    (``param_dtype``, ``compute_dtype``).
    """
    compute_dtype = jnp.dtype(getattr(model, "compute_dtype", "float32"))
    abstract = nnx.eval_shape(lambda: layers.build_unsharded(model, nnx.Rngs(seed)))
    graphdef, abstract_params, abstract_rest = nnx.split(abstract, nnx.Param, ...)
    if jax.tree.leaves(abstract_rest):  # non-parameter state (e.g. buffers) needs real values
        rest = nnx.split(layers.build_unsharded(model, nnx.Rngs(seed)), nnx.Param, ...)[2]
    else:
        rest = abstract_rest
    tx = optimizer(abstract_params)
    abstract_state = {
        "params": abstract_params,
        "opt_state": jax.eval_shape(tx.init, abstract_params),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
    }
    state_sharding = sharding.state_shardings(abstract_state, mesh, rules)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_shard = sharding.batch_sharding(mesh, rules)
    devices = list(mesh.devices.flat)
    layout = dict(
        mesh=mesh,
        batch_axes=sharding.mesh_axes_of("batch", mesh, rules),
        head_axes=sharding.mesh_axes_of("heads", mesh, rules),
        sequence_axes=sharding.mesh_axes_of("sequence", mesh, rules),
    )

    def init_state(key):
        params = nnx.state(layers.build_unsharded(model, nnx.Rngs(key)), nnx.Param)
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    step_fn = jax.jit(
        backend.compiled_for(
            train_step.make_train_step(graphdef, rest, tx, grad_accum_steps, compute_dtype),
            devices,
            **layout,
        ),
        in_shardings=(state_sharding, batch_shard),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
        compiler_options=backend.compiler_options(devices),
    )
    eval_fn = jax.jit(
        backend.compiled_for(
            train_step.make_eval_step(graphdef, rest, compute_dtype), devices, **layout
        ),
        in_shardings=(state_sharding["params"], batch_shard),
        out_shardings=replicated,
    )
    return TrainProgram(
        mesh=mesh,
        graphdef=graphdef,
        abstract_state=abstract_state,
        state_sharding=state_sharding,
        batch_sharding=batch_shard,
        replicated=replicated,
        optimizer=tx,
        train_step=step_fn,
        eval_step=eval_fn,
        init_state=jax.jit(init_state, out_shardings=state_sharding),
    )
