"""Multi-host start-up: ``jax.distributed.initialize`` before any other JAX operation.

Where the cluster description comes from, first match wins:

1. explicit arguments (``coordinator_address``, ``num_processes``, ``process_id``; the training
   command exposes them as ``--coordinator``, ``--num_processes``, ``--process_id``),
2. SkyPilot's environment: ``SKYPILOT_NODE_IPS`` (newline-separated, the first is the
   coordinator), ``SKYPILOT_NODE_RANK``, ``SKYPILOT_NUM_NODES`` (port ``DEEPDIVE_COORDINATOR_PORT``,
   default 8476),
3. JAX's own auto-detection (Cloud TPU pods, SLURM, Open MPI, ...), tried only when
   ``auto=True`` or ``DEEPDIVE_DISTRIBUTED=auto`` since it probes cloud metadata otherwise.

With one process (no flags, no SkyPilot cluster of more than one node) it does nothing, so
single-host runs never wait on a coordinator. :func:`banner` logs process index/count, local and
global devices and the mesh.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

DEFAULT_PORT = 8476
_initialized = False


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    source: str  # "flags", "skypilot", "auto" or "single"
    local_device_ids: tuple[int, ...] | None = None


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: dict[str, str] | None = None,
    auto: bool | None = None,
) -> ClusterSpec:
    """Decide where the cluster description comes from (pure: reads only ``env``)."""
    env = dict(os.environ if env is None else env)
    if coordinator_address or num_processes or process_id is not None:
        if not (coordinator_address and num_processes and process_id is not None):
            from framework.core.errors import ConfigError

            raise ConfigError(
                "distributed: --coordinator, --num_processes and --process_id go together "
                f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r})"
            )
        return ClusterSpec(coordinator_address, int(num_processes), int(process_id), "flags")
    nodes = [ip.strip() for ip in env.get("SKYPILOT_NODE_IPS", "").splitlines() if ip.strip()]
    num_nodes = int(env.get("SKYPILOT_NUM_NODES", len(nodes) or 1))
    if nodes and num_nodes > 1:
        port = int(env.get("DEEPDIVE_COORDINATOR_PORT", DEFAULT_PORT))
        rank = int(env.get("SKYPILOT_NODE_RANK", "0"))
        return ClusterSpec(f"{nodes[0]}:{port}", num_nodes, rank, "skypilot")
    if auto is None:
        auto = env.get("DEEPDIVE_DISTRIBUTED", "").lower() == "auto"
    if auto:
        return ClusterSpec(None, None, None, "auto")
    return ClusterSpec(None, None, None, "single")


def initialize(spec: ClusterSpec | None = None, **kwargs: Any) -> ClusterSpec:
    """Initialise ``jax.distributed`` per :func:`resolve` (once; a no-op for a single host)."""
    global _initialized
    spec = spec or resolve(**kwargs)
    if _initialized or spec.source == "single":
        return spec
    import jax

    if spec.source == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator_address,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
            local_device_ids=list(spec.local_device_ids) if spec.local_device_ids else None,
        )
    _initialized = True
    return spec


def banner(mesh: Any | None = None, spec: ClusterSpec | None = None) -> str:
    """One line: process index/count, local/global devices (kind), the mesh."""
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    text = (
        f"process {jax.process_index()}/{jax.process_count()}"
        f"{f' ({spec.source})' if spec else ''}: "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices ({kind})"
    )
    if mesh is not None:
        text += f"; mesh {dict(mesh.shape)}"
    return text
