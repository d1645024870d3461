"""``greedy``: always pick the most likely token (argmax; the first index on ties)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from framework.core.registry import SAMPLERS
from plugins.samplers import STAGES, keep_argmax


@SAMPLERS.register("greedy")
@dataclasses.dataclass(frozen=True)
class Greedy:
    """Greedy decoding: keep only the argmax token (deterministic, no random key used)."""

    stage: ClassVar[int] = STAGES["greedy"]
    deterministic: ClassVar[bool] = True

    def __call__(self, logits, seen=None):
        return keep_argmax(logits)
