"""The one tokenizer loader every stage uses, and the text reader for tokenizer training.

``load_tokenizer(path)`` accepts:

* a tokenizer directory: ``tokenizer.json`` names the plugin in ``"kind"``, and the plugin's
  ``load(directory)`` reads its own file;
* any file or folder a ``tokenizers`` plugin declares it reads directly: ``file_patterns``
  (e.g. ``*.tiktoken``, ``*.model``) for a file, ``folder_files`` (e.g. GPT-2's
  ``encoder.json`` + ``vocab.bpe``) for a folder without ``tokenizer.json``; the plugin's
  ``from_file(path)`` loads it.

The core names no tokenizer plugin: it asks the ``tokenizers`` registry which one applies.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from framework.core import paths
from framework.core.errors import InputError


def _load_plugins() -> None:
    from framework.core import discovery, registry

    if not registry.TOKENIZERS.names():  # the built-in tokenizers first: cheap, no jax import
        discovery.load_builtin_kind(registry.TOKENIZERS.kind)


def _plugin_class(kind: str, where: str) -> Any:
    from framework.core import discovery, registry

    _load_plugins()
    if kind not in registry.TOKENIZERS:
        discovery.load_plugins()
    if kind not in registry.TOKENIZERS:
        known = ", ".join(registry.TOKENIZERS.names())
        raise InputError(f"{where}: unknown tokenizer kind {kind!r} (known: {known})")
    return registry.TOKENIZERS.get(kind)


def _readers_of(path: Path) -> list[Any]:
    """The plugin classes that declare they read ``path`` directly (a file or a bare folder)."""
    from framework.core import registry

    _load_plugins()
    found = []
    for name in registry.TOKENIZERS.names():
        cls = registry.TOKENIZERS.get(name)
        if path.is_dir():
            needed = getattr(cls, "folder_files", ())
            if needed and all((path / f).is_file() for f in needed):
                found.append(cls)
        elif any(fnmatch.fnmatch(path.name, p) for p in getattr(cls, "file_patterns", ())):
            found.append(cls)
    return found


def _declared_inputs() -> str:
    from framework.core import registry

    kinds = []
    for name in registry.TOKENIZERS.names():
        cls = registry.TOKENIZERS.get(name)
        files = [*getattr(cls, "file_patterns", ())]
        if folder := getattr(cls, "folder_files", ()):
            files.append("a folder with " + " + ".join(folder))
        if files:
            kinds.append(f"{name}: {', '.join(files)}")
    return "; ".join(kinds)


def load_tokenizer(path: str | os.PathLike) -> Any:
    """The tokenizer at ``path`` (see the module docstring for what ``path`` may be; a bucket
    URL is copied to a temporary local folder first, as the plugins read local files)."""
    if paths.is_url(path):
        local = paths.local_copy(path)
        try:
            return load_tokenizer(local)
        finally:
            paths.remove_local_copy(local, path)
    path = Path(path).expanduser()
    meta_path = path / "tokenizer.json"
    if path.is_dir() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{meta_path}: not JSON: {error}") from None
        if isinstance(meta, dict) and "kind" in meta:
            return _plugin_class(str(meta["kind"]), str(meta_path)).load(path)
        if not _readers_of(path):  # e.g. Hugging Face's tokenizer.json: tokenizers.hf_bpe
            raise InputError(f"{meta_path}: needs a 'kind' naming the tokenizer plugin")
    if not path.exists():
        raise InputError(f"{path}: tokenizer not found (expected a directory or a .tiktoken file)")
    readers = _readers_of(path)
    if not readers:
        what = (
            "not a tokenizer directory (no tokenizer.json)"
            if path.is_dir()
            else ("unknown tokenizer file type")
        )
        raise InputError(f"{path}: {what}; tokenizer plugins read: {_declared_inputs()}")
    return readers[0].from_file(path)


def iter_texts(inputs: str | Sequence[str], txt_split: str | None = None) -> Iterator[str]:
    """Texts for tokenizer training from documents (``*.jsonl[.gz]``, a data-stage output folder)
    and plain ``*.txt`` files.

    ``txt_split``: how a ``.txt`` file becomes texts — ``None`` (the whole file is one text),
    ``"line"`` (each line) or ``"paragraph"`` (blocks separated by blank lines).
    """
    from framework.data import document

    if txt_split not in (None, "line", "paragraph"):
        raise InputError(f"txt_split: expected None, 'line' or 'paragraph', got {txt_split!r}")
    for file in document.expand_inputs(list(inputs) if not isinstance(inputs, str) else inputs):
        if ".jsonl" in Path(file).name:
            try:
                for doc in document.read_jsonl(file):
                    yield doc.text
            except ValueError as error:
                raise InputError(str(error)) from None
            continue
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{file}: cannot read as UTF-8 text: {error}") from None
        if txt_split is None:
            yield text
        elif txt_split == "line":
            yield from (line + "\n" for line in text.split("\n") if line)
        else:
            yield from (block for block in text.split("\n\n") if block)
