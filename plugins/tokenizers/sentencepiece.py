"""The ``sentencepiece`` tokenizer plugin: train (BPE or unigram) and load through the library.

Settings are chosen so text round-trips exactly (SentencePiece's defaults do not): no
normalization (``identity``, no NFKC), whitespace kept as it is (``remove_extra_whitespaces=False``,
no dummy ``▁`` prefix), and ``byte_fallback`` so characters outside the vocabulary become their
UTF-8 bytes instead of ``<unk>``. Two more details keep it exact:

* SentencePiece writes spaces as ``▁`` (U+2581), so a literal ``▁`` in the text would come back
  as a space. Literal ``▁`` characters are therefore encoded as their three byte pieces.
* Decoding is done here from a piece → bytes table (byte pieces ``<0xNN>`` are raw bytes), so
  ``decode_bytes`` exists and invalid UTF-8 obeys ``errors=``.

Training feeds the texts line by line (SentencePiece learns nothing across sentence boundaries;
newlines are byte pieces). ``vocab_size`` here is SentencePiece's piece count: 256 byte pieces,
``<unk>``, the special tokens (control symbols) and the learned pieces.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError, InputError
from framework.core.registry import TOKENIZERS
from plugins.tokenizers import special
from plugins.tokenizers.rankfile import ENDOFTEXT

MODEL_FILE = "spm.model"
SPACE = "\u2581"
SPACE_BYTES = SPACE.encode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _control_piece(name: str) -> bytes:
    """A ``ModelProto.pieces`` entry (field 1) for a CONTROL piece, serialized: appending it to a
    serialized model appends the piece (protobuf concatenates repeated fields in order), which
    spares a dependency on sentencepiece's generated protobuf module."""
    text = name.encode("utf-8")
    piece = b"\x0a" + _varint(len(text)) + text  # piece: string (field 1)
    piece += b"\x15" + struct.pack("<f", 0.0)  # score: float (field 2)
    piece += b"\x18" + _varint(3)  # type: CONTROL (field 3)
    return b"\x0a" + _varint(len(piece)) + piece


@TOKENIZERS.register("sentencepiece")
class SentencePieceTokenizer:
    """SentencePiece (``model_type`` ``bpe`` or ``unigram``) with lossless settings.

    Args:
      model_type: ``bpe`` or ``unigram``.
      special_tokens: control symbols; never produced from text unless allowed at encode time.
      character_coverage: share of characters kept as pieces (the rest fall back to bytes).
      byte_fallback: unknown characters as UTF-8 byte pieces (needed for lossless text).
      input_sentence_size: sample at most this many lines for training (0 = all).
      num_threads: training and batch-encoding threads.
    """

    kind = "sentencepiece"
    file_patterns = ("*.model",)  # a SentencePiece model proto, as sentencepiece writes it

    def __init__(
        self,
        model_type: str = "bpe",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        character_coverage: float = 0.9995,
        byte_fallback: bool = True,
        split_digits: bool = True,
        input_sentence_size: int = 0,
        max_sentence_length: int = 1 << 16,
        num_threads: int = 2,
        name: str = "sentencepiece",
    ):
        if model_type not in ("bpe", "unigram"):
            raise ConfigError(
                f"tokenizers.sentencepiece.model_type: expected 'bpe' or 'unigram', got {model_type!r}"
            )
        self.model_type = model_type
        self.special_names = list(special_tokens)
        self.character_coverage = character_coverage
        self.byte_fallback = byte_fallback
        self.split_digits = split_digits
        self.input_sentence_size = input_sentence_size
        self.max_sentence_length = max_sentence_length
        self.num_threads = num_threads
        self.name = name
        self._proto: bytes | None = None
        self._sp = None
        self._table: list[bytes] | None = None
        self.special_tokens: dict[str, int] = {}

    # -- training and files ----------------------------------------------------------------------
    def train(self, texts: Iterable[str], vocab_size: int, **_: Any) -> SentencePieceTokenizer:
        import sentencepiece as spm

        def lines() -> Iterator[str]:
            for text in texts:
                for line in text.split("\n"):
                    if line:
                        yield line[: self.max_sentence_length]

        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=lines(),
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=self.model_type,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                allow_whitespace_only_pieces=True,
                byte_fallback=self.byte_fallback,
                split_digits=self.split_digits,
                character_coverage=self.character_coverage,
                input_sentence_size=self.input_sentence_size,
                shuffle_input_sentence=True,
                max_sentence_length=self.max_sentence_length,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                control_symbols=self.special_names,
                hard_vocab_limit=False,
                num_threads=self.num_threads,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise ConfigError(f"sentencepiece training failed: {error}") from None
        self._set_model(writer.getvalue(), "sentencepiece training")
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        """A SentencePiece ``*.model`` file (its control symbols become the special tokens)."""
        tok = cls()
        tok._set_model(Path(path).read_bytes(), str(path))
        return tok

    def _set_model(self, proto: bytes, where: str) -> None:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        try:
            sp.load_from_serialized_proto(proto)
        except (RuntimeError, OSError) as error:
            raise InputError(f"{where}: not a SentencePiece model: {error}") from None
        self._proto, self._sp, self._table = proto, sp, None
        self.special_tokens = {}
        for i in range(sp.get_piece_size()):
            if sp.is_control(i):
                self.special_tokens[sp.id_to_piece(i)] = i
        self.special_names = list(self.special_tokens)

    def add_special_tokens(self, names: Sequence[str]) -> dict[str, int]:
        """Add special tokens as control symbols appended to the model's pieces (ids
        ``vocab_size``, ...), without retraining: SentencePiece never produces a control symbol
        from text, and every existing piece keeps its id. Returns the ids of ``names``."""
        added = special.names_to_add(self.special_tokens, names)
        if added:
            taken = [n for n in added if self.processor.piece_to_id(n) != self.processor.unk_id()]
            if taken:
                raise ConfigError(
                    f"tokenizer {self.name!r}: {', '.join(taken)} already ordinary pieces; "
                    "they cannot become special tokens"
                )
            self._set_model(self._model_proto() + b"".join(map(_control_piece, added)), self.name)
        return {name: self.special_tokens[name] for name in names}

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_bytes(self._model_proto())
        meta = {
            "kind": self.kind,
            "name": self.name,
            "model_file": MODEL_FILE,
            "model_type": self.model_type,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
        }
        (directory / "tokenizer.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SentencePieceTokenizer:
        directory = Path(directory)
        meta: dict[str, Any] = {}
        meta_path = directory / "tokenizer.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as error:
                raise InputError(f"{meta_path}: not JSON: {error}") from None
        path = directory / meta.get("model_file", MODEL_FILE)
        try:
            proto = path.read_bytes()
        except OSError as error:
            raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
        tok = cls(model_type=meta.get("model_type", "bpe"), name=meta.get("name", "sentencepiece"))
        tok._set_model(proto, str(path))
        return tok

    def _model_proto(self) -> bytes:
        if self._proto is None:
            raise ConfigError(
                "tokenizers.sentencepiece has no model yet: train() or load() it first"
            )
        return self._proto

    @property
    def processor(self):
        self._model_proto()
        return self._sp

    # -- vocabulary ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    @property
    def eot_id(self) -> int:
        if ENDOFTEXT not in self.special_tokens:
            raise ConfigError(f"tokenizer {self.name!r} has no {ENDOFTEXT} special token")
        return self.special_tokens[ENDOFTEXT]

    @property
    def token_bytes(self) -> list[bytes]:
        """Bytes of each id: byte pieces are their byte, ``▁`` is a space, controls their name."""
        if self._table is None:
            sp = self.processor
            table = []
            for i in range(sp.get_piece_size()):
                piece = sp.id_to_piece(i)
                if sp.is_byte(i):
                    table.append(bytes([int(piece[1:-1], 16)]))
                elif sp.is_control(i):
                    table.append(piece.encode())
                elif sp.is_unknown(i):
                    table.append("\ufffd".encode())
                else:
                    table.append(piece.replace(SPACE, " ").encode())
            self._table = table
        return self._table

    # -- encoding --------------------------------------------------------------------------------
    def _encode_text(self, text: str) -> list[int]:
        sp = self.processor
        if SPACE not in text:
            return sp.encode(text) if text else []
        space_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_BYTES]
        out: list[int] = []
        for i, part in enumerate(text.split(SPACE)):
            if i:
                out += space_ids
            if part:
                out += sp.encode(part)
        return out

    def encode(
        self,
        text: str,
        allowed_special: special.SpecialSet = frozenset(),
        disallowed_special: special.SpecialSet = "all",
    ) -> list[int]:
        return special.encode(
            text, self.special_tokens, self._encode_text, allowed_special, disallowed_special
        )

    def encode_ordinary(self, text: str) -> list[int]:
        return self._encode_text(text)

    def encode_batch(self, texts: Sequence[str], **kwargs: Any) -> list[list[int]]:
        return [self.encode(t, **kwargs) for t in texts]

    def encode_ordinary_batch(self, texts: Sequence[str], **_: Any) -> list[list[int]]:
        if not any(SPACE in t for t in texts):
            return self.processor.encode(list(texts), num_threads=self.num_threads)
        return [self._encode_text(t) for t in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self.token_bytes
        ids = list(ids)
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join(table[i] for i in ids)
        except (IndexError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or not 0 <= i < len(table))
            raise ValueError(f"token id {bad!r} is outside 0..{len(table) - 1}") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors=errors)
