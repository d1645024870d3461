"""XLA compiler options deepdive passes to its hot compiled functions (per compilation).

Why: on CPU, XLA hands matrix products to YNNPACK by default. For the shapes of this project's
models (a decode step's [batch, d_model] x [d_model, n]; a training step's [tokens, d_model] x
[d_model, n] and their gradients) XLA's Eigen path was faster on the machines we measured
(``benchmarks/decode_throughput.py``, ``benchmarks/train_throughput.py``: +16 % training tokens/s
on the baby GPT), so the train step and the decode loop are compiled with YNNPACK fusions off.
Options are given to ``jax.jit(..., compiler_options=...)``, never as process-wide XLA_FLAGS.

``$DEEPDIVE_XLA_OPTIONS`` (a JSON object, ``{}`` for XLA's defaults) overrides the choice. An
option the installed XLA does not know is dropped rather than failing the compilation.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

ENV = "DEEPDIVE_XLA_OPTIONS"
_CPU = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, Any] | None:
    """Options for the train step and the decode loop on the default backend (None: defaults)."""
    import jax
    import jax.numpy as jnp

    if env := os.environ.get(ENV):
        return json.loads(env) or None
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU).lower(jnp.zeros(())).compile()
    except Exception:  # noqa: BLE001 - an XLA without this option
        return None
    return dict(_CPU)
