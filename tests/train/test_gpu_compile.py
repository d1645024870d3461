"""The real train step compiles for 8 H100s from this CPU machine (jax's CUDA plugin describes
compile-only GPUs from ``framework/train/gpu_specs/h100.txtpb``), and bf16 causal attention is
cuDNN's fused kernel in the compiled program. Skipped where the CUDA plugin is not installed
(``pip install 'jax[cuda12]'``: 5.5 GB, not part of the tpu/dev extras)."""

from __future__ import annotations

import importlib.util

import optax
import pytest

from framework.core.errors import ConfigError
from framework.core.registry import MODELS
from framework.train import sharding, step, topologies
from framework.train.program import build_program


def _cuda_plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
    except ModuleNotFoundError:  # no jax_plugins namespace at all
        return False


if not _cuda_plugin_installed():
    pytest.skip("jax's CUDA plugin is not installed", allow_module_level=True)


def test_llama_train_step_compiles_for_h100x8_with_cudnn_attention():
    try:
        target = topologies.compile_target("h100x8")
    except ConfigError as error:  # the plugin could not start in this process
        pytest.skip(str(error))
    assert len(target.devices) == 8 and target.devices[0].platform == "gpu"
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (1, -1, 1), 8).make(target.devices)
    model = MODELS.get("llama")(vocab_size=512, max_seq_len=256, num_layers=2, num_heads=4,
                                num_kv_heads=2, d_model=256, compute_dtype="bfloat16")  # fmt: skip
    program = build_program(
        model, mesh, sharding.FSDP, seed=0,
        optimizer=lambda params: step.make_optimizer(optax.constant_schedule(1e-3), params),
    )  # fmt: skip
    state, batch = program.abstract_arguments(batch_size=8, seq_len=256)
    compiled = program.train_step.lower(state, batch).compile()
    assert "__cudnn$fmha" in compiled.as_text()
    assert compiled.memory_analysis().argument_size_in_bytes > 0
