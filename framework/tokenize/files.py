"""The one tokenizer loader every stage uses, and the text reader for tokenizer training.

``load_tokenizer(path)`` accepts:

* a tokenizer directory (``tokenizer.json`` names the plugin in ``"kind"``; the plugin's
  ``load(directory)`` reads its own file),
* a tiktoken rank file (``*.tiktoken`` or ``*.tiktoken.gz``; OpenAI's r50k/cl100k/o200k files are
  recognised and get their own split pattern and special tokens),
* a directory holding GPT-2's ``encoder.json`` + ``vocab.bpe``,
* a SentencePiece ``*.model`` file.

The core never names a concrete plugin class: it looks plugins up in the ``tokenizers`` registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from framework.core.errors import InputError


def _plugin_class(kind: str, where: str) -> Any:
    from framework.core import discovery, registry

    if kind not in registry.TOKENIZERS:  # the built-in tokenizers first: cheap, no jax import
        discovery.import_package_tree("plugins.tokenizers")
    if kind not in registry.TOKENIZERS:
        discovery.load_plugins()
    if kind not in registry.TOKENIZERS:
        known = ", ".join(registry.TOKENIZERS.names())
        raise InputError(f"{where}: unknown tokenizer kind {kind!r} (known: {known})")
    return registry.TOKENIZERS.get(kind)


def load_tokenizer(path: str | os.PathLike) -> Any:
    """The tokenizer at ``path`` (see the module docstring for what ``path`` may be)."""
    path = Path(path).expanduser()
    if path.is_dir():
        meta_path = path / "tokenizer.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as error:
                raise InputError(f"{meta_path}: not JSON: {error}") from None
            if not isinstance(meta, dict) or "kind" not in meta:
                raise InputError(f"{meta_path}: needs a 'kind' naming the tokenizer plugin")
            return _plugin_class(str(meta["kind"]), str(meta_path)).load(path)
        if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
            return _plugin_class("bpe", str(path)).from_gpt2_files(
                path / "encoder.json", path / "vocab.bpe"
            )
        raise InputError(
            f"{path}: not a tokenizer directory (no tokenizer.json, and no encoder.json + vocab.bpe)"
        )
    if not path.exists():
        raise InputError(f"{path}: tokenizer not found (expected a directory or a .tiktoken file)")
    name = path.name
    if name.endswith((".tiktoken", ".tiktoken.gz")):
        return _plugin_class("bpe", str(path)).from_tiktoken_file(path)
    if name.endswith(".model"):
        cls = _plugin_class("sentencepiece", str(path))
        tok = cls()
        tok._set_model(path.read_bytes(), str(path))  # noqa: SLF001 - the plugin's own loader
        return tok
    raise InputError(
        f"{path}: unknown tokenizer file type (expected a directory, *.tiktoken[.gz] or *.model)"
    )


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
