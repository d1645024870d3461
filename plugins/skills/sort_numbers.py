"""``sort_numbers``: sort a short list of small numbers, answering in the chat format.

A base model that only continues web text cannot do it (it does not answer, let alone stop at
the end of its turn); a tiny model fine-tuned on a few thousand examples can. The user asks in
one of a few phrasings; the answer is the numbers in ascending order, separated by spaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.core.errors import ConfigError
from framework.core.registry import SKILLS

PHRASINGS = (
    "Sort these numbers: {numbers}",
    "Put in ascending order: {numbers}",
    "sort {numbers}",
)


@SKILLS.register("sort_numbers")
class SortNumbers:
    """Sort ``min_length``..``max_length`` numbers drawn from ``0..max_value`` (repeats allowed)."""

    def __init__(self, min_length: int = 3, max_length: int = 5, max_value: int = 9):
        if not 1 <= min_length <= max_length:
            raise ConfigError(f"skills.sort_numbers: bad lengths {min_length}..{max_length}")
        self.min_length, self.max_length, self.max_value = min_length, max_length, max_value

    def example(self, rng: np.random.Generator) -> tuple[list[dict[str, Any]], str]:
        length = int(rng.integers(self.min_length, self.max_length + 1))
        numbers = rng.integers(0, self.max_value + 1, size=length).tolist()
        phrasing = PHRASINGS[int(rng.integers(len(PHRASINGS)))]
        question = phrasing.format(numbers=" ".join(map(str, numbers)))
        return [{"role": "user", "content": question}], " ".join(map(str, sorted(numbers)))
