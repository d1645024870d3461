"""XLA compiler options deepdive passes to its hot compiled functions for CPUs.

Why: on CPU, XLA hands matrix products to YNNPACK by default; for this project's shapes its
Eigen path was as fast or faster on the 2-core machine we measured (decode, interleaved A/B:
baby GPT batch 1 +9 %, batch 8 and GPT-2 equal; training: baby GPT +9-16 %, GPT-2 124M batch 1
within run-to-run noise), so the train step and the decode loop are compiled with YNNPACK fusions
off. Re-measure on other CPUs with ``DEEPDIVE_XLA_OPTIONS={}``.
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
    """Options for the train step and the decode loop compiled for XLA:CPU (None: defaults)."""
    import jax
    import jax.numpy as jnp

    if env := os.environ.get(ENV):
        return json.loads(env) or None
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU).lower(jnp.zeros(())).compile()
    except Exception:  # noqa: BLE001 - an XLA without this option
        return None
    return dict(_CPU)
