"""``temperature``: divide the logits by T (T < 1 sharpens, T > 1 flattens; T = 0 is greedy)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES, keep_argmax


@SAMPLERS.register("temperature")
@dataclasses.dataclass(frozen=True)
class Temperature:
    """Sample from softmax(logits / temperature); temperature 0 means greedy (argmax)."""

    temperature: float = 1.0
    stage: ClassVar[int] = STAGES["temperature"]

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ConfigError(
                f"samplers.temperature.temperature = {self.temperature}: must be >= 0 "
                "(0 means greedy)"
            )

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0

    def __call__(self, logits, seen=None):
        if self.temperature == 0:
            return keep_argmax(logits)
        if self.temperature == 1:
            return logits
        return logits / self.temperature
