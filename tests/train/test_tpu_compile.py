"""The real train steps lower and compile for a TPU topology from this CPU machine, with the CPU
kernels enabled (the default): the kernels follow the platform the program is compiled for.

libtpu's compile-only backend (the ``tpu`` extra) gives the devices of a TPU topology without a
TPU; the compiled program is the one a v5e would run. Reference: MaxText's ``train_compile``.
"""

from __future__ import annotations

import json

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
    from framework.core.errors import ConfigError
    from framework.train import topologies

    try:
        return topologies.compile_target("v5e-4").devices  # a 2x2 slice
    except ConfigError as error:  # a libtpu that cannot describe topologies
        pytest.skip(str(error))


MODELS_UNDER_TEST = {
    "gpt2": dict(vocab_size=512, max_seq_len=128, num_layers=2, num_heads=4, d_model=128),
    "llama": dict(
        vocab_size=512, max_seq_len=128, num_layers=2, num_heads=4, num_kv_heads=2, d_model=128
    ),
}


def _program(plugin: str, mesh, **model_options):
    """The real train program (deepdive train's optimizer) of a small ``plugin`` over ``mesh``."""
    return build_program(
        MODELS.get(plugin)(**{**MODELS_UNDER_TEST[plugin], **model_options}), mesh,
        sharding.FSDP, seed=0,
        optimizer=lambda params: step.make_optimizer(optax.constant_schedule(1e-3), params),
    )  # fmt: skip


@pytest.mark.parametrize("plugin", sorted(MODELS_UNDER_TEST))
def test_train_step_compiles_for_tpu_with_cpu_kernels_enabled(plugin, v5e_2x2):
    if build.unavailable_reason() is not None:  # a failure under $DEEPDIVE_REQUIRE_CPU_KERNELS=1
        pytest.skip(f"CPU kernels unavailable, so the test would prove nothing: "
                    f"{build.unavailable_reason()}")  # fmt: skip
    assert backend.describe(jax.devices()[:1]).startswith("CPU kernels")  # on for this process
    assert {d.platform for d in v5e_2x2} == {"tpu"}
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (1, -1, 1), 4).make(
        v5e_2x2
    )  # FSDP over the 4 chips
    program = _program(plugin, mesh, compute_dtype="bfloat16")
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
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (1, 1, 1), 1).make(jax.devices()[:1])
    program = _program("gpt2", mesh)
    state, batch = program.abstract_arguments(batch_size=2, seq_len=128)
    text = program.train_step.lower(state, batch).as_text()
    assert "deepdive_cpu_attention_fwd" in text and "deepdive_cpu_gemm" in text


def assert_total_is_the_sum(memory: dict) -> None:
    """The report's total is arguments + outputs - aliased + temp + code (the issue's formula)."""
    parts = memory["arguments"] + memory["outputs"] - memory["aliased"]
    assert memory["total"] == parts + memory["temp"] + memory["code"]


def _compile_cli(tmp_path, *extra):
    import subprocess
    import sys

    out = tmp_path / "compile.json"
    cmd = [sys.executable, "-m", "framework", "compile", "--gin_file", "base/train.gin",
           "--gin_file", "models/gpt2_tiny.gin", "--topology", "v5e-4", "--json", str(out), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600), out


def test_compile_command_reports_per_chip_memory(v5e_2x2, tmp_path):
    result, out = _compile_cli(tmp_path, "--gin.BATCH_SIZE=8", "--gin.SEQ_LEN=64")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report) == {
        "topology", "chips", "device_kind", "mesh", "per_chip_bytes", "hbm_bytes_per_chip",
        "fits", "tokens_per_step", "packed", "compile_s",
    }  # fmt: skip
    assert report["packed"] is False  # token shards without segment ids
    memory = report["per_chip_bytes"]
    assert_total_is_the_sum(memory)
    assert report["chips"] == 4 and report["device_kind"] == "TPU v5 lite"
    assert report["hbm_bytes_per_chip"] == 16 << 30 and report["fits"] is True
    assert report["tokens_per_step"] == 8 * 64 and sum(report["mesh"].values()) >= 4
    assert "total per chip" in result.stdout


def test_compile_command_compiles_an_sft_run_on_packed_batches(v5e_2x2, tmp_path):
    """An SFT run file's data source (conversations) is never read by compile, but its batches
    are packed, so the compiled step is the packed one."""
    result, out = _compile_cli(
        tmp_path, "--gin.DATA=@data.conversations()", "--gin.BATCH_SIZE=8", "--gin.SEQ_LEN=64"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["packed"] is True


def test_compile_command_refuses_a_run_that_does_not_fit(v5e_2x2, tmp_path):
    # 1M-token batch of the tiny GPT-2 on 4 v5e chips: the logits alone are GBs per chip
    result, out = _compile_cli(tmp_path, "--gin.BATCH_SIZE=4096", "--gin.SEQ_LEN=256",
                               "--gin.models.gpt2.vocab_size=32768")  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "does not fit" in line and "GiB per chip" in line and "15.75 GiB" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "name,chips,libtpu",
    [("v5e-16", 16, "v5e:4x4"), ("v5litepod-16", 16, "v5e:4x4"), ("v5p-8", 4, "v5p:2x2x1"),
     ("v5p-128", 64, "v5p:4x4x4"), ("v6e-256", 256, "v6e:16x16"), ("v5e-8", 8, "v5e:2x4")],
)  # fmt: skip
def test_slice_names_as_google_cloud_counts_them(name, chips, libtpu):
    """v5p counts TensorCores (2 per chip), v5e and v6e count chips (Cloud TPU docs)."""
    from framework.train import topologies

    topology = topologies.parse(name)
    assert (topology.chips, topology.libtpu_topology) == (chips, libtpu)


@pytest.mark.parametrize("plugin", sorted(MODELS_UNDER_TEST))
def test_tpu_program_runs_the_pallas_attention_kernel(plugin, v5e_2x2):
    """Compiled for a TPU, causal attention is Pallas' flash-attention kernel (a Mosaic custom
    call in the compiled program), per device under shard_map; on the CPU it is not."""
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (2, 2, 1), 4).make(
        v5e_2x2
    )  # batch over data x fsdp
    program = _program(plugin, mesh)
    state, batch = program.abstract_arguments(batch_size=8, seq_len=128)
    compiled = program.train_step.lower(state, batch).compile()
    assert "tpu_custom_call" in compiled.as_text()


def test_compile_decode_adds_the_sampler_loop(v5e_2x2, tmp_path):
    result, out = _compile_cli(tmp_path, "--gin.BATCH_SIZE=8", "--gin.SEQ_LEN=64", "--decode")
    assert result.returncode == 0, result.stderr
    decode = json.loads(out.read_text())["decode"]
    memory = decode["per_chip_bytes"]
    assert_total_is_the_sum(memory)
    assert (decode["batch"], decode["prompt_tokens"], decode["new_tokens"]) == (8, 32, 32)
    assert "decode loop" in result.stdout


def test_packed_batches_run_flash_attention_with_segment_ids_on_tpu(v5e_2x2):
    """SFT's packed batches (segment ids) compile for a TPU with the flash kernel taking the
    segment ids: no [T, T] mask is built, unlike XLA's attention on a CPU mesh."""
    mesh = sharding.MeshConfig(sharding.MESH_AXES, (2, 2, 1), 4).make(v5e_2x2)
    program = _program("llama", mesh, compute_dtype="bfloat16")
    state, batch = program.abstract_arguments(batch_size=8, seq_len=128, packed=True)
    assert set(batch) == {"tokens", "segment_ids", "loss_mask"}
    packed = program.train_step.lower(state, batch).compile()
    plain = program.train_step.lower(*program.abstract_arguments(8, 128)).compile()
    kernels = packed.as_text().count("tpu_custom_call")
    assert kernels > 0 and kernels == plain.as_text().count("tpu_custom_call")  # fwd and bwd
    # the same kernels, so the same working memory per chip as plain causal attention
    temp = packed.memory_analysis().temp_size_in_bytes
    assert temp <= 1.05 * plain.memory_analysis().temp_size_in_bytes + 65536
