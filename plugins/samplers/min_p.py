"""``min_p`` (Nguyen et al. 2024): drop tokens much less likely than the most likely one."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES, mask_below


@SAMPLERS.register("min_p")
@dataclasses.dataclass(frozen=True)
class MinP:
    """Keep tokens with probability >= min_p × (the row's top probability).

    In logit space: ``logit >= max_logit + log(min_p)``, the same set without a softmax.
    """

    min_p: float = 0.05
    stage: ClassVar[int] = STAGES["min_p"]
    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        if not 0 <= self.min_p <= 1:
            raise ConfigError(f"samplers.min_p.min_p = {self.min_p}: must be in [0, 1]")

    def __call__(self, logits, seen=None):
        import jax.numpy as jnp

        if self.min_p == 0:
            return logits
        top = jnp.max(logits, axis=-1, keepdims=True)
        return mask_below(logits, top + math.log(self.min_p))
