"""Mesh shapes and logical-axis rules (hand-worked cases of the rule semantics)."""

import pytest
from jax.sharding import PartitionSpec as P

from framework.core.errors import ConfigError
from framework.train import sharding

MESH = {"data": 2, "fsdp": 2, "tensor": 2}


def test_mesh_fills_minus_one():
    assert sharding.MeshConfig(shape=(-1, 2, 1)).resolved_shape(8) == (4, 2, 1)
    assert sharding.MeshConfig(shape=(2, 2, 2)).resolved_shape(8) == (2, 2, 2)


@pytest.mark.parametrize(
    "shape, devices, needle",
    [((2, 2, 2), 4, "needs 8 devices but 4"), ((-1, 3, 1), 8, "use 3 devices"),
     ((-1, -1, 1), 8, "at most one -1")],
)  # fmt: skip
def test_mesh_errors_name_the_numbers(shape, devices, needle):
    with pytest.raises(ConfigError, match=needle):
        sharding.MeshConfig(shape=shape).resolved_shape(devices)


def test_first_matching_rule_wins_and_axes_are_not_reused():
    rules = sharding.FSDP_TENSOR
    assert sharding.logical_to_mesh(("embed", "mlp"), rules, MESH, (8, 32)) == P("fsdp", "tensor")
    assert sharding.logical_to_mesh(("vocab", "embed"), rules, MESH, (64, 8)) == P("tensor", "fsdp")
    # "mlp" first tries tensor (used by vocab here? no: by heads) then falls back to fsdp
    assert sharding.logical_to_mesh(("heads", "mlp"), rules, MESH, (8, 8)) == P("tensor", "fsdp")
    assert sharding.logical_to_mesh(("batch", "sequence"), rules, MESH) == P(("data", "fsdp"))
    assert sharding.logical_to_mesh(("norm",), rules, MESH, (8,)) == P()


def test_indivisible_dimension_falls_back():
    # vocab 257 is not divisible by tensor=2 nor fsdp=2: replicated; embed still on fsdp
    assert sharding.logical_to_mesh(("vocab", "embed"), sharding.FSDP_TENSOR, MESH, (257, 8)) == P(
        None, "fsdp"
    )


def test_none_rule_replicates_and_size_one_axes_drop():
    rules = (("embed", None), ("embed", "fsdp"))
    assert sharding.logical_to_mesh(("embed",), rules, MESH, (8,)) == P()
    one = {"data": 8, "fsdp": 1, "tensor": 1}
    assert sharding.logical_to_mesh(("embed", "mlp"), sharding.FSDP, one, (8, 8)) == P()
    assert sharding.batch_divisor_for_shape(one, sharding.FSDP) == 8
    assert sharding.batch_divisor_for_shape(MESH, sharding.DATA_PARALLEL) == 4
