"""The ``bytes`` tokenizer: ids 0..255 are the UTF-8 bytes, special tokens follow (``<|endoftext|>`` = 256).

Used for character-level baselines: no training, no vocabulary file, nothing to get wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError, InputError
from framework.core.registry import TOKENIZERS
from plugins.tokenizers import special
from plugins.tokenizers.rankfile import ENDOFTEXT


@TOKENIZERS.register("bytes")
class ByteTokenizer:
    """256 byte ids plus special tokens numbered from 256 in the given order."""

    kind = "bytes"

    def __init__(self, special_tokens: Sequence[str] = (ENDOFTEXT,), name: str = "bytes"):
        if len(set(special_tokens)) != len(special_tokens):
            raise ConfigError(f"tokenizers.bytes: special tokens repeat: {list(special_tokens)}")
        self.name = name
        self.special_tokens = {s: 256 + i for i, s in enumerate(special_tokens)}
        self._names = {i: s for s, i in self.special_tokens.items()}

    def train(self, texts: Iterable[str], vocab_size: int | None = None, **_: Any) -> ByteTokenizer:
        """Nothing to learn (kept so every plugin trains the same way)."""
        return self

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def add_special_tokens(self, names: Sequence[str]) -> dict[str, int]:
        """Add special tokens after the current ones (ids ``vocab_size``, ...); returns the ids
        of ``names``."""
        for name in special.names_to_add(self.special_tokens, names):
            self.special_tokens[name] = self.vocab_size
            self._names[self.special_tokens[name]] = name
        return {name: self.special_tokens[name] for name in names}

    @property
    def eot_id(self) -> int:
        if ENDOFTEXT not in self.special_tokens:
            raise ConfigError(f"tokenizer {self.name!r} has no {ENDOFTEXT} special token")
        return self.special_tokens[ENDOFTEXT]

    def encode(
        self,
        text: str,
        allowed_special: special.SpecialSet = frozenset(),
        disallowed_special: special.SpecialSet = "all",
    ) -> list[int]:
        return special.encode(
            text, self.special_tokens, self.encode_ordinary, allowed_special, disallowed_special
        )

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8", errors="surrogatepass"))

    def encode_batch(self, texts: Sequence[str], **kwargs: Any) -> list[list[int]]:
        return [self.encode(t, **kwargs) for t in texts]

    def encode_ordinary_batch(self, texts: Sequence[str], **_: Any) -> list[list[int]]:
        return [self.encode_ordinary(t) for t in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        out = bytearray()
        for i in ids:
            if 0 <= i < 256:
                out.append(i)
            elif i in self._names:
                out += self._names[i].encode()
            else:
                raise ValueError(f"token id {i!r} is outside 0..{self.vocab_size - 1}")
        return bytes(out)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    @property
    def token_bytes(self) -> list[bytes]:
        specials = sorted(self.special_tokens, key=self.special_tokens.get)
        return [bytes([i]) for i in range(256)] + [s.encode() for s in specials]

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "name": self.name,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
        }
        (directory / "tokenizer.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ByteTokenizer:
        path = Path(directory) / "tokenizer.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: cannot read tokenizer metadata: {error}") from None
        specials = meta.get("special_tokens") or {}
        ordered = sorted(specials, key=lambda s: specials[s])
        if [specials[s] for s in ordered] != list(range(256, 256 + len(ordered))):
            raise InputError(f"{path}: bytes special tokens must be numbered 256, 257, ...")
        return cls(special_tokens=ordered, name=meta.get("name", "bytes"))
