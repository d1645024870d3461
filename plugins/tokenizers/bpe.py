"""Byte-level BPE: a fast trainer and the ``bpe`` tokenizer plugin (tiktoken-compatible).

Training (:func:`train_merges`):

* Texts are pre-split with a regex (GPT-4 pattern by default, in the spelling that splits the same
  under Python ``regex``, tiktoken and Hugging Face; ``gpt2`` and ``none`` = no splitting are the
  other presets) and identical chunks are counted once, weighted by their frequency.
* Merges never cross chunk boundaries. Each merge takes the most frequent adjacent pair.
* **Tie rule**: highest count, then the smallest ``(left_id, right_id)`` in raw token ids, where ids
  0..255 are the byte values and merge ``k`` creates id ``256 + k`` (the rule rustbpe uses).
  ``bpe_reference.train_reference`` is the textbook version; the tests prove both agree.
* Incremental: pair counts and a pair → chunks index are updated only around the places a merge
  touches; a max-heap with lazy deletion picks the next pair (a popped entry whose count went
  stale is pushed back with its current count — counts of existing pairs only ever go down).

The plugin (:class:`BPETokenizer`, registered as ``tokenizers.bpe``) keeps its vocabulary as
tiktoken ranks (``bytes -> id``); special tokens come after the ranks (``<|endoftext|>`` first).
Encoding uses ``tiktoken.Encoding`` built from those ranks (tiktoken's semantics, its Rust speed,
threads for batches); every vocabulary is validated before tiktoken sees it.
On disk: ``bpe.tiktoken`` (tiktoken's rank-file format) + ``tokenizer.json``.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import regex

from framework.core.errors import ConfigError, InputError
from framework.core.registry import TOKENIZERS
from plugins.tokenizers import rankfile, special
from plugins.tokenizers.rankfile import ENDOFTEXT, Ranks

TIE_RULE = "count desc, then (left_id, right_id) asc in raw byte ids"
RANK_FILE = "bpe.tiktoken"
SpecialSet = Literal["all"] | Collection[str]


# -- training ---------------------------------------------------------------------------------------


def _load_core():
    """The compiled core (``_bpe_core.c``, built at ``pip install``) or ``None``; set
    ``DEEPDIVE_BPE_PURE_PYTHON=1`` to force the pure-Python trainer."""
    if os.environ.get("DEEPDIVE_BPE_PURE_PYTHON", "") not in ("", "0"):
        return None, "pure Python (DEEPDIVE_BPE_PURE_PYTHON is set)"
    try:
        from plugins.tokenizers import _bpe_core
    except ImportError as error:
        return None, f"pure Python (C extension unavailable: {error})"
    return _bpe_core, "compiled C core"


_core, ENGINE = _load_core()
Engine = Literal["auto", "c", "python"]
_log = logging.getLogger(__name__)
_logged_engine = False


def _use_core(engine: Engine):
    """The compiled module when ``engine`` allows it (``c`` insists on it)."""
    if engine == "python":
        return None
    if engine == "c" and _core is None:
        raise ConfigError(f"the compiled BPE core is not available: {ENGINE}")
    global _logged_engine
    if not _logged_engine:
        _log.info("BPE trainer: %s", ENGINE)
        _logged_engine = True
    return _core


# Patterns the compiled splitter implements (mode = its matcher); others go through `regex`.
_NATIVE_SPLIT = {rankfile.GPT4_PATTERN: 4, rankfile.GPT2_PATTERN: 2}
_CLASS_RES = (regex.compile(r"\p{L}"), regex.compile(r"\p{N}"), regex.compile(r"\s"))
_CONTRACTION_LETTERS = "sdmtlver"  # codes 1..8 in _bpe_core.c


def _classifier(case_insensitive: bool) -> Callable[[int], int]:
    """Character classes of one code point for the compiled splitter, taken from ``regex`` itself
    (so they are the reference's): bit 0 \\p{L}, bit 1 \\p{N}, bit 2 \\s, bits 4-7 the
    contraction letter it matches (case-insensitively for the GPT-4 pattern)."""
    letters = [regex.compile(f"(?i:{c})" if case_insensitive else c) for c in _CONTRACTION_LETTERS]

    def classify(cp: int) -> int:
        ch = chr(cp)
        value = sum(1 << bit for bit, r in enumerate(_CLASS_RES) if r.fullmatch(ch))
        for code, r in enumerate(letters, start=1):
            if r.fullmatch(ch):
                value |= code << 4
                break
        return value

    return classify


_CLASSIFY = {4: _classifier(True), 2: _classifier(False)}


def count_chunks(
    texts: Iterable[str],
    pattern: str | None,
    counts: Counter[bytes] | None = None,
    engine: Engine = "auto",
) -> Counter[bytes]:
    """Frequency of each pre-split chunk (UTF-8 bytes). ``pattern=None`` keeps each text whole.

    The GPT-4 and GPT-2 patterns are split by the compiled core when it is available (same
    chunks as ``regex``; the tests check it), any other pattern by ``regex.findall``.
    """
    counts = Counter() if counts is None else counts
    core = _use_core(engine) if pattern in _NATIVE_SPLIT else None
    if core is not None:
        mode = _NATIVE_SPLIT[pattern]
        local: dict[str, int] = {}
        core.split_count(texts, mode, _CLASSIFY[mode], local)
        for piece, n in local.items():
            counts[piece.encode("utf-8", errors="surrogatepass")] += n
        return counts
    findall = regex.compile(pattern).findall if pattern else None
    for text in texts:
        if findall is None:
            if text:
                counts[text.encode("utf-8", errors="surrogatepass")] += 1
            continue
        pieces: Counter[str] = Counter(findall(text))
        for piece, n in pieces.items():
            counts[piece.encode("utf-8", errors="surrogatepass")] += n
    return counts


def split_chunks(text: str, pattern: str) -> list[str]:
    """The chunks of ``text`` from the compiled splitter (GPT-4/GPT-2 patterns; for tests)."""
    mode = _NATIVE_SPLIT[pattern]
    if _core is None:
        raise ConfigError(f"the compiled BPE core is not available: {ENGINE}")
    return _core.split(text, mode, _CLASSIFY[mode])


# No chunk of the gpt4 pattern spans a newline followed by a non-space character (its `\s*[\r\n]`
# alternative ends every whitespace run at the newline), so a long text may be cut there without
# changing its chunks. Not so for gpt2: `\s+(?!\S)` takes "  \n" whole at the end of a piece.
_SAFE_CUT = regex.compile(r"(?<=\n)(?=\S)")
_CUTTABLE = {rankfile.GPT4_PATTERN}


def _count_part(args: tuple[list[str], str | None, Engine]) -> Counter[bytes]:
    return count_chunks(args[0], args[1], engine=args[2])


def count_chunks_parallel(
    texts: Sequence[str],
    pattern: str | None,
    workers: int = 2,
    min_bytes: int = 4 << 20,
    engine: Engine = "auto",
) -> Counter[bytes]:
    """:func:`count_chunks` spread over ``workers`` processes (same result; used for big inputs).

    Long texts are cut only where the pattern cannot join across the cut (gpt4 pattern only).
    """
    total = sum(len(t) for t in texts)
    if workers <= 1 or total < min_bytes:
        return count_chunks(texts, pattern, engine=engine)
    target = max(1, total // (workers * 4))
    pieces: list[str] = []
    for text in texts:
        if len(text) <= target or pattern not in _CUTTABLE:
            pieces.append(text)
            continue
        start = 0
        while start < len(text):
            end = min(len(text), start + target)
            if end < len(text):
                match = _SAFE_CUT.search(text, end)
                end = match.start() if match else len(text)
            pieces.append(text[start:end])
            start = end
    parts: list[list[str]] = [[] for _ in range(workers * 4)]
    sizes = [0] * len(parts)
    for piece in sorted(pieces, key=len, reverse=True):
        k = sizes.index(min(sizes))
        parts[k].append(piece)
        sizes[k] += len(piece)
    import multiprocessing

    counts: Counter[bytes] = Counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for part in pool.imap_unordered(_count_part, [(p, pattern, engine) for p in parts if p]):
            counts.update(part)
    return counts


def train_merges(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    progress: Callable[[int], None] | None = None,
    engine: Engine = "auto",
) -> list[tuple[int, int]]:
    """The merges (``k``-th creates id ``256 + k``) for chunk frequencies, from the compiled core
    when it is available (``engine="auto"``), else :func:`train_merges_python` (same merges)."""
    core = _use_core(engine)
    if core is None:
        return train_merges_python(chunk_counts, num_merges, progress)
    counts = chunk_counts if type(chunk_counts) in (dict, Counter) else dict(chunk_counts)
    return core.train(counts, num_merges, progress)


def train_merges_python(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """The merges (``k``-th creates id ``256 + k``) for chunk frequencies; see the module doc.

    ``progress(n)`` is called with the number of merges done since the last call. Stops early when
    no pair is left (every chunk is a single token).
    """
    words: list[list[int]] = []
    freqs: list[int] = []
    for chunk, n in chunk_counts.items():
        if len(chunk) >= 2 and n > 0:
            words.append(list(chunk))
            freqs.append(n)

    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, f) in enumerate(zip(words, freqs, strict=True)):
        for pair in zip(word, word[1:], strict=False):
            pair_counts[pair] += f
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    pending = 0
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current != -neg:  # stale entry: requeue with its (lower) current count
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        created = _apply_merge(pair, new_id, words, freqs, pair_counts, where)
        del pair_counts[pair]
        for new_pair in created:
            count = pair_counts[new_pair]
            if count > 0:
                heapq.heappush(heap, (-count, new_pair))
        pending += 1
        if progress is not None and pending >= 64:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)
    return merges


def _apply_merge(
    pair: tuple[int, int],
    new_id: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: defaultdict[tuple[int, int], int],
    where: defaultdict[tuple[int, int], set[int]],
) -> set[tuple[int, int]]:
    """Replace ``pair`` by ``new_id`` in every chunk that has it; update counts around each change.

    Only the pairs that overlap a replaced occurrence change: in the old chunk the pairs at
    positions ``i-1, i, i+1`` of an occurrence at ``i``; in the new chunk the two pairs around the
    new token. Returns the pairs created (all contain ``new_id``).
    """
    a, b = pair
    created: set[tuple[int, int]] = set()
    for index in where.pop(pair, ()):
        word = words[index]
        n = len(word)
        starts = []
        i = 0
        try:
            while True:
                i = word.index(a, i, n - 1)  # C-speed search for the left token
                if word[i + 1] == b:
                    starts.append(i)
                    i += 2
                else:
                    i += 1
        except ValueError:
            pass
        if not starts:  # the index is lazy: this chunk lost the pair in an earlier merge
            continue
        f = freqs[index]
        if len(starts) == 1:  # the common case, without building a new list
            i = starts[0]
            if i > 0:
                x = word[i - 1]
                pair_counts[(x, a)] -= f
                p = (x, new_id)
                pair_counts[p] += f
                where[p].add(index)
                created.add(p)
            if i + 2 < n:
                y = word[i + 2]
                pair_counts[(b, y)] -= f
                p = (new_id, y)
                pair_counts[p] += f
                where[p].add(index)
                created.add(p)
            word[i : i + 2] = [new_id]  # the merged pair's own count is dropped by the caller
            continue
        last = -1
        for i in starts:
            for j in (i - 1, i, i + 1):
                if j > last and 0 <= j < n - 1:
                    pair_counts[(word[j], word[j + 1])] -= f
                    last = j
        new: list[int] = []
        prev = 0
        for i in starts:
            new.extend(word[prev:i])
            new.append(new_id)
            prev = i + 2
        new.extend(word[prev:])
        m = len(new)
        last = -1
        for t, i in enumerate(starts):
            k = i - t  # where the t-th new token landed
            for j in (k - 1, k):
                if j > last and 0 <= j < m - 1:
                    p = (new[j], new[j + 1])
                    pair_counts[p] += f
                    where[p].add(index)
                    created.add(p)
                    last = j
        words[index] = new
    return created


def ranks_from_merges(merges: Sequence[tuple[int, int]]) -> Ranks:
    """tiktoken ranks: ``{bytes([i]): i}`` then each merge's byte string at ``256 + k``."""
    token_bytes = [bytes([i]) for i in range(256)]
    for left, right in merges:
        token_bytes.append(token_bytes[left] + token_bytes[right])
    ranks = {token: rank for rank, token in enumerate(token_bytes)}
    if len(ranks) != len(token_bytes):
        seen: dict[bytes, int] = {}
        for rank, token in enumerate(token_bytes):
            if token in seen:
                raise ValueError(
                    f"merge {rank - 256} creates {token!r}, which token {seen[token]} already is; "
                    "a tiktoken vocabulary cannot hold the same bytes twice"
                )
            seen[token] = rank
    return ranks


def special_ids(special_tokens: Sequence[str], first_id: int) -> dict[str, int]:
    """Special tokens numbered after the ordinary ones, in the given order."""
    if len(set(special_tokens)) != len(special_tokens):
        raise ConfigError(f"special tokens repeat: {list(special_tokens)}")
    return {name: first_id + i for i, name in enumerate(special_tokens)}


# -- the plugin ------------------------------------------------------------------------------------


@TOKENIZERS.register("bpe")
class BPETokenizer:
    """Byte-level BPE with tiktoken semantics; train it, or load tiktoken / GPT-2 vocabularies.

    Args:
      pattern: split regex or a preset name: ``gpt4`` (default), ``gpt2``, ``none`` (no split),
        ``r50k``, ``cl100k``, ``o200k``.
      special_tokens: names, numbered after the ordinary tokens in this order.
      name: label stored in ``tokenizer.json``.
      num_threads: threads for :meth:`encode_batch`.
    """

    kind = "bpe"
    # what ``load_tokenizer`` may hand this plugin besides a tokenizer directory
    file_patterns = ("*.tiktoken", "*.tiktoken.gz")  # tiktoken rank files
    folder_files = ("encoder.json", "vocab.bpe")  # GPT-2's published vocabulary
    trainer = ENGINE  # which merge trainer runs (recorded in training.json)

    def __init__(
        self,
        pattern: str | None = "gpt4",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        name: str = "bpe",
        num_threads: int = 2,
    ):
        self.pattern_name = pattern if pattern in rankfile.PATTERNS else None
        self.pattern = rankfile.resolve_pattern(pattern)
        rankfile.check_pattern(self.pattern, f"tokenizers.bpe(pattern={pattern!r})")
        self.special_names = list(special_tokens)
        self.name = name
        self.num_threads = num_threads
        self._ranks: Ranks | None = None
        self.special_tokens: dict[str, int] = {}
        self.merges: list[tuple[int, int]] | None = None
        self._encoding = None
        self._token_bytes: list[bytes] | None = None

    # -- building ----------------------------------------------------------------------------------
    def train(
        self,
        texts: Iterable[str],
        vocab_size: int,
        progress: Callable[[int], None] | None = None,
        chunk_counts: Counter[bytes] | None = None,
        engine: Engine = "auto",
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges (special tokens are not counted in ``vocab_size``).

        ``engine``: ``auto`` (the compiled core when built), ``c`` or ``python`` (same merges)."""
        if vocab_size < 256:
            raise ConfigError(f"VOCAB_SIZE must be >= 256 (256 bytes + merges), got {vocab_size}")
        split = None if self.pattern == rankfile.NO_SPLIT_PATTERN else self.pattern
        if chunk_counts is None:
            chunk_counts = count_chunks_parallel(
                list(texts), split, self.num_threads, engine=engine
            )
        merges = train_merges(chunk_counts, vocab_size - 256, progress, engine=engine)
        self.merges = merges
        self._set_vocab(
            ranks_from_merges(merges), special_ids(self.special_names, 256 + len(merges))
        )
        return self

    def _set_vocab(self, ranks: Ranks, special_tokens: Mapping[str, int], where: str = "") -> None:
        rankfile.validate_ranks(ranks, special_tokens, where or f"tokenizers.bpe {self.name!r}")
        self._ranks = dict(ranks)
        self.special_tokens = dict(special_tokens)
        self._encoding = None
        self._token_bytes = None

    @classmethod
    def from_ranks(
        cls,
        ranks: Ranks,
        special_tokens: Mapping[str, int],
        pattern: str,
        name: str = "bpe",
        where: str = "",
    ) -> BPETokenizer:
        tok = cls(pattern=pattern, special_tokens=list(special_tokens), name=name)
        tok._set_vocab(ranks, special_tokens, where)
        return tok

    @classmethod
    def from_tiktoken_file(
        cls,
        path: str | os.PathLike,
        pattern: str | None = None,
        special_tokens: Mapping[str, int] | None = None,
    ) -> BPETokenizer:
        """Any tiktoken rank file (``.tiktoken`` or ``.tiktoken.gz``). OpenAI's r50k/cl100k/o200k
        are recognised by their SHA-256 and get their own pattern and specials; other files get
        the GPT-4 pattern and ``<|endoftext|>`` after the last rank unless told otherwise."""
        ranks, digest = rankfile.read_tiktoken(path)
        known = rankfile.KNOWN_RANK_FILES.get(digest, {})
        name = known.get("name", Path(path).name.split(".")[0])
        pattern = pattern or known.get("pattern", "gpt4")
        if special_tokens is None:
            special_tokens = known.get("special_tokens", {ENDOFTEXT: len(ranks)})
        return cls.from_ranks(ranks, special_tokens, pattern, name=name, where=str(path))

    @classmethod
    def from_gpt2_files(
        cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
    ) -> BPETokenizer:
        """GPT-2's ``encoder.json`` + ``vocab.bpe`` (the ``gpt2`` / ``r50k_base`` vocabulary)."""
        ranks, specials = rankfile.read_gpt2_pair(encoder_json, vocab_bpe)
        return cls.from_ranks(ranks, specials, "r50k", name="gpt2", where=str(encoder_json))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> BPETokenizer:
        """A tiktoken rank file, or a folder with GPT-2's ``encoder.json`` + ``vocab.bpe``."""
        path = Path(path)
        if path.is_dir():
            return cls.from_gpt2_files(path / "encoder.json", path / "vocab.bpe")
        return cls.from_tiktoken_file(path)

    @staticmethod
    def training_steps(vocab_size: int) -> tuple[int, str]:
        """(how many progress units ``train`` reports, their name): one per merge."""
        return max(vocab_size - 256, 0), "merge"

    # -- saving ------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``bpe.tiktoken`` and ``tokenizer.json`` into ``directory``."""
        ranks = self.ranks
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rankfile.write_tiktoken(directory / RANK_FILE, ranks)
        meta = {
            "kind": self.kind,
            "name": self.name,
            "model_file": RANK_FILE,
            "pattern": self.pattern,
            "pattern_name": self.pattern_name,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
            "num_ranks": len(ranks),
            "tie_rule": TIE_RULE,
        }
        (directory / "tokenizer.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BPETokenizer:
        directory = Path(directory)
        meta_path = directory / "tokenizer.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{meta_path}: cannot read tokenizer metadata: {error}") from None
        rank_path = directory / meta.get("model_file", RANK_FILE)
        ranks, _ = rankfile.read_tiktoken(rank_path)
        specials = {str(k): int(v) for k, v in (meta.get("special_tokens") or {}).items()}
        pattern = meta.get("pattern") or rankfile.GPT4_PATTERN
        rankfile.check_pattern(pattern, str(meta_path))
        return cls.from_ranks(
            ranks, specials, pattern, name=meta.get("name", "bpe"), where=str(rank_path)
        )

    # -- vocabulary --------------------------------------------------------------------------------
    @property
    def ranks(self) -> Ranks:
        if self._ranks is None:
            raise ConfigError(
                f"tokenizers.bpe {self.name!r} has no vocabulary yet: train() or load() it first"
            )
        return self._ranks

    @property
    def vocab_size(self) -> int:
        """Size of the id space: largest id + 1, specials included (tiktoken's ``n_vocab``; equal
        to the number of tokens unless the specials leave gaps, as cl100k_base's do)."""
        return max([len(self.ranks) - 1, *self.special_tokens.values()]) + 1

    def add_special_tokens(self, names: Sequence[str]) -> dict[str, int]:
        """Add special tokens to the vocabulary without retraining: each new one gets the next
        id after the current ones (existing ids and merges are unchanged). Returns the ids of
        ``names``."""
        for name in special.names_to_add(self.special_tokens, names):
            self._set_vocab(self.ranks, {**self.special_tokens, name: self.vocab_size})
            self.special_names.append(name)
        return {name: self.special_tokens[name] for name in names}

    @property
    def eot_id(self) -> int:
        if ENDOFTEXT not in self.special_tokens:
            raise ConfigError(f"tokenizer {self.name!r} has no {ENDOFTEXT} special token")
        return self.special_tokens[ENDOFTEXT]

    @property
    def token_bytes(self) -> list[bytes | None]:
        """Bytes of every id (specials as their UTF-8 names; ``None`` for unused ids)."""
        if self._token_bytes is None:
            table: list[bytes | None] = [None] * self.vocab_size
            for token, rank in self.ranks.items():
                table[rank] = token
            for name, sid in self.special_tokens.items():
                table[sid] = name.encode()
            self._token_bytes = table
        return self._token_bytes

    @property
    def encoding(self):
        """The ``tiktoken.Encoding`` built from this vocabulary (validated first)."""
        if self._encoding is None:
            import tiktoken

            self._encoding = tiktoken.Encoding(
                name=f"deepdive-{self.name}",
                pat_str=self.pattern,
                mergeable_ranks=self.ranks,
                special_tokens=self.special_tokens,
            )
        return self._encoding

    # -- encoding ----------------------------------------------------------------------------------
    def encode(
        self,
        text: str,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> list[int]:
        """tiktoken's semantics: a disallowed special token in the text raises ValueError."""
        return self.encoding.encode(
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )

    def encode_ordinary(self, text: str) -> list[int]:
        """Special-token names in ``text`` are ordinary text."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
        num_threads: int | None = None,
    ) -> list[list[int]]:
        threads = num_threads or self.num_threads
        if threads <= 1:  # no thread pool for one thread
            encode = self.encoding.encode
            return [
                encode(t, allowed_special=allowed_special, disallowed_special=disallowed_special)
                for t in texts
            ]
        return self.encoding.encode_batch(
            list(texts),
            num_threads=threads,
            allowed_special=allowed_special,
            disallowed_special=disallowed_special,
        )

    def encode_ordinary_batch(
        self, texts: Sequence[str], num_threads: int | None = None
    ) -> list[list[int]]:
        threads = num_threads or self.num_threads
        if threads <= 1:  # no thread pool for one thread
            encode = self.encoding.encode_ordinary
            return [encode(text) for text in texts]
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=threads)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self.token_bytes
        ids = list(ids)
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            for i in ids:
                if not isinstance(i, int) or not 0 <= i < len(table) or table[i] is None:
                    raise ValueError(
                        f"token id {i!r} is not in this vocabulary (0..{len(table) - 1})"
                    ) from None
            raise

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Bytes of the ids as UTF-8; ``errors`` as in ``bytes.decode`` (``replace``, ``strict``,
        ``surrogateescape``, ``backslashreplace`` ...)."""
        return self.decode_bytes(list(ids)).decode("utf-8", errors=errors)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "pattern": self.pattern_name or self.pattern,
        }
