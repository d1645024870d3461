"""The kernel seam's decisions follow the program's declared target: activation layout at block
boundaries over the declared mesh, identity without one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from framework.models import backend
from framework.train import sharding


def test_block_activation_is_an_identity_without_a_mesh():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    assert backend.block_activation(x) is x


def test_block_activation_splits_the_batch_over_the_declared_axes():
    mesh = sharding.MeshConfig(shape=(4, 2, 1)).make(jax.devices())  # data 4 x fsdp 2
    fn = backend.compiled_for(
        lambda x: backend.block_activation(x) * 2.0, jax.devices(), mesh=mesh,
        batch_axes=("data", "fsdp"),
    )  # fmt: skip
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 5, 6)), jnp.float32)
    out = jax.jit(fn)(x)
    np.testing.assert_array_equal(out, x * 2.0)
    assert out.sharding.spec[0] == ("data", "fsdp")  # the layout the constraint pinned
