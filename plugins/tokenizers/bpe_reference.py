"""The textbook byte-level BPE trainer: short, slow and obviously right.

It exists to check the fast trainer in ``bpe.py``: both must produce the same merges, in the same
order, for every input. Algorithm (Sennrich et al. 2016, on bytes as in GPT-2):

1. Split each text into chunks with the pre-tokenizer regex; count identical chunks once, with
   their frequency as a weight.
2. Start every chunk as its UTF-8 bytes (ids 0..255).
3. Repeat ``vocab_size - 256`` times: count every adjacent pair in every chunk (weighted by the
   chunk's frequency), take the most frequent pair — ties go to the smallest ``(left_id, right_id)``
   — mint the next id for it and replace its occurrences, left to right, in every chunk.

Every step recounts everything, so this is O(merges × corpus); use it on small inputs only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import regex


def count_chunks(texts: Iterable[str], pattern: str | None) -> Counter[bytes]:
    """Frequency of each pre-tokenized chunk (as UTF-8 bytes); ``pattern=None`` = no splitting."""
    counts: Counter[bytes] = Counter()
    compiled = regex.compile(pattern) if pattern else None
    for text in texts:
        pieces = compiled.findall(text) if compiled else [text]
        counts.update(piece.encode("utf-8") for piece in pieces if piece)
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (scanning left to right) by ``new_id``."""
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_reference(
    texts: Iterable[str], vocab_size: int, pattern: str | None
) -> list[tuple[int, int]]:
    """The merges, in order: merge ``k`` creates id ``256 + k``. Stops early when no pair is left."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256, got {vocab_size}")
    chunks = [(list(chunk), n) for chunk, n in count_chunks(texts, pattern).items()]
    merges: list[tuple[int, int]] = []
    for new_id in range(256, vocab_size):
        pair_counts: Counter[tuple[int, int]] = Counter()
        for ids, n in chunks:
            for pair in zip(ids, ids[1:], strict=False):
                pair_counts[pair] += n
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        merges.append(best)
        chunks = [(merge_pair(ids, best, new_id), n) for ids, n in chunks]
    return merges


def encode_reference(text: str, merges: list[tuple[int, int]], pattern: str | None) -> list[int]:
    """Encode by applying the learned merges in creation order inside each chunk (minbpe style)."""
    rank = {pair: 256 + k for k, pair in enumerate(merges)}
    pieces = regex.findall(pattern, text) if pattern else [text]
    out: list[int] = []
    for piece in pieces:
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:], strict=False), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            ids = merge_pair(ids, pair, rank[pair])
        out += ids
    return out
