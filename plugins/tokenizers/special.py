"""Special-token handling with tiktoken's semantics, for tokenizers that do not use tiktoken.

``allowed_special``: the specials that, when they appear in the text, become their own id
(``"all"`` or a set). ``disallowed_special``: specials whose appearance is an error (``"all"``
means every special that is not allowed). Specials that are neither stay ordinary text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Literal

import regex

from framework.core.errors import ConfigError

SpecialSet = Literal["all"] | Collection[str]


def resolve(
    specials: Mapping[str, int], allowed_special: SpecialSet, disallowed_special: SpecialSet
) -> tuple[set[str], set[str]]:
    """The (allowed, disallowed) sets, after expanding ``"all"``."""
    allowed = set(specials) if allowed_special == "all" else set(allowed_special)
    if disallowed_special == "all":
        disallowed = set(specials) - allowed
    else:
        disallowed = set(disallowed_special)
    return allowed, disallowed


def check_disallowed(text: str, disallowed: set[str]) -> None:
    """Raise ValueError (as tiktoken does) when ``text`` contains a disallowed special token."""
    if not disallowed:
        return
    match = regex.search("|".join(regex.escape(s) for s in sorted(disallowed)), text)
    if match:
        raise ValueError(
            f"text contains the special token {match.group()!r}, which is disallowed: pass "
            f"allowed_special={{{match.group()!r}}} (or 'all') to encode it as a special token, or "
            "disallowed_special=() to encode it as ordinary text"
        )


def split_on_specials(text: str, allowed: set[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_special) parts on the allowed specials (longest match first)."""
    if not allowed or not text:
        return [(text, False)] if text else []
    alternatives = sorted(allowed, key=lambda s: (-len(s), s))
    pattern = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(pattern.split(text)):
        if piece:
            parts.append((piece, i % 2 == 1))
    return parts


def encode(
    text: str,
    specials: Mapping[str, int],
    encode_ordinary: Callable[[str], list[int]],
    allowed_special: SpecialSet = frozenset(),
    disallowed_special: SpecialSet = "all",
) -> list[int]:
    """tiktoken's ``encode``: allowed specials become their ids, the rest of the text goes through
    ``encode_ordinary``; a disallowed special in the text is an error."""
    allowed, disallowed = resolve(specials, allowed_special, disallowed_special)
    check_disallowed(text, disallowed)
    out: list[int] = []
    for piece, is_special in split_on_specials(text, allowed):
        out += [specials[piece]] if is_special else encode_ordinary(piece)
    return out


def names_to_add(existing: Mapping[str, int], names: Sequence[str]) -> list[str]:
    """The names of ``names`` not yet special tokens, in order (ConfigError for an empty or
    repeated name): adding special tokens is idempotent, so a rerun changes nothing."""
    if len(set(names)) != len(names):
        raise ConfigError(f"special tokens repeat: {list(names)}")
    if any(not isinstance(n, str) or not n for n in names):
        raise ConfigError(f"special token names must be non-empty strings: {list(names)}")
    return [n for n in names if n not in existing]
