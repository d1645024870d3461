"""The shape of ``explain(doc)``: a verdict plus one entry per statistic vs its threshold.

``explain`` returns::

    {"filter": "gopher_quality", "keep": False, "reason": "gopher_short_doc",
     "checks": [{"name": "gopher_short_doc", "statistic": "non_symbol_words", "value": 12,
                 "threshold": 50, "drops_if": "<", "drops": True}, ...],
     "info": {...}}            # extra facts (e.g. language scores), optional

``drops_if`` is the comparison that drops the document (``value drops_if threshold``), so a reader
sees at once whether ``>`` or ``>=`` applies. ``reason`` is the first failing check in the filter's
own order (the one ``filter`` reports); checks after it are still computed and listed, except
where a statistic cannot be computed (e.g. no words).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

COMPARISONS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "in": lambda value, threshold: value in threshold,
}


@dataclass
class Report:
    """Collects checks in order; the first dropping check is the reason."""

    filter: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def check(
        self,
        name: str,
        statistic: str,
        value: Any,
        drops_if: str,
        threshold: Any,
        *,
        against: Any = None,
    ) -> bool:
        """Record ``value drops_if threshold``; returns True when it drops the document.

        ``against`` is the operand actually compared when ``threshold`` is only its description
        (a block list of millions of entries is shown as ``"domain block list (N entries)"``).
        """
        operand = threshold if against is None else against
        drops = bool(COMPARISONS[drops_if](value, operand))
        self.checks.append(
            {
                "name": name,
                "statistic": statistic,
                "value": value,
                "threshold": threshold,
                "drops_if": drops_if,
                "drops": drops,
            }
        )
        if drops and self.reason is None:
            self.reason = name
        return drops

    def drop(self, name: str, statistic: str, detail: Any = None) -> None:
        """Record an unconditional drop (e.g. an empty document, a banned list hit)."""
        self.checks.append(
            {"name": name, "statistic": statistic, "value": detail, "drops_if": None, "drops": True}
        )
        if self.reason is None:
            self.reason = name

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "filter": self.filter,
            "keep": self.reason is None,
            "reason": self.reason,
            "checks": self.checks,
        }
        if self.info:
            out["info"] = self.info
        return out


def verdict(report: Report) -> bool | tuple[bool, str]:
    """``filter``'s return value from a report."""
    return True if report.reason is None else (False, report.reason)
