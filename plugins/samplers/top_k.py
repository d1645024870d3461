"""``top_k``: keep the k most likely tokens (Fan et al. 2018)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES, mask_below


@SAMPLERS.register("top_k")
@dataclasses.dataclass(frozen=True)
class TopK:
    """Keep the k largest logits per row (tokens tied with the k-th are kept too, as in HF)."""

    k: int = 50
    stage: ClassVar[int] = STAGES["top_k"]
    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        if not (isinstance(self.k, int) and self.k >= 1):
            raise ConfigError(f"samplers.top_k.k = {self.k!r}: must be an integer >= 1")

    def __call__(self, logits, seen=None):
        import jax

        if self.k >= logits.shape[-1]:
            return logits
        kth = jax.lax.top_k(logits, self.k)[0][..., -1:]  # [B, 1]
        return mask_below(logits, kth)
