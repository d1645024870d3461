"""The document record shared by the data, dedup and tokenize stages, and its JSONL shards.

A document is datatrove-compatible: ``{"id": str, "text": str, "metadata": {...}}``, stored as
gzip JSON Lines shards ``documents/NNNNN.jsonl.gz``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from framework.core import paths
from framework.core.errors import InputError


@dataclasses.dataclass
class Document:
    """One document; ``analysis`` is the word/sentence analysis of the current ``text`` that the
    quality filters share (``framework.data.text.analysis_of``), never written to disk."""

    id: str
    text: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    analysis: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # between pipeline steps a document travels without its analysis (it is recomputable)
        return {"id": self.id, "text": self.text, "metadata": self.metadata, "analysis": None}

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "text": self.text, "metadata": self.metadata}, ensure_ascii=False
        )

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Document:
        if not isinstance(record, dict) or "id" not in record:
            raise ValueError("not a document: needs an object with an 'id'")
        text = record.get("text")
        if text is None:
            text = record.get("html", "")
        return cls(
            id=str(record["id"]), text=str(text), metadata=dict(record.get("metadata") or {})
        )


def shard_name(index: int) -> str:
    return f"{index:05d}.jsonl.gz"


def write_jsonl_gz(path: str | os.PathLike, docs: Iterable[Document]) -> int:
    """Write documents to one gzip JSONL file (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as f:
        for doc in docs:
            f.write(doc.to_json() + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def expand_inputs(pattern: str | os.PathLike | list) -> list[str]:
    """Files matching a glob (or a directory's ``*.jsonl.gz``), sorted; error when none match."""
    patterns = pattern if isinstance(pattern, list | tuple) else [pattern]
    files: list[str] = []
    for p in patterns:
        p = str(p)
        if paths.is_url(p):  # a bucket: a folder's documents, or a glob in its last component
            files += _expand_url(p)
        elif os.path.isdir(p):
            inner = (
                os.path.join(p, "documents") if os.path.isdir(os.path.join(p, "documents")) else p
            )
            files += sorted(glob.glob(os.path.join(inner, "*.jsonl*")))
        else:
            files += sorted(glob.glob(p, recursive=True))
    if not files:
        raise InputError(f"input {pattern!s}: no files match")
    return files


def _expand_url(pattern: str) -> list[str]:
    folder = paths.as_path(pattern)
    if not any(ch in pattern for ch in "*?["):
        if folder.is_file():
            return [pattern]
        if (folder / "documents").is_dir():
            folder = folder / "documents"
        return sorted(str(f) for f in folder.glob("*.jsonl*")) if folder.is_dir() else []
    return sorted(str(f) for f in folder.parent.glob(folder.name))


def jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines of a ``.jsonl`` or ``.jsonl.gz`` file,
    local or in a bucket."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(paths.as_path(path).open("rb"))
        if str(path).endswith(".gz"):
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw))
        for line_no, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), 1):
            if line.strip():
                yield line_no, line


def read_jsonl(path: str | os.PathLike) -> Iterator[Document]:
    """Documents of one ``.jsonl`` or ``.jsonl.gz`` file, local or in a bucket (raises
    ValueError on a bad line)."""
    for line_no, line in jsonl_lines(path):
        try:
            yield Document.from_dict(json.loads(line))
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path}:{line_no}: {error}") from error
