"""The packed (SFT) train step sharded over 8 host devices (data × fsdp × tensor) computes the
same loss and update as on one device."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from framework.train import packing, sharding, step
from framework.train.program import build_program
from plugins.models.llama import LlamaConfig


def _step(mesh_shape, batch):
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = sharding.MeshConfig(sharding.MESH_AXES, mesh_shape, len(devices)).make(devices)
    config = LlamaConfig(vocab_size=64, max_seq_len=32, num_layers=2, num_heads=4,
                         num_kv_heads=2, d_model=32)  # fmt: skip
    program = build_program(
        config, mesh, sharding.FSDP_TENSOR, seed=0,
        optimizer=lambda p: step.make_optimizer(optax.constant_schedule(1e-2), p),
    )  # fmt: skip
    state = program.init_state(jax.random.key(0))
    placed = {k: jax.device_put(v, program.batch_sharding) for k, v in batch.items()}
    state, metrics = program.train_step(state, placed)
    return metrics, jax.tree.map(np.asarray, state["params"])


def test_packed_step_is_the_same_on_eight_devices():
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    rng = np.random.default_rng(0)
    seqs = [(rng.integers(0, 64, n).astype(np.int32), (np.arange(n) >= n // 2).astype(np.int32))
            for n in rng.integers(4, 16, 40)]  # fmt: skip
    batch = packing.pack_rows(seqs, 33)
    batch = {k: v[:8] for k, v in batch.items()}
    one, one_params = _step((1, 1, 1), batch)
    eight, eight_params = _step((2, 2, 2), batch)
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(float(eight[name]), float(one[name]), rtol=1e-5)
    # one AdamW step of 1e-2 per parameter: equal to 1% of it (Adam's g / sqrt(v) amplifies
    # the rounding of near-zero gradients, which are summed in another order over 8 devices)
    for a, b in zip(jax.tree.leaves(eight_params), jax.tree.leaves(one_params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
