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
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (4, 2, 1), 8).make(
        jax.devices()
    )  # data 4 x fsdp 2
    fn = backend.compiled_for(
        lambda x: backend.block_activation(x) * 2.0, jax.devices(), mesh=mesh,
        batch_axes=("data", "fsdp"),
    )  # fmt: skip
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 5, 6)), jnp.float32)
    out = jax.jit(fn)(x)
    np.testing.assert_array_equal(out, x * 2.0)
    assert out.sharding.spec[0] == ("data", "fsdp")  # the layout the constraint pinned


def test_tpu_flash_attention_matches_xla_attention_in_interpret_mode():
    """The TPU kernel the seam picks (Pallas flash attention under shard_map), run by Pallas'
    TPU interpreter on the CPU: values and gradients equal XLA's causal attention."""
    import pytest

    pltpu = pytest.importorskip("jax.experimental.pallas.tpu")
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (2, 1, 1), 2).make(jax.devices())
    target = backend.Target("tpu", 2, 1, mesh=mesh, batch_axes=("data",))
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.standard_normal((2, 128, 4, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((2, 128, 2, 16)), jnp.float32) for _ in range(2))
    probe = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def ours(q, k, v):
        return jnp.sum(backend._tpu_flash_attention(q, k, v, 0.25, target) * probe)

    def xla(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True, scale=0.25)
        return jnp.sum(out * probe)

    with pltpu.force_tpu_interpret_mode():
        value, grads = jax.value_and_grad(ours, (0, 1, 2))(q, k, v)
    ref_value, ref_grads = jax.value_and_grad(xla, (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(value, ref_value, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
