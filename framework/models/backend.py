"""The one seam between model code and device-specific kernels.

Rules, in order:

1. Model code calls :func:`dense`, :func:`causal_attention`, :func:`decode_attention` and
   :func:`residual_boundary` (through ``framework.models.layers``), never a kernel module.
2. Which kernels serve a call is decided from the devices the program is **compiled for**:
   whoever jits a model function declares them with :func:`compiled_for` (the trainer, the
   evaluator, the generator, ``deepdive compile``). The host process's default backend plays no
   part, so a train step lowers for a TPU topology from a CPU machine.
   Undeclared (a bare ``jax.jit`` in a test or a notebook), the target is the process's devices.
3. Two kernel families exist today. ``framework/kernels/cpu`` serves fp32 programs compiled
   for exactly one CPU device in one process, when its kernels are built. On TPUs, causal
   attention runs Pallas' flash-attention kernel (``jax.experimental.pallas.ops.tpu``), per
   device under ``shard_map`` (the partitioner cannot split a kernel), when the caller declared
   the mesh; on NVIDIA GPUs, bf16/fp16 causal attention is cuDNN's fused kernel. Every other
   program gets XLA's own ops (einsum, ``jax.nn.dot_product_attention``),
   which the SPMD partitioner understands.

This module is the only importer of ``framework.kernels`` (an import contract checks it).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Target:
    """What a program is compiled for: the devices' platform, how many, over how many processes."""

    platform: str
    num_devices: int
    num_processes: int
    # the program's mesh and the mesh axes that split the batch (for kernels under shard_map)
    mesh: Any = dataclasses.field(default=None, compare=False)
    batch_axes: tuple[str, ...] = ()
    head_axes: tuple[str, ...] = ()
    sequence_axes: tuple[str, ...] = ()

    @classmethod
    def of(cls, devices: Iterable[jax.Device]) -> Target:
        devices = list(devices)
        if not devices:
            raise ValueError("a compilation target needs at least one device")
        platforms = {d.platform for d in devices}
        if len(platforms) != 1:
            raise ValueError(f"devices of several platforms in one program: {sorted(platforms)}")
        processes = {d.process_index for d in devices}
        return cls(platforms.pop(), len(devices), len(processes))


_TARGET: contextvars.ContextVar[Target | None] = contextvars.ContextVar(
    "deepdive_compilation_target", default=None
)


def compiled_for(
    fn: Callable,
    devices: Iterable[jax.Device],
    mesh: Any = None,
    batch_axes: Sequence[str] = (),
    head_axes: Sequence[str] = (),
    sequence_axes: Sequence[str] = (),
) -> Callable:
    """``fn`` declared to be compiled for ``devices``: while it runs (while ``jax.jit`` traces
    it), every seam function decides its kernels for that target. ``mesh`` with the axes that
    split the batch and the attention heads lets per-device kernels run under ``shard_map``."""
    target = dataclasses.replace(
        Target.of(devices),
        mesh=mesh,
        batch_axes=tuple(batch_axes),
        head_axes=tuple(head_axes),
        sequence_axes=tuple(sequence_axes),
    )

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _TARGET.set(target)
        try:
            return fn(*args, **kwargs)
        finally:
            _TARGET.reset(token)

    return traced


def current_target() -> Target:
    """The declared target of the function being traced, else the process's devices."""
    declared = _TARGET.get()
    if declared is not None:
        return declared
    return Target(jax.default_backend(), jax.device_count(), jax.process_count())


def layer_loop_unroll(num_layers: int) -> int:
    """How many iterations of the scan over stacked layers to unroll: all of them on CPUs (where a
    rolled loop costs a fifth of the step and compile time is small), none on accelerators (one
    block in the program, so compile time and program size do not grow with depth)."""
    return num_layers if current_target().platform == "cpu" else 1


# ----------------------------------------------------------------------------------------------
# Which kernels serve a target


def _cpu_kernels_reason(target: Target) -> str | None:
    """None when the CPU kernels serve ``target``, else why they do not."""
    if target.platform != "cpu":
        return f"compiled for {target.platform}"
    if target.num_devices != 1 or target.num_processes != 1:
        return f"{target.num_devices} devices: sharded programs keep XLA's ops"
    from framework.kernels.cpu import build

    return build.unavailable_reason()


def _cpu_kernels(*arrays: jax.Array) -> bool:
    return all(a.dtype == jnp.float32 for a in arrays) and (
        _cpu_kernels_reason(current_target()) is None
    )


def describe(devices: Sequence[jax.Device]) -> str:
    """One line for logs: which kernels serve fp32 programs compiled for ``devices``."""
    reason = _cpu_kernels_reason(Target.of(devices))
    if reason is not None:
        return f"XLA's ops ({reason})"
    from framework.kernels.cpu import build

    return f"CPU kernels (fp32: CBLAS products with {build.blas_name()}, blocked attention)"


def compiler_options(devices: Sequence[jax.Device]) -> dict[str, Any] | None:
    """``jax.jit(..., compiler_options=...)`` for the hot functions compiled for ``devices``."""
    if Target.of(devices).platform != "cpu":
        return None
    from framework.kernels.cpu import xla_options

    return xla_options.compiler_options()


# ----------------------------------------------------------------------------------------------
# The operations model code calls


def dense(
    x: jax.Array,
    w: jax.Array,
    contract: int = 1,
    transpose_w: bool = False,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """Contract the last ``contract`` axes of ``x`` with the leading axes of ``w``.

    ``transpose_w``: contract with the trailing axes of ``w`` instead (``x @ wᵀ``, e.g. logits
    from a ``[V, C]`` embedding). x ``[*batch, *k]``, w ``[*k, *out]`` -> ``[*batch, *out]``.
    Off the CPU kernels this is one ``jnp.einsum`` over the original axes, so a sharded weight's
    axes stay visible to the partitioner.
    """
    if _cpu_kernels(x, w):
        from framework.kernels.cpu import gemm

        return gemm.dense(x, w, contract, transpose_w, preferred_element_type)
    batch, out = x.ndim - contract, w.ndim - contract
    if (w.shape[out:] if transpose_w else w.shape[:contract]) != x.shape[batch:]:
        raise ValueError(f"dense: x {x.shape} and w {w.shape} do not contract over {contract}")
    return jnp.einsum(
        _einsum_spec(batch, contract, out, transpose_w),
        x,
        w,
        preferred_element_type=preferred_element_type,
    )


def _einsum_spec(batch: int, contract: int, out: int, transpose_w: bool) -> str:
    """The einsum of :func:`dense`, e.g. ``"ab c,c de->ab de"`` without the spaces."""
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    b, k, o = ("".join(next(letters) for _ in range(n)) for n in (batch, contract, out))
    return f"{b}{k},{o + k if transpose_w else k + o}->{b}{o}"


def segmented_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, scale: float, segment_ids: jax.Array
) -> jax.Array | None:
    """Causal attention inside packed segments (``segment_ids`` int [B, T]) by a kernel of the
    target, or None: the caller then uses XLA's attention with the explicit mask. TPUs run
    Pallas' flash attention with its segment ids, so no [T, T] mask or score matrix is built."""
    target = current_target()
    if target.platform == "tpu" and target.mesh is not None:
        return _tpu_flash_attention(q, k, v, scale, target, segment_ids)
    return None


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array | None:
    """Plain causal attention (q [B,T,H,D], k/v [B,T,K,D]) by a kernel of the target, or None:
    the caller then uses XLA's attention."""
    target = current_target()
    if target.platform == "tpu" and target.mesh is not None:
        return _tpu_flash_attention(q, k, v, scale, target)
    if target.platform == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128:
        # cuDNN's fused attention (flash attention on Hopper), which jax partitions itself
        return jax.nn.dot_product_attention(
            q, k, v, is_causal=True, scale=scale, implementation="cudnn"
        )
    if not _cpu_kernels(q, k, v):
        return None
    from framework.kernels.cpu import attention

    return attention.causal_attention(q, k, v, scale)


TPU_FLASH_BLOCK = 128  # the kernel's smallest block; other lengths keep XLA's attention


def _tpu_flash_attention(q, k, v, scale, target: Target, segment_ids=None) -> jax.Array | None:
    """Pallas' TPU flash attention, one call per device under ``shard_map`` (batch split over
    ``target.batch_axes``, heads over ``target.head_axes``), within packed segments when
    ``segment_ids`` [B, T] is given; None where it does not apply."""
    from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash
    from jax.sharding import PartitionSpec

    batch, length, heads, head_dim = q.shape
    if length % TPU_FLASH_BLOCK or head_dim % 8:
        return None
    mesh_shape = dict(target.mesh.shape)
    batch_split = math.prod(mesh_shape[a] for a in target.batch_axes)
    head_split = math.prod(mesh_shape[a] for a in target.head_axes)
    if batch % batch_split or heads % head_split or k.shape[2] % head_split:
        return None
    group = heads // k.shape[2]  # grouped-query heads: each key/value head serves `group`
    block = 512 if length % 512 == 0 else TPU_FLASH_BLOCK
    sizes = pallas_flash.BlockSizes(
        block_q=block, block_k_major=block, block_k=block, block_b=1,
        block_q_major_dkv=block, block_k_major_dkv=block, block_k_dkv=block, block_q_dkv=block,
        block_k_major_dq=block, block_k_dq=block, block_q_dq=block,
    )  # fmt: skip

    def per_device(q, k, v, *segments):  # [b, T, h, D] -> the kernel's [b, h, T, D]
        if group > 1:
            k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        ids = pallas_flash.SegmentIds(q=segments[0], kv=segments[0]) if segments else None
        out = pallas_flash.flash_attention(
            q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
            segment_ids=ids, causal=True, sm_scale=float(scale), block_sizes=sizes,
        )  # fmt: skip
        return out.transpose(0, 2, 1, 3)

    spec = PartitionSpec(target.batch_axes or None, None, target.head_axes or None, None)
    args, specs = (q, k, v), (spec, spec, spec)
    if segment_ids is not None:
        args += (segment_ids.astype(jnp.int32),)
        specs += (PartitionSpec(target.batch_axes or None, None),)
    return jax.shard_map(
        per_device, mesh=target.mesh, in_specs=specs, out_specs=spec, check_vma=False
    )(*args)


def decode_attention(
    q: jax.Array,
    cache_kt: jax.Array,
    cache_v: jax.Array,
    mask: jax.Array,
    limit: jax.Array,
    scale: float,
) -> jax.Array | None:
    """One decode step (q [B,1,H,D]) against the KV cache by a kernel of the target, or None.

    The cache as ``layers.cached_attention`` keeps it; ``mask`` bool [B, S]; ``limit`` the slots
    written so far (the kernel reads no further).
    """
    if q.shape[1] != 1 or not _cpu_kernels(q, cache_kt, cache_v):
        return None
    from framework.kernels.cpu import attention

    return attention.decode_attention(q, cache_kt, cache_v, mask, limit, scale)


def block_activation(x: jax.Array) -> jax.Array:
    """The residual stream ``x [B, T, C]`` at a block boundary, laid out as the program's mesh
    says: batch over the batch axes, the sequence over the axes a ``sequence`` rule names (none by
    default), the embedding left to the partitioner. Pins the layout the partitioner would
    otherwise re-decide per block; an identity when no mesh was declared."""
    target = current_target()
    if target.mesh is None or target.mesh.size == 1 or x.ndim != 3:
        return x
    from jax.sharding import NamedSharding, PartitionSpec

    free = PartitionSpec.UNCONSTRAINED
    spec = PartitionSpec(target.batch_axes or None, target.sequence_axes or free, free)
    return jax.lax.with_sharding_constraint(x, NamedSharding(target.mesh, spec))


def residual_boundary(x: jax.Array) -> jax.Array:
    """The residual stream at a block's input: identity, but where the CPU kernels serve, its
    gradient is materialised once as a whole array (XLA:CPU would otherwise re-fuse the sum of
    every later block's branch into each consumer; a third of the baby GPT's backward pass)."""
    if not _cpu_kernels(x):
        return x
    from framework.kernels.cpu import gemm

    return gemm.gradient_boundary(x)
