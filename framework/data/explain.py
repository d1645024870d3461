"""How ``deepdive explain`` shows a step's ``explain(doc)``: one aligned table of statistic, value,
threshold and verdict, whichever of the two shapes a filter returned.

* The built-in filters' report (``plugins/filters/explaining.py``)::

      {"filter": "gopher_quality", "keep": False, "reason": "gopher_short_doc",
       "checks": [{"name": "gopher_short_doc", "statistic": "non_symbol_words", "value": 12,
                   "threshold": 50, "drops_if": "<", "drops": True}, ...],
       "info": {...}}

* The plain protocol of a third-party filter (README, "Write your own plugin"): one entry per
  statistic, the verdict left to the reader::

      {"characters": {"value": 42, "threshold": 100, "keep_if": ">="}}

  optionally with ``"statistic"`` (a description) and ``"keep"`` (a verdict of the filter's own).
  Without ``"keep"`` the verdict is ``value keep_if threshold``.

Both become :class:`Row` s with the comparison stated the same way (``value drops_if threshold``),
so a third-party filter lines up with the built-in ones. Everything else in the dict (``info``,
an extractor's figures) is listed as ``key: value`` under the table. Pure functions: the command
prints the lines, tests check them.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEEP = "ok"
DROP = "DROPS"
UNKNOWN = "?"  # the filter gave no verdict and its keep_if could not be evaluated

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, threshold: value in threshold,
    "not in": lambda value, threshold: value not in threshold,
}
# keep_if -> drops_if: the table states every rule as the comparison that drops the document.
OPPOSITE = {
    ">=": "<",
    ">": "<=",
    "<=": ">",
    "<": ">=",
    "==": "!=",
    "!=": "==",
    "in": "not in",
    "not in": "in",
}
# Keys of the built-in report that the step's header line already shows.
_REPORT_KEYS = ("filter", "keep", "reason")
INDENT = "    "
MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class Row:
    """One statistic vs its threshold: ``value drops_if threshold`` gives ``verdict``."""

    name: str
    statistic: str
    value: Any
    drops_if: str
    threshold: Any
    verdict: str  # KEEP, DROP, UNKNOWN, or "" for a bare figure without a rule


def format_value(value: Any) -> str:
    """A value on one line: floats to 4 significant digits, the rest as JSON cut at 60 chars."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def keep_verdict(value: Any, keep_if: str | None, threshold: Any) -> str:
    """KEEP / DROP from ``value keep_if threshold``; UNKNOWN when it cannot be evaluated."""
    compare = COMPARISONS.get(keep_if or "")
    if compare is None:
        return UNKNOWN
    try:
        return KEEP if compare(value, threshold) else DROP
    except TypeError:
        return UNKNOWN


def _check_row(check: dict[str, Any]) -> Row:
    """A built-in report's check (its ``drops`` is the filter's own verdict)."""
    return Row(
        name=str(check.get("name", "")),
        statistic=str(check.get("statistic", "")),
        value=check.get("value"),
        drops_if=check.get("drops_if") or "",
        threshold=check.get("threshold", ""),
        verdict=DROP if check.get("drops") else KEEP,
    )


def _is_statistic(entry: Any) -> bool:
    """Whether a top-level entry follows the plain protocol (a dict with a ``value``)."""
    return isinstance(entry, dict) and "value" in entry


def _statistic_row(name: str, entry: dict[str, Any]) -> Row:
    """A plain-protocol entry; the verdict is the filter's ``keep`` or else computed."""
    keep_if = entry.get("keep_if")
    has_rule = keep_if is not None or "threshold" in entry
    if isinstance(entry.get("keep"), bool):
        verdict = KEEP if entry["keep"] else DROP
    elif has_rule:
        verdict = keep_verdict(entry["value"], keep_if, entry.get("threshold"))
    else:
        verdict = ""
    if keep_if is None:
        drops_if = ""
    else:
        drops_if = OPPOSITE.get(keep_if, f"not {keep_if}")
    return Row(
        name=name,
        statistic=str(entry.get("statistic", "")),
        value=entry["value"],
        drops_if=drops_if,
        threshold=entry.get("threshold", ""),
        verdict=verdict,
    )


def explanation_rows(stats: Any) -> list[Row]:
    """The table rows of one ``explain(doc)`` result, built-in report or plain protocol."""
    if not isinstance(stats, dict):
        return []
    rows = [_check_row(c) for c in stats.get("checks") or [] if isinstance(c, dict)]
    rows += [
        _statistic_row(str(name), entry)
        for name, entry in stats.items()
        if name not in _REPORT_KEYS and _is_statistic(entry)
    ]
    return rows


def explanation_info(stats: Any) -> dict[str, Any]:
    """What is not a row: the report's ``info`` and any other key, in the filter's order."""
    if stats is None:
        return {}
    if not isinstance(stats, dict):
        return {"explain": stats}
    info: dict[str, Any] = {}
    for key, value in stats.items():
        if key in (*_REPORT_KEYS, "checks") or _is_statistic(value):
            continue
        if key == "info" and isinstance(value, dict):
            info.update(value)
        else:
            info[str(key)] = value
    return info


def _cells(row: Row) -> list[str]:
    no_threshold = isinstance(row.threshold, str) and not row.threshold
    threshold = "" if no_threshold else format_value(row.threshold)
    return [
        row.name,
        row.statistic,
        format_value(row.value),
        row.drops_if,
        threshold,
        row.verdict,
    ]


HEADER = ["check", "statistic", "value", "drops if", "threshold", "verdict"]
_RIGHT_ALIGNED = (2,)  # the value column, so that numbers line up


def table_lines(rows: list[Row]) -> list[str]:
    """Rows as aligned columns under a header (check, statistic, value, drops if, threshold,
    verdict); a column that is empty in every row is left out."""
    if not rows:
        return []
    cells = [_cells(r) for r in rows]
    used = [i for i in range(len(HEADER)) if any(c[i] for c in cells)]
    widths = {i: max(len(c[i]) for c in [HEADER, *cells]) for i in used}
    lines = []
    for row in [HEADER, *cells]:
        parts = [
            row[i].rjust(widths[i]) if i in _RIGHT_ALIGNED else row[i].ljust(widths[i])
            for i in used
        ]
        lines.append((INDENT + "  ".join(parts)).rstrip())
    return lines


def format_explanation(stats: Any) -> list[str]:
    """The lines shown for one ``explain(doc)`` result: the table, then ``key: value`` facts."""
    info = explanation_info(stats)
    return table_lines(explanation_rows(stats)) + [
        f"{INDENT}{key}: {format_value(value)}" for key, value in info.items()
    ]


def format_step(entry: dict[str, Any]) -> list[str]:
    """One step of a pipeline trace: ``[step] VERDICT (reason)``, its detail, its explanation."""
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    lines = [f"[{entry['step']}] {str(entry['verdict']).upper()}{reason}"]
    if entry.get("detail"):
        lines.append(f"{INDENT}{entry['detail']}")
    return lines + format_explanation(entry.get("explain"))
