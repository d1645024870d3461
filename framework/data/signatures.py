"""MinHash signatures as FineWeb computes them (datatrove ``MinhashDedupSignature``, sha1 variant).

Every step is chosen to give the reference's numbers bit for bit:

1. ``simplify_text``: lower-case → runs of digits (any script, with one optional decimal part)
   become ``"0"`` → every character of the reference's punctuation set becomes a space →
   whitespace runs collapse to one space → NFD and combining marks (category ``Mn``) dropped.
2. Words: spaCy's blank English tokenizer over the simplified text, each token stripped, empty
   tokens dropped.
3. Shingles: word n-grams (n = 5) joined by one space, hashed as the first 8 bytes of
   ``sha1(utf8)`` read little-endian (or ``xxh64``; 32-bit precision takes 4 bytes / ``xxh32``).
4. 112 universal hash permutations ``(h * a + b) mod (2**61 - 1)`` whose ``a`` and ``b`` come from
   ``np.random.RandomState(seed)``; the product and the sum wrap modulo 2**64 first, exactly as
   numpy's uint64 arithmetic does in the reference. The signature is the column-wise minimum,
   split into 14 bands of 8 hashes.

Documents with fewer than n words have no shingles and therefore no signature.

Speed (the reference spends its time in per-document spaCy calls and per-hash Python work):
words are tokenized once per distinct whitespace-separated word and cached (spaCy's tokenizer
never looks across a space, so this is the same split), and the permutations of a whole batch
of documents are one vectorised numpy computation reduced per document with ``minimum.reduceat``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import regex

from framework.data import text as textlib

MERSENNE_PRIME = (1 << 61) - 1

# --- text normalisation -------------------------------------------------------------------

# The reference's punctuation set: the one the quality filters use (framework/data/text.py).
PUNCTUATION = frozenset(textlib.PUNCTUATION)
# A character class substitutes several times faster than ``str.translate`` with a dict on
# non-ASCII text (which looks every character up in the dict); same result.
_PUNCT_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(PUNCTUATION)) + "]")
_NUMBER = regex.compile(r"\p{Nd}+(?:[.,،٫⎖⎗⎘]\p{Nd}+)?")
_WHITESPACE = re.compile(r"\s+")


def simplify_text(text: str) -> str:
    """FineWeb's MinHash text normalisation (datatrove ``simplify_text`` with default settings).

    >>> simplify_text("Héllo, WORLD! 3,5 units -- 1.000.000 x 12th")
    'hello world 0 units 0 0 x 0th'
    """
    text = _NUMBER.sub("0", text.lower())
    text = _PUNCT_RE.sub(" ", text)
    text = _WHITESPACE.sub(" ", text.strip())
    if not text.isascii():  # NFD and mark removal change nothing in ASCII text
        text = unicodedata.normalize("NFD", text).translate(_nonspacing_marks())
    return text.strip()


@lru_cache(maxsize=1)
def _nonspacing_marks() -> dict[int, None]:
    """Translation table deleting every code point of category Mn (Python's Unicode tables,
    as the reference uses ``unicodedata.category``). A table, not a regex class: with its
    ~2,000 ranges the class was several times slower here."""
    return {c: None for c in range(0x110000) if unicodedata.category(chr(c)) == "Mn"}


# --- words ---------------------------------------------------------------------------------


class WordSplitter:
    """spaCy ``blank("en")`` word tokens of simplified text, cached per whitespace-separated word.

    spaCy's tokenizer first cuts at whitespace and then splits each piece on its own (prefixes,
    suffixes, infixes, special cases such as "cannot" → "can", "not"), so the tokens of a text are
    the concatenation of the tokens of its space-separated words. Each distinct word goes through
    spaCy once (a batch of new words is one tokenizer call); the cache is emptied when it grows
    past ``max_cache`` entries so memory stays bounded.

    Shortcut: an ASCII-letters-only word that is not one of the tokenizer's special cases is one
    token (no English prefix, suffix or infix pattern matches letters alone; units such as "km"
    only split after a digit). Most words of simplified text are such words, so spaCy sees only
    the rest. ``tests/dedup`` checks the shortcut against spaCy over a real vocabulary.
    """

    def __init__(self, max_cache: int = 2_000_000):
        self.max_cache = max_cache
        self._cache: dict[str, tuple[str, ...]] = {}
        self._nlp = None
        self._tokenizer = None
        self._special: frozenset[str] = frozenset()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            spacy = textlib.import_spacy()
            self._nlp = spacy.blank("en")
            self._tokenizer = self._nlp.tokenizer
            self._special = frozenset(self._tokenizer.rules)
        return self._tokenizer

    def _learn(self, words: Sequence[str]) -> None:
        """Tokenize distinct unseen words in one spaCy call and cache their tokens."""
        joined = " ".join(words)
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
        pieces: list[list[str]] = [[] for _ in words]
        tokenizer = self.tokenizer
        with self._nlp.memory_zone():  # spaCy forgets the new strings afterwards: bounded memory
            doc = tokenizer(joined)
            token_starts = np.fromiter((t.idx for t in doc), dtype=np.int64, count=len(doc))
            owners = np.searchsorted(starts, token_starts, side="right") - 1
            for token, owner in zip(doc, owners.tolist(), strict=True):
                text = token.text.strip()
                if text:
                    pieces[owner].append(text)
        for word, piece in zip(words, pieces, strict=True):
            self._cache[word] = tuple(piece)

    def split_many(self, simplified: Sequence[str]) -> list[list[str]]:
        """Word tokens of each (already simplified) text."""
        if len(self._cache) > self.max_cache:
            self._cache.clear()
        cache = self._cache
        split = [text.split(" ") if text else [] for text in simplified]
        unseen = {w for words in split for w in words if w not in cache}
        if unseen:
            self.tokenizer  # noqa: B018 - loads spaCy and its special cases once
            special = self._special
            hard = []
            for w in unseen:
                if w.isascii() and w.isalpha() and w not in special:
                    cache[w] = (w,)
                else:
                    hard.append(w)
            if hard:
                self._learn(sorted(hard))
        out = []
        for words in split:
            tokens: list[str] = []
            for w in words:
                tokens.extend(cache[w])
            out.append(tokens)
        return out

    def split(self, simplified: str) -> list[str]:
        return self.split_many([simplified])[0]


# --- hashing ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MinHashConfig:
    """FineWeb's MinHash settings (datatrove defaults with ``hash_fc="sha1"``)."""

    n_grams: int = 5
    num_buckets: int = 14
    hashes_per_bucket: int = 8
    seed: int = 1
    hash_fc: str = "sha1"  # "sha1" (FineWeb) or "xxhash" (datatrove's default)
    precision: int = 64  # 64 or 32

    def __post_init__(self):
        if self.hash_fc not in ("sha1", "xxhash"):
            raise ValueError(f"hash_fc must be 'sha1' or 'xxhash', got {self.hash_fc!r}")
        if self.precision not in (32, 64):
            raise ValueError(f"precision must be 32 or 64, got {self.precision!r}")
        for name in ("n_grams", "num_buckets", "hashes_per_bucket"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_hashes(self) -> int:
        return self.num_buckets * self.hashes_per_bucket

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<u4") if self.precision == 32 else np.dtype("<u8")


def shingle_hashes(words: Sequence[str], config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """Hashes (uint64) of the word n-grams of ``words``, each n-gram joined by one space."""
    n = config.n_grams
    count = len(words) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = [w.encode("utf-8") for w in words]
    # n staggered views of the words, zipped: the n-grams without a Python-level loop body
    shingles = list(map(b" ".join, zip(*(encoded[k:] for k in range(n)), strict=False)))
    if config.hash_fc == "sha1":
        width = 4 if config.precision == 32 else 8
        digests = b"".join([h.digest() for h in map(hashlib.sha1, shingles)])
        raw = np.frombuffer(digests, dtype=np.uint8).reshape(count, 20)[:, :width]
        return np.ascontiguousarray(raw).view(config.dtype).reshape(count).astype(np.uint64)
    import xxhash

    digest = xxhash.xxh32_intdigest if config.precision == 32 else xxhash.xxh64_intdigest
    return np.fromiter(map(digest, shingles), dtype=np.uint64, count=count)


@lru_cache(maxsize=8)
def permutations(num_hashes: int = 112, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of the permutations, each uint64 of shape (1, num_hashes): a ∈ [1, p), b ∈ [0, p)."""
    rng = np.random.RandomState(seed)
    prime = np.uint64(MERSENNE_PRIME)
    a = rng.randint(1, prime, size=(1, num_hashes), dtype=np.uint64)
    b = rng.randint(0, prime, size=(1, num_hashes), dtype=np.uint64)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def signatures(
    hashes: np.ndarray,
    counts: Sequence[int],
    config: MinHashConfig = MinHashConfig(),
    chunk_rows: int = 8192,
) -> np.ndarray:
    """MinHash signatures of several documents at once.

    ``hashes`` (uint64, shape [N]) holds the shingle hashes of all documents back to back,
    ``counts[d]`` how many belong to document d (each > 0). Returns [D, num_hashes] in the
    config's dtype. Rows are processed in chunks of about ``chunk_rows`` shingles so the
    [rows, num_hashes] intermediate stays a few MB.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.min() <= 0:
        raise ValueError("every document needs at least one shingle")
    a, b = permutations(config.num_hashes, config.seed)
    prime = np.uint64(MERSENNE_PRIME)
    out = np.empty((counts.size, config.num_hashes), dtype=np.uint64)
    ends = np.cumsum(counts)
    starts = ends - counts
    doc = 0
    buffer = np.empty((0, config.num_hashes), dtype=np.uint64)
    while doc < counts.size:
        # documents [doc, last) fit in one chunk (a single huge document is its own chunk)
        last = max(doc + 1, int(np.searchsorted(ends, starts[doc] + chunk_rows, side="right")))
        lo, hi = int(starts[doc]), int(ends[last - 1])
        if buffer.shape[0] < hi - lo:
            buffer = np.empty((hi - lo, config.num_hashes), dtype=np.uint64)
        phv = buffer[: hi - lo]
        np.multiply(hashes[lo:hi, None], a, out=phv)  # wraps mod 2**64, like the reference
        np.add(phv, b, out=phv)  # wraps mod 2**64 too
        np.remainder(phv, prime, out=phv)
        if config.precision == 32:  # the reference masks each permuted hash, then takes the min
            np.bitwise_and(phv, np.uint64(0xFFFFFFFF), out=phv)
        out[doc:last] = np.minimum.reduceat(phv, starts[doc:last] - lo, axis=0)
        doc = last
    return out.astype(config.dtype)


def band_keys(signature: np.ndarray, config: MinHashConfig = MinHashConfig()) -> list[bytes]:
    """One key per band: the band index (2 bytes) then its hashes as little-endian bytes."""
    bands = np.ascontiguousarray(signature).reshape(config.num_buckets, config.hashes_per_bucket)
    return [i.to_bytes(2, "little") + bands[i].tobytes() for i in range(config.num_buckets)]


class SignatureComputer:
    """Texts → (signature or None). Keeps the word cache between calls (one per worker)."""

    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        self.words = WordSplitter()

    def shingles_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        simplified = [simplify_text(t) for t in texts]
        return [shingle_hashes(w, self.config) for w in self.words.split_many(simplified)]

    def compute(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Signature of each text (shape [num_hashes]), None for texts with fewer than n words."""
        shingles = self.shingles_many(texts)
        have = [i for i, s in enumerate(shingles) if s.size]
        result: list[np.ndarray | None] = [None] * len(texts)
        if have:
            sigs = signatures(
                np.concatenate([shingles[i] for i in have]),
                [shingles[i].size for i in have],
                self.config,
            )
            for row, i in enumerate(have):
                result[i] = sigs[row]
        return result


def lsh_probability(similarity: float | np.ndarray, bands: int = 14, rows: int = 8):
    """Probability that two documents of Jaccard similarity s share at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=float) ** rows) ** bands


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle-hash sets."""
    a, b = np.unique(a), np.unique(b)
    union = np.union1d(a, b).size
    return float(np.intersect1d(a, b, assume_unique=True).size / union) if union else 0.0


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
