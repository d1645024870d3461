"""An example third-party plugin package: importing it registers ``filters.min_characters``."""

from framework.core.registry import FILTERS


@FILTERS.register("min_characters")
class MinCharacters:
    """Drop documents shorter than ``min_chars`` characters."""

    def __init__(self, min_chars: int = 100):
        self.min_chars = min_chars

    def explain(self, doc) -> dict:
        return {
            "characters": {"value": len(doc.text), "threshold": self.min_chars, "keep_if": ">="}
        }

    def filter(self, doc) -> bool | tuple[bool, str]:
        if len(doc.text) < self.min_chars:
            return False, "too_short"
        return True
