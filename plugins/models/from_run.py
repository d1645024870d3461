"""``models.from_run``: the model a run directory was trained or converted with.

Fine-tuning starts from another run (``train.init_from``); its ``model.json`` already says which
model plugin and hyper-parameters the checkpoint fits, so an SFT run file selects
``train.model = @models.from_run()`` with ``models.from_run.run_dir = %INIT_FROM`` instead of
repeating them. ``overrides`` changes what does not alter the parameters' shapes (``remat``,
``dropout``, ``compute_dtype``, ``scan_layers``, ``max_seq_len`` of a RoPE model, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from framework.core.errors import ConfigError
from framework.core.registry import MODELS


@MODELS.register("from_run")
def from_run(run_dir: str = "", overrides: dict[str, Any] | None = None) -> Any:
    """The model config in ``run_dir``'s ``model.json``, with ``overrides`` applied."""
    from framework.train import checkpoint

    if not run_dir:
        raise ConfigError("models.from_run: run_dir is not set (e.g. = %INIT_FROM)")
    _, config = checkpoint.read_model_config(run_dir)
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(config)}
    if unknown := sorted(set(overrides) - known):
        raise ConfigError(
            f"models.from_run: {run_dir}'s model has no field {', '.join(unknown)} "
            f"(fields: {', '.join(sorted(known))})"
        )
    return dataclasses.replace(config, **overrides)
