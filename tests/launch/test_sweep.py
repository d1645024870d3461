"""Sweep files → runs: grid expansion, explicit runs, run ids, values as gin, the allow-list."""

import gin
import pytest

from framework.core.errors import ConfigError
from framework.launch import accelerators
from framework.launch.sweep import GinExpr, expand, format_run_id, to_gin

BASE = {"gin_files": ["base.gin"], "metric": "val_loss"}


def test_grid_is_the_cartesian_product_first_key_slowest():
    sweep = expand(
        {**BASE, "grid": {"LEARNING_RATE": [0.001, 0.003], "models.gpt2.d_model": [32, 64]}}
    )
    got = [(r.varied["LEARNING_RATE"], r.varied["models.gpt2.d_model"]) for r in sweep.runs]
    assert got == [(0.001, 32), (0.001, 64), (0.003, 32), (0.003, 64)]
    assert [r.run_id for r in sweep.runs] == [
        "learning_rate_0.001-d_model_32",
        "learning_rate_0.001-d_model_64",
        "learning_rate_0.003-d_model_32",
        "learning_rate_0.003-d_model_64",
    ]


def test_fixed_bindings_and_explicit_runs_add_to_the_grid():
    sweep = expand(
        {
            **BASE,
            "run_id": "lr{LEARNING_RATE}",
            "bindings": {"TRAIN_STEPS": 10},
            "grid": {"LEARNING_RATE": [0.1, 0.2]},
            "runs": [{"id": "big", "bindings": {"LEARNING_RATE": 0.5, "WIDTH": 64}}],
        }
    )
    assert [r.run_id for r in sweep.runs] == ["lr0.1", "lr0.2", "big"]
    assert sweep.runs[2].bindings == {"TRAIN_STEPS": 10, "LEARNING_RATE": 0.5, "WIDTH": 64}
    assert sweep.runs[2].varied == {"LEARNING_RATE": 0.5, "WIDTH": 64}
    assert all(r.bindings["TRAIN_STEPS"] == 10 for r in sweep.runs)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("lr{LEARNING_RATE}-d{d_model}", "lr0.0003-d64"),
        ("{models.gpt2.d_model}x{index}", "64x3"),
        ("lr{LEARNING_RATE:.0e}", "lr3e-04"),
        ("{sweep}/{learning_rate}", "s_0.0003"),  # '/' is not allowed in a directory name
    ],
)
def test_run_id_patterns(pattern, expected):
    bindings = {"LEARNING_RATE": 3e-4, "models.gpt2.d_model": 64}
    assert format_run_id(pattern, bindings, 3, "s") == expected


def test_colliding_run_ids_are_an_error():
    data = {
        **BASE,
        "run_id": "lr{LEARNING_RATE}",
        "grid": {"LEARNING_RATE": [0.1], "WIDTH": [1, 2]},
    }
    with pytest.raises(ConfigError, match="runs #1 and #2 both get the id 'lr0.1'"):
        expand(data)


def test_pattern_naming_an_unbound_field_lists_the_fields():
    with pytest.raises(ConfigError, match=r"\{width\}.*fields: .*learning_rate"):
        expand({**BASE, "run_id": "{width}", "grid": {"LEARNING_RATE": [0.1]}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**BASE, "grid": {"lr": [1]}}, "'lr' is not a gin binding name"),
        ({**BASE, "grids": {"LR": [1]}}, "unknown key.*grids.*did you mean 'grid'"),
        ({**BASE, "grid": {"LR": []}}, "non-empty list"),
        ({"gin_files": ["b.gin"]}, "no runs"),
        ({**BASE, "mode": "lowest", "grid": {"LR": [1]}}, "mode must be 'min' or 'max'"),
        ({"grid": {"LR": [1]}}, "gin_files must list"),
    ],
)
def test_malformed_sweeps_name_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        expand(data, source="x.toml")


@pytest.mark.parametrize(
    "value",
    [
        3e-4,
        1e-5,
        0.1,
        12,
        -3,
        True,
        False,
        "gelu",
        'quote " and \\ backslash',
        [1, 2.5, "a"],
        {"a": 1, "b": [True]},
    ],  # fmt: skip
)
def test_values_are_written_as_gin_literals_that_gin_reads_back(value):
    # the reference is gin's own parser, not ours
    assert gin.config.parse_value(to_gin(value)) == value


def test_references_and_macros_stay_gin_expressions():
    data = {**BASE, "grid": {"train.model": ["@models.gpt2()", {"gin": "@models.llama()"}]}}
    sweep = expand(data)
    assert [r.bindings["train.model"] for r in sweep.runs] == [
        GinExpr("@models.gpt2()"),
        GinExpr("@models.llama()"),
    ]
    assert to_gin(GinExpr("%SEQ_LEN")) == "%SEQ_LEN"
    assert [r.run_id for r in sweep.runs] == ["model_models.gpt2", "model_models.llama"]


@pytest.mark.parametrize(
    ("spec", "count", "kind", "skypilot", "runtime"),
    [
        ("tpu-v5litepod-8", None, "tpu", "tpu-v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("tpu-v6e-8", None, "tpu", "tpu-v6e-8", "v2-alpha-tpuv6e"),
        ("tpu-v5p-8", None, "tpu", "tpu-v5p-8", "v2-alpha-tpuv5"),
        ("tpu-v4-8", None, "tpu", "tpu-v4-8", "tpu-ubuntu2204-base"),
        ("H100:8", None, "gpu", "H100:8", None),
        ("h100", 8, "gpu", "H100:8", None),
        ("A100-80GB:4", 4, "gpu", "A100-80GB:4", None),
    ],
)
def test_allow_listed_accelerators(spec, count, kind, skypilot, runtime):
    acc = accelerators.parse(spec, count)
    assert (acc.kind, acc.skypilot, acc.runtime_version) == (kind, skypilot, runtime)


@pytest.mark.parametrize(
    ("spec", "count", "message"),
    [
        (
            "tpu-v5lite-8",
            None,
            "unknown accelerator 'tpu-v5lite-8': did you mean 'tpu-v5litepod-8'",
        ),
        ("tpu-v6e-12", None, "TPU v6e slices are tpu-v6e-1, tpu-v6e-4, tpu-v6e-8"),
        ("H1000:8", None, "unknown accelerator 'H1000:8'.*H100"),
        ("H100:8", 4, "says 8 per node but count = 4"),
        ("tpu-v6e-8", 2, "count must be 1"),
        ("H100:zero", None, "positive integer"),
    ],
)
def test_unknown_accelerators_are_rejected_clearly(spec, count, message):
    with pytest.raises(ValueError, match=message):
        accelerators.parse(spec, count)


def test_unknown_accelerator_in_a_run_names_the_run():
    data = {
        **BASE,
        "grid": {"LR": [1]},
        "runs": [{"id": "odd", "bindings": {"LR": 2}, "resources": {"accelerator": "tpu-v9-8"}}],
    }
    with pytest.raises(
        ConfigError, match=r"x.toml: run odd resources: unknown accelerator 'tpu-v9-8'"
    ):
        expand(data, source="x.toml")


def test_host_counts_of_tpu_slices():
    # Cloud TPU VM: v5e-8 is one host of 8 chips; v5e-16 is 4 hosts; v4-16 (8 chips) is 2 hosts.
    assert accelerators.parse("tpu-v5litepod-8").tpu_vm_hosts == 1
    assert accelerators.parse("tpu-v5litepod-16").tpu_vm_hosts == 4
    assert accelerators.parse("tpu-v4-16").tpu_vm_hosts == 2
    # GKE (xpk): 4 chips per VM, so v5litepod-8 is 2 VMs (xpk's 2x4 topology)
    assert accelerators.parse("tpu-v5litepod-8").gke_vms == 2
    assert accelerators.parse("tpu-v6e-1").gke_vms == 1
