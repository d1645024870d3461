"""Compilation targets by the names the clouds use: TPU slices (``v5e-16``, ``v5litepod-16``,
``v5p-8``, ``v6e-256``, ``v4-8``) as compile-only devices from libtpu, without a TPU; and GPU
hosts (``h100x8``, ``h200x8``, ``a100x8``, several hosts as ``h100x8x4``) as compile-only devices
from jax's CUDA plugin (``pip install 'jax[cuda12]'``), without a GPU, described by the device
specs in ``gpu_specs/`` (what XLA's GPU compiler needs to know of the chip).

Slice sizes count what Google Cloud counts: TensorCores for v4 and v5p (2 per chip), chips for
v5e and v6e. A slice of N chips is laid out as the physical shape Google Cloud gives it (e.g.
v5e-16 = 4x4 chips on 4 hosts); ``--num_slices`` multiplies it (multi-slice, over DCN).

HBM per chip (Google Cloud TPU docs, "TPU versions"): v4 32 GiB, v5e 16 GiB, v5p 95 GiB,
v6e 32 GiB. It is the figure a compile is compared with; the compiler's own out-of-memory
verdict is what decides whether a program fits.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Generation:
    """One TPU generation: libtpu's name, TensorCores per chip (1 with megacore or a single
    core), HBM per chip, and whether its slices are 2-D (v5e, v6e) or 3-D tori."""

    libtpu_name: str
    cores_per_chip: int  # how Google Cloud's slice size counts a chip
    hbm_bytes: int
    dims: int


GENERATIONS: dict[str, Generation] = {
    "v4": Generation("v4", 2, 32 * GIB, 3),
    "v5p": Generation("v5p", 2, 95 * GIB, 3),
    "v5e": Generation("v5e", 1, 16 * GIB, 2),
    "v6e": Generation("v6e", 1, 32 * GIB, 2),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6lite": "v6e"}

_NAME = re.compile(r"^(?:tpu-)?(v4|v5p|v5e|v5litepod|v5lite|v6e|v6lite)-(\d+)$")


@dataclasses.dataclass(frozen=True)
class Topology:
    """A parsed slice name: ``chips`` per slice, the physical ``shape`` in chips."""

    name: str
    generation: str
    chips: int
    shape: tuple[int, ...]
    num_slices: int = 1

    @property
    def hbm_bytes_per_chip(self) -> int:
        return GENERATIONS[self.generation].hbm_bytes

    @property
    def libtpu_topology(self) -> str:
        """The name ``jax.experimental.topologies.get_topology_desc`` takes (``v5e:4x4``)."""
        gen = GENERATIONS[self.generation].libtpu_name
        return f"{gen}:{'x'.join(str(s) for s in self.shape)}"


def _shape(chips: int, dims: int) -> tuple[int, ...]:
    """Google Cloud's physical layout of ``chips``: as square (2-D) or cubic (3-D) as the powers
    of two allow (v5e-8 = 2x4, v5e-16 = 4x4, v5p-8 = 2x2x1, v5p-128 = 4x4x4)."""
    if chips < 1 or chips & (chips - 1):
        raise ConfigError(f"TPU slices have a power-of-two number of chips, not {chips}")
    log2 = chips.bit_length() - 1
    sides = sorted(1 << (log2 // dims + (1 if i < log2 % dims else 0)) for i in range(dims))
    return tuple(sides) if dims == 2 else tuple(reversed(sides))


def parse(name: str, num_slices: int = 1) -> Topology:
    """``v5e-16`` / ``v5litepod-16`` / ``tpu-v5p-8`` -> :class:`Topology`; ConfigError otherwise."""
    match = _NAME.match(name.strip().lower())
    if not match:
        known = ", ".join(f"{g}-N" for g in (*GENERATIONS, *ALIASES))
        raise ConfigError(f"--topology {name!r}: not a TPU slice name (expected one of {known})")
    generation = ALIASES.get(match.group(1), match.group(1))
    size = int(match.group(2))
    spec = GENERATIONS[generation]
    if size % spec.cores_per_chip:
        raise ConfigError(
            f"--topology {name}: {generation} slices count TensorCores ({spec.cores_per_chip} per "
            f"chip), so the size must be a multiple of {spec.cores_per_chip}"
        )
    chips = size // spec.cores_per_chip
    shape = _shape(chips, spec.dims)
    if num_slices < 1:
        raise ConfigError(f"--num_slices {num_slices}: must be at least 1")
    return Topology(name, generation, chips, shape, num_slices)


def devices(topology: Topology) -> list[Any]:
    """The compile-only devices of ``topology`` (every slice), from libtpu; ConfigError when
    libtpu is missing (``pip install 'deepdive[tpu]'``)."""
    # Off a TPU VM there is no metadata server to ask and no worker list: say so, or libtpu
    # logs errors while it looks (a TPU VM's own settings are left as they are).
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", topology.name.removeprefix("tpu-"))
    # compile-only devices touch no TPU: several processes may hold libtpu at once
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies
    except ImportError as error:  # pragma: no cover - every supported jax has it
        raise ConfigError(f"this jax cannot describe TPU topologies: {error}") from None
    try:
        desc = topologies.get_topology_desc(
            topology.libtpu_topology, platform="tpu", num_slices=topology.num_slices
        )
    except Exception as error:  # noqa: BLE001 - libtpu missing or the name unknown to it
        raise ConfigError(
            f"--topology {topology.name}: libtpu cannot describe {topology.libtpu_topology} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "install the tpu extra: pip install 'deepdive[tpu]'"
        ) from None
    return list(desc.devices)


@dataclasses.dataclass(frozen=True)
class CompileTarget:
    """What ``train(compile_for=...)`` compiles for: devices, a name for the report, chips and
    the HBM of one device."""

    name: str
    devices: list[Any]
    chips: int
    hbm_bytes_per_chip: int | None


def compile_target(name: str, num_slices: int = 1) -> CompileTarget:
    """The compile-only devices of the TPU slice ``name`` (times ``num_slices``) or of the GPU
    hosts ``name`` (``h100x8``)."""
    if parse_gpu(name) is not None:
        return gpu_compile_target(name)
    topology = parse(name, num_slices)
    found = devices(topology)
    chips = topology.chips * num_slices
    # libtpu lists v4's two TensorCores per chip as two devices: each gets half the chip's HBM
    per_device = topology.hbm_bytes_per_chip * chips // max(1, len(found))
    label = name if num_slices == 1 else f"{num_slices}x {name}"
    return CompileTarget(label, found, chips, per_device)


GPU_SPECS = Path(__file__).resolve().parent / "gpu_specs"
_GPU_NAME = re.compile(r"^(h100|h200|a100)x(\d+)(?:x(\d+))?$")


def parse_gpu(name: str) -> tuple[str, int, int] | None:
    """``h100x8`` -> ("h100", 8 GPUs per host, 1 host); ``h100x8x4`` -> 4 hosts; else None."""
    match = _GPU_NAME.match(name.strip().lower())
    if not match:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3) or 1)


def gpu_compile_target(name: str) -> CompileTarget:
    """The compile-only GPUs of ``name`` (``h100x8``), from jax's CUDA plugin."""
    kind, per_host, hosts = parse_gpu(name)
    spec = (GPU_SPECS / f"{kind}.txtpb").read_text()
    # the plugin checks the CUDA installation when it starts; there is no GPU to check here
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    from jax.experimental import topologies

    try:
        desc = topologies.get_topology_desc(
            kind, "cuda", target_config=spec, topology=f"1x{hosts}x{per_host}"
        )
    except Exception as error:  # noqa: BLE001 - the CUDA plugin missing or not started
        raise ConfigError(
            f"--topology {name}: jax cannot describe CUDA devices here ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); install jax's CUDA plugin "
            "(pip install 'jax[cuda12]') and start the command with it importable"
        ) from None
    memory = int(re.search(r"device_memory_size:\s*(\d+)", spec).group(1))
    return CompileTarget(name, list(desc.devices), per_host * hosts, memory)
