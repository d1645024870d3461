"""A (2,2,2) data x fsdp x tensor CPU mesh trains like one device, with the promised shardings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from framework.core import config
from framework.models import backend, layers
from framework.train import loop as train
from framework.train import sharding
from framework.train import step as train_state
from tests.train.helpers import bindings, losses
from tests.train.tiny_model import TinyLM


def _run(tmp_path, name, mesh_bindings):
    model_dir = tmp_path / name
    parsed = config.parse(
        ["base/train.gin"], bindings(model_dir, "TRAIN_STEPS = 2", *mesh_bindings)
    )
    train.train(parsed_config=parsed)
    return losses(model_dir)


@pytest.mark.slow
def test_2x2x2_mesh_matches_one_device(tmp_path):
    one = _run(tmp_path, "one", ["sharding.MeshConfig.shape = (1, 1, 1)",
                                 "sharding.MeshConfig.num_devices = 1"])  # fmt: skip
    eight = _run(tmp_path, "eight", ["sharding.MeshConfig.shape = (2, 2, 2)",
                                     "LOGICAL_AXIS_RULES = %sharding.FSDP_TENSOR"])  # fmt: skip
    assert [s for s, _ in one] == [1, 2] == [s for s, _ in eight]
    np.testing.assert_allclose([x for _, x in eight], [x for _, x in one], rtol=0, atol=1e-5)


GPT2_TINY = ["train.model = @models.gpt2()", "models.gpt2.vocab_size = 64",
             "models.gpt2.max_seq_len = 16", "models.gpt2.num_layers = 2",
             "models.gpt2.num_heads = 4", "models.gpt2.d_model = 32"]  # fmt: skip


@pytest.mark.slow
def test_gpt2_on_one_device_cpu_kernels_matches_2x2x2_mesh_xla(tmp_path):
    """One device takes the BLAS products and the CPU attention kernel; the sharded mesh keeps
    XLA's dots and attention: the two must train alike."""

    if not backend.describe(jax.devices()[:1]).startswith("CPU kernels"):
        pytest.skip(backend.describe(jax.devices()[:1]))
    one = _run(tmp_path, "one", [*GPT2_TINY, "sharding.MeshConfig.shape = (1, 1, 1)",
                                 "sharding.MeshConfig.num_devices = 1"])  # fmt: skip
    eight = _run(tmp_path, "eight", [*GPT2_TINY, "sharding.MeshConfig.shape = (2, 2, 2)",
                                     "LOGICAL_AXIS_RULES = %sharding.FSDP_TENSOR"])  # fmt: skip
    assert [s for s, _ in one] == [1, 2] == [s for s, _ in eight]
    np.testing.assert_allclose([x for _, x in eight], [x for _, x in one], rtol=0, atol=1e-5)


def test_parameters_and_optimizer_state_carry_the_rule_shardings():
    mesh = sharding.MeshConfig(shape=(2, 2, 2)).make()
    cfg = TinyLM(vocab_size=64, d_model=16, num_heads=2)
    model = layers.build_unsharded(cfg, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = train_state.make_optimizer(train_state.learning_rate_schedule(1e-3, 10, 1), params)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    shardings = sharding.state_shardings(state, mesh, sharding.FSDP_TENSOR)
    state = jax.device_put(state, shardings)
    step = jax.jit(train_state.make_train_step(graphdef, rest, tx),
                   in_shardings=(shardings, sharding.batch_sharding(mesh, sharding.FSDP_TENSOR)),
                   out_shardings=(shardings, None))  # fmt: skip
    batch = jnp.zeros((8, 17), jnp.int32)
    state, _ = step(state, batch)
    p = state["params"]
    expected = {
        ("wte", "embedding"): P("tensor", "fsdp"),  # (vocab, embed)
        ("wpe", "embedding"): P(None, "fsdp"),  # (None, embed)
        ("blocks", 0, "qkv", "kernel"): P("fsdp", "tensor"),  # (embed, heads)
        ("blocks", 0, "out", "kernel"): P("tensor", "fsdp"),  # (heads, embed)
        ("blocks", 0, "up", "kernel"): P("fsdp", "tensor"),  # (embed, mlp)
        ("blocks", 1, "down", "kernel"): P("tensor", "fsdp"),  # (mlp, embed)
        ("blocks", 1, "up", "bias"): P("tensor"),  # (mlp,)
        ("blocks", 1, "ln", "scale"): P(),  # norm: replicated
    }
    flat = dict(nnx.to_flat_state(p))
    mu = dict(nnx.to_flat_state(state["opt_state"][1][0].mu))
    for path, spec in expected.items():
        assert flat[path].get_value().sharding.spec == spec, path
        assert mu[path].get_value().sharding.spec == spec, path  # Adam moments sharded alike
        assert flat[path].get_value().sharding.mesh.shape == mesh.shape
