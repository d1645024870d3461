"""Block lists of any size, loaded in milliseconds by every worker.

Why: the UT1 domain list that FineWeb's URL filter uses has 4.5 million lines. Held as a Python
set it costs every worker process about 3 s to build and about half a gigabyte of memory. A list
file with at least :data:`INDEX_MIN_ENTRIES` entries is therefore kept as a sorted array of the
64-bit xxh3 hashes of its entries (36 MB for UT1), saved once in a cache file keyed by the list
file's real path, size and modification time, and memory-mapped by every later load (the first
load builds it, a few seconds). Smaller lists stay plain sets.

Membership is exact up to a 64-bit hash collision: a string not in a hashed list of n entries is
reported as listed with probability n / 2^64 (2.4e-13 for UT1).

Entry syntax (shared with :func:`read_entries`): one entry per line, stripped; blank lines and
lines starting with ``#`` are skipped. The cache lives in ``$DEEPDIVE_CACHE_DIR``, else
``$XDG_CACHE_HOME/deepdive``, else ``~/.cache/deepdive``; if it cannot be written the index is
built in memory for this process only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import xxhash

from framework.core.cache import cache_dir

INDEX_MIN_ENTRIES = 100_000
_FORMAT = "xxh3_64-sorted-v1"


def read_entries(path: str | Path) -> Iterator[str]:
    """Entries of a list file: stripped lines, without blank lines and ``#`` comment lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            data = f.read()
    except OSError as e:
        from framework.core.errors import ConfigError

        raise ConfigError(f"filters.url: cannot read list file {path}: {e.strerror}") from e
    for line in data.split("\n"):
        if line and not line.startswith("#") and (s := line.strip()):
            yield s


def _hash(entry: str) -> int:
    return xxhash.xxh3_64_intdigest(entry.encode("utf-8", "surrogatepass"))


def _index_path(path: Path) -> Path:
    real = path.resolve()
    st = real.stat()
    key = hashlib.sha1(f"{_FORMAT}\0{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return cache_dir() / "blocklists" / f"{key}.npy"


def _build_index(entries: list[str]) -> np.ndarray:
    hashes = np.fromiter(map(_hash, entries), dtype=np.uint64, count=len(entries))
    return np.unique(hashes)  # sorted


class BlockList:
    """Exact-match membership over list files plus extra entries (see the module docstring)."""

    def __init__(self, files: Iterable[str | Path] = (), extra: Iterable[str] = ()):
        self._sets: list[frozenset[str]] = []
        self._indexes: list[np.ndarray] = []
        small = {e.strip() for e in extra if e.strip()}
        for file in files:
            index = self._load_cached(Path(file))
            if index is not None:
                self._indexes.append(index)
                continue
            entries = list(read_entries(file))
            if len(entries) < INDEX_MIN_ENTRIES:
                small.update(entries)
            else:
                self._indexes.append(self._save(Path(file), _build_index(entries)))
        self._sets.append(frozenset(small))
        self.size = sum(map(len, self._sets)) + sum(map(len, self._indexes))

    @staticmethod
    def _load_cached(path: Path) -> np.ndarray | None:
        try:
            return np.load(_index_path(path), mmap_mode="r")
        except (OSError, ValueError):
            return None

    @staticmethod
    def _save(path: Path, index: np.ndarray) -> np.ndarray:
        try:
            target = _index_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, index)
            os.replace(tmp, target)
        except OSError:
            pass  # read-only cache: this process keeps its in-memory index
        return index

    def __contains__(self, entry: object) -> bool:
        if not isinstance(entry, str):
            return False
        if any(entry in s for s in self._sets):
            return True
        if not self._indexes:
            return False
        h = np.uint64(_hash(entry))
        for index in self._indexes:
            i = int(np.searchsorted(index, h))
            if i < len(index) and index[i] == h:
                return True
        return False

    def __len__(self) -> int:
        return self.size
