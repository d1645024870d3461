"""``top_p`` (nucleus sampling, Holtzman et al. 2019): the smallest set whose mass reaches p."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES, mask_below


@SAMPLERS.register("top_p")
@dataclasses.dataclass(frozen=True)
class TopP:
    """Keep the smallest set of most likely tokens whose total probability is >= p.

    Sorted by probability, a token is kept when the mass of the tokens before it is < p, so the
    most likely token always survives. Tokens tied with the last kept one are kept too.
    """

    p: float = 0.9
    stage: ClassVar[int] = STAGES["top_p"]
    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        if not 0 < self.p <= 1:
            raise ConfigError(f"samplers.top_p.p = {self.p}: must be in (0, 1]")

    def __call__(self, logits, seen=None):
        import jax
        import jax.numpy as jnp

        if self.p >= 1:
            return logits
        sorted_logits = -jnp.sort(-logits, axis=-1)  # descending, [B, V]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        n_keep = jnp.sum(mass_before < self.p, axis=-1, keepdims=True)  # >= 1
        threshold = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
        return mask_below(logits, threshold)
