"""``repetition_penalty`` (Keskar et al. 2019, CTRL; as HF ``repetition_penalty``)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES


@SAMPLERS.register("repetition_penalty")
@dataclasses.dataclass(frozen=True)
class RepetitionPenalty:
    """Penalise every token already in the prompt or the generated text.

    For a seen token: a positive logit is divided by ``penalty``, a negative one multiplied by it
    (so penalty > 1 always makes it less likely). Each token is penalised once, however often it
    occurred. Padding never counts as seen.
    """

    penalty: float = 1.1
    stage: ClassVar[int] = STAGES["penalty"]
    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        if not self.penalty > 0:
            raise ConfigError(f"samplers.repetition_penalty.penalty = {self.penalty}: must be > 0")

    def __call__(self, logits, seen=None):
        import jax.numpy as jnp

        if seen is None or self.penalty == 1:
            return logits
        penalised = jnp.where(logits < 0, logits * self.penalty, logits / self.penalty)
        return jnp.where(seen, penalised, logits)
