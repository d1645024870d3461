"""Reading and writing byte-level BPE vocabularies: tiktoken rank files and GPT-2's file pair.

A tiktoken rank file has one ``<base64 token bytes> <rank>`` per line; the rank is the token id
and, for merged tokens, the merge priority. tiktoken itself validates little (a missing single
byte panics inside its Rust extension, a rank gap breaks decoding, a special id equal to a rank is
silently accepted), so :func:`validate_ranks` checks all of that here and raises
:class:`~framework.errors.InputError` naming the file and the problem.

GPT-2 ships ``encoder.json`` (token string → id, tokens written in GPT-2's printable byte
alphabet) and ``vocab.bpe`` (the merges in order). :func:`read_gpt2_pair` rebuilds the byte ranks
from them (the same ranks as ``r50k_base.tiktoken``) and checks them against ``encoder.json``.

Neither path touches the network or tiktoken's download cache.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import regex

from framework.core.errors import InputError

Ranks = dict[bytes, int]

# Patterns. GPT4 is the spelling that splits identically under Python `regex`, tiktoken and
# Hugging Face (the one minbpe and rustbpe use); CL100K is tiktoken's current, faster spelling
# (used only to reproduce the real cl100k_base ids). See shared/reference/tokenizers.md §4.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
R50K_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s+"""
)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# No pre-splitting: the whole text is one chunk (tiktoken needs a pattern; this one matches all).
NO_SPLIT_PATTERN = r"""[\s\S]+"""

PATTERNS = {
    "gpt4": GPT4_PATTERN,
    "gpt2": GPT2_PATTERN,
    "none": NO_SPLIT_PATTERN,
    "r50k": R50K_PATTERN,
    "cl100k": CL100K_PATTERN,
    "o200k": O200K_PATTERN,
}

ENDOFTEXT = "<|endoftext|>"

# Known OpenAI rank files, by the SHA-256 of their (uncompressed) content: the name, the split
# pattern and the special tokens tiktoken uses with them.
KNOWN_RANK_FILES: dict[str, dict] = {
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930": {
        "name": "r50k_base",
        "pattern": R50K_PATTERN,
        "special_tokens": {ENDOFTEXT: 50256},
    },
    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7": {
        "name": "cl100k_base",
        "pattern": CL100K_PATTERN,
        "special_tokens": {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d": {
        "name": "o200k_base",
        "pattern": O200K_PATTERN,
        "special_tokens": {ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
    },
}


def resolve_pattern(pattern: str | None) -> str:
    """A pattern name (``gpt4``, ``gpt2``, ``none``, ``r50k``, ``cl100k``, ``o200k``) or a regex."""
    if pattern is None:
        return NO_SPLIT_PATTERN
    return PATTERNS.get(pattern, pattern)


def check_pattern(pattern: str, where: str) -> None:
    try:
        regex.compile(pattern)
    except regex.error as error:
        raise InputError(f"{where}: split pattern does not compile: {error}") from None


def read_bytes_maybe_gz(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise InputError(f"{path}: broken gzip data: {error}") from None
    return data


def parse_tiktoken(data: bytes, where: str) -> Ranks:
    """Parse rank-file content (``base64 rank`` per line) and validate it."""
    ranks: Ranks = {}
    seen_ranks: dict[int, int] = {}
    for line_no, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        fields = raw.split()
        if len(fields) != 2:
            raise InputError(
                f"{where}:{line_no}: expected '<base64 token> <rank>', got {raw[:60]!r}"
            )
        try:
            token = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}:{line_no}: token {fields[0][:40]!r} is not base64") from None
        try:
            rank = int(fields[1])
        except ValueError:
            raise InputError(
                f"{where}:{line_no}: rank {fields[1][:20]!r} is not an integer"
            ) from None
        if token in ranks:
            raise InputError(
                f"{where}:{line_no}: token {token!r} appears twice (ranks {ranks[token]} and {rank})"
            )
        if rank in seen_ranks:
            raise InputError(f"{where}:{line_no}: rank {rank} also used on line {seen_ranks[rank]}")
        ranks[token] = rank
        seen_ranks[rank] = line_no
    validate_ranks(ranks, {}, where)
    return ranks


def validate_ranks(
    ranks: Mapping[bytes, int], special_tokens: Mapping[str, int], where: str
) -> None:
    """Checks tiktoken leaves out: every byte present, dense ranks, specials after the ranks."""
    if not ranks:
        raise InputError(f"{where}: no tokens")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        shown = ", ".join(f"0x{b:02x}" for b in missing[:8])
        raise InputError(
            f"{where}: {len(missing)} single bytes have no token ({shown}{'...' if len(missing) > 8 else ''}); "
            "a byte-level vocabulary needs all 256"
        )
    values = sorted(ranks.values())
    if values[0] != 0 or values[-1] != len(values) - 1 or len(set(values)) != len(values):
        gap = next((i for i, v in enumerate(values) if v != i), len(values))
        raise InputError(
            f"{where}: ranks must be 0..{len(values) - 1} without gaps; rank {gap} is missing"
        )
    n = len(values)
    seen: dict[int, str] = {}
    for name, sid in special_tokens.items():
        if not name:
            raise InputError(f"{where}: empty special token name")
        if not isinstance(sid, int) or sid < n:
            raise InputError(
                f"{where}: special token {name!r} has id {sid}, which collides with the "
                f"{n} ordinary tokens (special ids must be >= {n})"
            )
        if sid in seen:
            raise InputError(f"{where}: special tokens {seen[sid]!r} and {name!r} share id {sid}")
        seen[sid] = name


def read_tiktoken(path: str | os.PathLike) -> tuple[Ranks, str]:
    """(ranks, sha256 of the uncompressed content) of a ``.tiktoken`` or ``.tiktoken.gz`` file."""
    data = read_bytes_maybe_gz(path)
    return parse_tiktoken(data, str(path)), hashlib.sha256(data).hexdigest()


def format_tiktoken(ranks: Mapping[bytes, int]) -> bytes:
    """Rank-file content, ordered by rank (byte-identical to tiktoken's own files)."""
    lines = [
        base64.b64encode(token) + b" " + str(rank).encode()
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
    ]
    return b"\n".join(lines) + b"\n"


def write_tiktoken(path: str | os.PathLike, ranks: Mapping[bytes, int]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(format_tiktoken(ranks))
    os.replace(tmp, path)


# -- GPT-2's encoder.json + vocab.bpe -------------------------------------------------------------


def gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → printable character map: printable Latin-1 bytes map to themselves, the rest
    (controls, space, NBSP, soft hyphen, ...) to U+0100 onwards in byte order."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def read_gpt2_pair(
    encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
) -> tuple[Ranks, dict[str, int]]:
    """(ranks, special tokens) from GPT-2's files; ranks are checked against ``encoder.json``."""
    alphabet = gpt2_byte_alphabet()
    to_byte = {ch: b for b, ch in alphabet.items()}

    def decode(token: str, where: str) -> bytes:
        try:
            return bytes(to_byte[ch] for ch in token)
        except KeyError as error:
            raise InputError(
                f"{where}: {token!r} has a character outside GPT-2's byte alphabet: {error}"
            ) from None

    # Base ranks: printable bytes first, then the rest (the order of GPT-2's alphabet).
    order = sorted(range(256), key=lambda b: ord(alphabet[b]))
    ranks: Ranks = {bytes([b]): i for i, b in enumerate(order)}
    text = read_bytes_maybe_gz(vocab_bpe).decode("utf-8", errors="strict")
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise InputError(f"{vocab_bpe}:{line_no}: expected two tokens, got {line[:60]!r}")
        merged = decode(parts[0], f"{vocab_bpe}:{line_no}") + decode(
            parts[1], f"{vocab_bpe}:{line_no}"
        )
        if merged in ranks:
            raise InputError(f"{vocab_bpe}:{line_no}: merge result {merged!r} already exists")
        ranks[merged] = len(ranks)
    try:
        encoder = json.loads(read_bytes_maybe_gz(encoder_json))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{encoder_json}: not JSON: {error}") from None
    if not isinstance(encoder, dict):
        raise InputError(f"{encoder_json}: expected a JSON object of token -> id")
    special: dict[str, int] = {}
    for token, tid in encoder.items():
        if token.startswith("<|") and token.endswith("|>"):
            special[token] = tid
            continue
        got = ranks.get(decode(token, str(encoder_json)))
        if got != tid:
            raise InputError(
                f"{encoder_json}: token {token!r} has id {tid} but vocab.bpe gives rank {got}"
            )
    if len(encoder) - len(special) != len(ranks):
        raise InputError(
            f"{encoder_json}: {len(encoder) - len(special)} tokens, but vocab.bpe defines {len(ranks)}"
        )
    validate_ranks(ranks, special, f"{encoder_json} + {vocab_bpe}")
    return ranks, special
