"""One path layer: every path a command reads or writes may be local or a bucket URL.

``gs://bucket/dir`` (and ``s3://``, which the same libraries give for free) and local paths go
through :func:`as_path`, an ``etils.epath.Path`` — the path type orbax uses — so the trainer,
checkpoints, metrics, plots and run files use one API on both. Local paths are made absolute
(a run directory must not depend on the working directory of a later resume).

What cannot be written in place on a bucket is staged on local disk and copied: files opened
for appending (metrics.jsonl is rewritten instead), TensorBoard event files, and libraries
that only take local file names (:func:`local_copy` for reading a directory such as a
tokenizer). Pipelines use Beam's ``FileSystems``, which understands the same URLs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from etils import epath

from framework.core.errors import InputError

URL_SCHEMES = ("gs://", "s3://")
PathLike = str | os.PathLike


def is_url(path: Any) -> bool:
    """Whether ``path`` names a bucket object rather than a local file."""
    return str(path).startswith(URL_SCHEMES)


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: URLs as given, local paths expanded and absolute."""
    if isinstance(path, epath.Path) and is_url(path):
        return path
    text = os.fspath(path)
    if is_url(text):
        return epath.Path(text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def bucket_of(url: str) -> str:
    """``gs://bucket/a/b`` -> ``gs://bucket``."""
    scheme, rest = str(url).split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def check_location(path: PathLike, what: str) -> None:
    """Fail with one line (``what``: the flag or macro that named it) unless ``path`` can be
    used: for a URL, its bucket exists and these credentials can list it. Nothing is written."""
    if not is_url(path):
        return
    bucket = bucket_of(str(path))
    try:
        exists = epath.Path(bucket).exists()
    except Exception as error:  # noqa: BLE001 - credentials, network, permissions: one line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{what} {path}: cannot reach {bucket} ({reason[:200]})") from None
    if not exists:
        raise InputError(f"{what} {path}: bucket {bucket} does not exist (or is not visible)")


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (local or URL), creating the parent folder."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def copy_tree(source: PathLike, target: PathLike, replace: bool = True) -> None:
    """Copy the folder ``source`` to ``target`` (either may be a URL), replacing ``target``
    (else adding to what it holds)."""
    source, target = as_path(source), as_path(target)
    if replace and target.exists():
        target.rmtree()
    for path in walk(source):
        relative = os.path.relpath(os.fspath(path), os.fspath(source))
        destination = target / relative
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


def walk(folder: PathLike):
    """Every file and folder under ``folder`` (a recursive glob, which epath refuses on buckets)."""
    for child in as_path(folder).iterdir():
        yield child
        if child.is_dir():
            yield from walk(child)


def save_folder(target: PathLike, save: Callable[[str], Any]) -> epath.Path:
    """``save(local_folder_name)`` into ``target``: directly when local, else into a temporary
    folder whose files are then copied into the bucket (what ``target`` already holds stays),
    for libraries that only write local files (tokenizer plugins)."""
    target = as_path(target)
    if not is_url(target):
        save(os.fspath(target))
        return target
    with tempfile.TemporaryDirectory(prefix="deepdive-stage-") as staging:
        local = os.path.join(staging, target.name or "folder")
        save(local)
        copy_tree(local, target, replace=False)
    return target


def local_copy(path: PathLike) -> str:
    """A local file name for ``path``: itself when local, else a copy (file or folder) in a
    temporary folder, for libraries that only open local files (SentencePiece, tiktoken)."""
    if not is_url(path):
        return os.fspath(as_path(path))
    source = as_path(path)
    staging = tempfile.mkdtemp(prefix="deepdive-stage-")
    target = os.path.join(staging, source.name)
    if source.is_dir():
        copy_tree(source, target)
    else:
        epath.Path(target).write_bytes(source.read_bytes())
    return target


def remove_local_copy(local: str, path: PathLike) -> None:
    """Remove what :func:`local_copy` staged for ``path`` (nothing for a local ``path``)."""
    if is_url(path):
        shutil.rmtree(os.path.dirname(local), ignore_errors=True)
