"""Device mesh and logical-axis sharding rules.

Rule semantics, stated first (what a rule list promises):

* Parameters and activations name their dimensions with *logical* axes (``"vocab"``,
  ``"embed"``, ``"mlp"``, ``"heads"``, ``"kv_heads"``, ``"head_dim"``, ``"norm"``, ``"batch"``,
  ``"sequence"``, and ``"layers"``, the leading axis of scanned blocks' stacked parameters, which
  no preset splits; ``None`` = no name). A model sets the names as parameter metadata
  (``framework/models/layers.py``).
* ONE ordered list of rules ``(logical_axis, mesh_axes)`` maps them to mesh axes, where
  ``mesh_axes`` is a mesh axis name, a tuple of names (the dimension is split over their
  product) or ``None`` (replicate).
* For each dimension of an array, in order, the FIRST rule for its logical name is taken whose
  mesh axes (a) all exist in the mesh, (b) are not already used by an earlier dimension of the
  same array, and (c) multiply to a size that divides the dimension. A ``None`` rule that is
  reached means "replicated" and ends the search. No usable rule means replicated.
* Mesh axes of size 1 are dropped from the result (sharding over them is a no-op).
* A name can appear in several rules: later rules are fallbacks (e.g. ``("heads", "tensor")``
  then ``("heads", None)``).

Presets (gin constants, selected with the ``LOGICAL_AXIS_RULES`` macro):
``%sharding.DATA_PARALLEL`` (only the batch is split), ``%sharding.FSDP`` (batch over
``data × fsdp``, weights' ``embed`` dim over ``fsdp``), ``%sharding.FSDP_TENSOR`` (FSDP plus
Megatron-style tensor parallelism of ``heads``/``mlp``/``vocab`` over ``tensor``).

The mesh comes from :class:`MeshConfig`: axis names and a shape with at most one ``-1`` filled
from the device count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import gin

from framework.core.errors import ConfigError

MeshAxes = str | tuple[str, ...] | None
Rules = Sequence[tuple[str, MeshAxes]]

MESH_AXES = ("data", "fsdp", "tensor")

DATA_PARALLEL: tuple[tuple[str, MeshAxes], ...] = (
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
)
FSDP: tuple[tuple[str, MeshAxes], ...] = (
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
    ("embed", "fsdp"),
    ("vocab", "fsdp"),
    ("mlp", "fsdp"),
)
FSDP_TENSOR: tuple[tuple[str, MeshAxes], ...] = (
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "fsdp"),
    ("mlp", "fsdp"),
)
PRESETS = {"data_parallel": DATA_PARALLEL, "fsdp": FSDP, "fsdp_tensor": FSDP_TENSOR}

for _name, _rules in PRESETS.items():
    gin.constant(f"sharding.{_name.upper()}", _rules)


@gin.configurable(module="sharding")
@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis names and shape; one ``-1`` in ``shape`` is filled from the device count."""

    axes: tuple[str, ...] = MESH_AXES
    shape: tuple[int, ...] = (-1, 1, 1)
    num_devices: int | None = None  # use only the first N devices (None: all of them)

    def resolved_shape(self, num_devices: int) -> tuple[int, ...]:
        """The shape with ``-1`` filled in; ConfigError (with the numbers) when it cannot fit."""
        axes, shape = tuple(self.axes), tuple(int(s) for s in self.shape)
        if len(axes) != len(shape):
            raise ConfigError(f"mesh: {len(axes)} axes {axes} but {len(shape)} sizes {shape}")
        if shape.count(-1) > 1:
            raise ConfigError(f"mesh: at most one -1 allowed in shape {shape}")
        if any(s == 0 or s < -1 for s in shape):
            raise ConfigError(f"mesh: sizes must be positive or -1, got {shape}")
        fixed = math.prod(s for s in shape if s != -1)
        if -1 in shape:
            if num_devices % fixed:
                raise ConfigError(
                    f"mesh {dict(zip(axes, shape, strict=True))}: the fixed axes use {fixed} "
                    f"devices, which does not divide the {num_devices} devices available"
                )
            shape = tuple(num_devices // fixed if s == -1 else s for s in shape)
        elif fixed != num_devices:
            raise ConfigError(
                f"mesh {dict(zip(axes, shape, strict=True))} needs {fixed} devices but "
                f"{num_devices} are available"
            )
        return shape

    def make(self, devices: Sequence[Any] | None = None):
        """Build the ``jax.sharding.Mesh`` (Auto axis types: jit propagates the shardings)."""
        import jax

        devices = list(jax.devices() if devices is None else devices)
        if self.num_devices is not None:
            if self.num_devices > len(devices):
                raise ConfigError(
                    f"mesh: num_devices {self.num_devices} but only {len(devices)} devices exist"
                )
            devices = devices[: self.num_devices]
        shape = self.resolved_shape(len(devices))
        return jax.make_mesh(
            shape,
            tuple(self.axes),
            axis_types=(jax.sharding.AxisType.Auto,) * len(shape),
            devices=devices,
        )


def _as_tuple(mesh_axes: MeshAxes) -> tuple[str, ...]:
    if mesh_axes is None:
        return ()
    return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)


def logical_to_mesh(
    names: Sequence[str | None],
    rules: Rules,
    mesh_shape: dict[str, int],
    shape: Sequence[int] | None = None,
):
    """The PartitionSpec for an array whose dims have logical ``names`` (module docstring)."""
    from jax.sharding import PartitionSpec

    used: set[str] = set()
    spec: list[Any] = []
    for dim, name in enumerate(names):
        chosen: tuple[str, ...] = ()
        if name is not None:
            for logical, mesh_axes in rules:
                if logical != name:
                    continue
                axes = _as_tuple(mesh_axes)
                if not axes:
                    break
                if any(a not in mesh_shape or a in used for a in axes):
                    continue
                size = math.prod(mesh_shape[a] for a in axes)
                if shape is not None and shape[dim] % size:
                    continue
                chosen = tuple(a for a in axes if mesh_shape[a] > 1)
                used.update(axes)
                break
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else chosen)
    while spec and spec[-1] is None:
        spec.pop()
    return PartitionSpec(*spec)


def variable_axes(variable: Any) -> tuple[str | None, ...] | None:
    """The logical axis names a parameter was annotated with (None when it has none)."""
    metadata = variable.get_metadata() if hasattr(variable, "get_metadata") else {}
    for key in ("out_sharding", "sharding_names", "sharding"):
        names = metadata.get(key)
        if names:
            return tuple(names)
    return None


def state_shardings(state: Any, mesh: Any, rules: Rules) -> Any:
    """A tree like ``state`` (an ``nnx.State`` / pytree of Variables or arrays) of NamedShardings."""
    import jax
    from flax import nnx

    mesh_shape = dict(mesh.shape)

    def one(leaf: Any) -> Any:
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        names = variable_axes(leaf) if isinstance(leaf, nnx.Variable) else None
        shape = getattr(value, "shape", ())
        if names is None or len(names) != len(shape):
            spec = jax.sharding.PartitionSpec()
        else:
            spec = logical_to_mesh(names, rules, mesh_shape, shape)
        sharding = jax.sharding.NamedSharding(mesh, spec)
        return leaf.replace(sharding) if isinstance(leaf, nnx.Variable) else sharding

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Any, rules: Rules, ndim: int = 2):
    """Sharding of a ``[batch, sequence, ...]`` input: batch by the rules, the rest replicated."""
    import jax

    names = ("batch", "sequence") + (None,) * (ndim - 2)
    return jax.sharding.NamedSharding(mesh, logical_to_mesh(names[:ndim], rules, dict(mesh.shape)))


def mesh_axes_of(logical: str, mesh: Any, rules: Rules) -> tuple[str, ...]:
    """The mesh axes (of size > 1) that a dimension named ``logical`` is split over."""
    spec = logical_to_mesh((logical,), rules, dict(mesh.shape))
    return _as_tuple(spec[0]) if len(spec) else ()


def batch_divisor(mesh: Any, rules: Rules) -> int:
    """How many ways the batch dimension is split (the global batch must be a multiple)."""
    spec = logical_to_mesh(("batch",), rules, dict(mesh.shape))
    axes = _as_tuple(spec[0]) if len(spec) else ()
    return math.prod(dict(mesh.shape)[a] for a in axes)


def batch_divisor_for_shape(mesh_shape: dict[str, int], rules: Rules) -> int:
    """:func:`batch_divisor` from a mesh shape dict (no devices needed: used by validate)."""
    spec = logical_to_mesh(("batch",), rules, mesh_shape)
    axes = _as_tuple(spec[0]) if len(spec) else ()
    return math.prod(mesh_shape[a] for a in axes)
