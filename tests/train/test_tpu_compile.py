"""The real train steps lower and compile for a TPU topology from this CPU machine, with the CPU
kernels enabled (the default): the kernels follow the platform the program is compiled for.

libtpu's compile-only backend (the ``tpu`` extra) gives the devices of a TPU topology without a
TPU; the compiled program is the one a v5e would run. Reference: MaxText's ``train_compile``.
"""

from __future__ import annotations

import os

import jax
import optax
import pytest

from framework.core.registry import MODELS
from framework.kernels.cpu import build
from framework.models import backend
from framework.train import sharding, step
from framework.train.program import build_program

pytest.importorskip("libtpu", reason="the tpu extra (libtpu) is not installed")


@pytest.fixture(scope="module")
def v5e_2x2():
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    from jax.experimental import topologies

    try:
        topology = topologies.get_topology_desc("v5e:2x2", platform="tpu")
    except Exception as error:  # noqa: BLE001 - a libtpu that cannot describe topologies
        pytest.skip(f"libtpu cannot describe v5e:2x2 here: {error}")
    return list(topology.devices)


MODELS_UNDER_TEST = {
    "gpt2": dict(vocab_size=512, max_seq_len=128, num_layers=2, num_heads=4, d_model=128),
    "llama": dict(
        vocab_size=512, max_seq_len=128, num_layers=2, num_heads=4, num_kv_heads=2, d_model=128
    ),
}


@pytest.mark.parametrize("plugin", sorted(MODELS_UNDER_TEST))
def test_train_step_compiles_for_tpu_with_cpu_kernels_enabled(plugin, v5e_2x2):
    if build.unavailable_reason() is not None:  # a failure under $DEEPDIVE_REQUIRE_CPU_KERNELS=1
        pytest.skip(f"CPU kernels unavailable, so the test would prove nothing: "
                    f"{build.unavailable_reason()}")  # fmt: skip
    assert backend.describe(jax.devices()[:1]).startswith("CPU kernels")  # on for this process
    assert {d.platform for d in v5e_2x2} == {"tpu"}
    mesh = sharding.MeshConfig(shape=(1, -1, 1)).make(v5e_2x2)  # FSDP over the 4 chips
    model = MODELS.get(plugin)(**MODELS_UNDER_TEST[plugin])
    program = build_program(
        model,
        mesh,
        sharding.FSDP,
        seed=0,
        optimizer=lambda params: step.make_optimizer(optax.constant_schedule(1e-3), params),
        compute_dtype=jax.numpy.bfloat16,
    )
    state, batch = program.abstract_arguments(batch_size=8, seq_len=128)
    lowered = program.train_step.lower(state, batch)
    assert "deepdive_cpu" not in lowered.as_text()  # no CPU custom call in a TPU program
    compiled = lowered.compile()
    memory = compiled.memory_analysis()
    assert memory.argument_size_in_bytes > 0
    assert compiled.input_shardings[0][0]["step"].mesh.devices.flat[0].platform == "tpu"


def test_same_program_on_one_cpu_device_uses_the_cpu_kernels():
    """The other half of the seam: compiled for one CPU device, the same step calls the kernels."""
    if build.unavailable_reason() is not None:
        pytest.skip(f"CPU kernels unavailable: {build.unavailable_reason()}")
    mesh = sharding.MeshConfig(shape=(1, 1, 1)).make(jax.devices()[:1])
    model = MODELS.get("gpt2")(**MODELS_UNDER_TEST["gpt2"])
    program = build_program(
        model,
        mesh,
        sharding.FSDP,
        seed=0,
        optimizer=lambda params: step.make_optimizer(optax.constant_schedule(1e-3), params),
    )
    state, batch = program.abstract_arguments(batch_size=2, seq_len=128)
    text = program.train_step.lower(state, batch).as_text()
    assert "deepdive_cpu_attention_fwd" in text and "deepdive_cpu_gemm" in text
