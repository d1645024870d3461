"""Shared Apache Beam helpers: options, document shard sinks, counters → stats.json, COMPLETED.

Used by every pipeline under ``beam_pipelines/`` (data, dedup, tokenize):

* :func:`pipeline_options` — Beam options from the words after ``--`` on the command line, passed
  to Beam unchanged; with no ``--runner`` the local DirectRunner gets
  ``--direct_num_workers=2 --direct_running_mode=multi_processing`` unless given.
* :class:`WriteShards` — a PTransform writing ``(category, Document)`` pairs into
  ``OUTPUT_DIR/<category>/NNNNN.jsonl.gz`` (e.g. ``documents/``, ``removed/url/``, ``errors/``),
  each document's shard chosen by a hash of its id, each shard sorted by id: the output does not
  depend on worker count or scheduling.
* :func:`count` / :func:`collect_counters` — Beam counters in the ``deepdive`` namespace and
  their totals after the run (what ``stats.json`` is made of).
* :func:`prepare_output_dir`, :func:`write_json`, :func:`mark_completed` — the run directory
  protocol: outputs first, ``COMPLETED`` last.
* :func:`input_files`, :func:`write_bytes`, :func:`remove` — files and folders by name, local or
  a bucket URL (``gs://``): every file a pipeline reads or writes goes through Beam's
  ``FileSystems``, so OUTPUT_DIR and INPUT may be either.
* :class:`Progress` — a live progress bar for local runs, fed by small heartbeat files that the
  workers write (Beam's local runners report no live counters); off for a bucket OUTPUT_DIR.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker.statesampler import get_current_tracker

from framework.core.errors import ConfigError, InputError
from framework.data.document import Document, shard_name

NAMESPACE = "deepdive"
COMPLETED = "COMPLETED"
DEFAULT_LOCAL_OPTIONS = [
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
    "--default_sdk_harness_log_level=ERROR",
]
PROGRESS_DIR = ".progress"


# ----------------------------------------------------------------------------------------------
# options


def pipeline_options(beam_args: Sequence[str] | None) -> PipelineOptions:
    """Beam options from ``beam_args`` (unchanged), with the local multi-process default."""
    from beam_pipelines import dask_runner

    args = dask_runner.expand_args(beam_args or [])
    if is_local(args):
        given = {a.split("=", 1)[0] for a in args}
        args += [d for d in DEFAULT_LOCAL_OPTIONS if d.split("=", 1)[0] not in given]
    try:
        return PipelineOptions(args)
    except SystemExit as error:  # argparse inside Beam exits on bad options
        raise ConfigError(f"Beam options {' '.join(args)!r} are not valid") from error


def runner_name(beam_args: Sequence[str] | None) -> str:
    runner = "DirectRunner"
    args = list(beam_args or [])
    for i, arg in enumerate(args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    return runner


def is_local(beam_args: Sequence[str] | None) -> bool:
    return runner_name(beam_args) in ("DirectRunner", "direct", "BundleBasedDirectRunner")


def num_workers(beam_args: Sequence[str] | None) -> int:
    for arg in beam_args or []:
        if arg.startswith("--direct_num_workers="):
            return int(arg.split("=", 1)[1]) or os.cpu_count() or 1
    return 2


# ----------------------------------------------------------------------------------------------
# counters


def count(name: str, n: int = 1) -> None:
    """Increment the Beam counter ``deepdive:<name>`` (e.g. ``filter.url.dropped.domain``).

    Where the runner keeps no Beam metrics (no state tracker: the Dask runner), the count goes
    to this process's own table, which :func:`take_worker_counters` hands over.
    """
    if n:
        if get_current_tracker() is None:
            with _worker_lock:
                _worker_counters[name] = _worker_counters.get(name, 0) + n
        else:
            Metrics.counter(NAMESPACE, name).inc(n)


_worker_counters: dict[str, int] = {}
_worker_lock = threading.Lock()


def take_worker_counters() -> dict[str, int]:
    """This process's counts made outside Beam metrics, then reset (one pipeline's worth)."""
    global _worker_counters
    with _worker_lock:
        taken, _worker_counters = _worker_counters, {}
    return taken


def collect_counters(result: Any) -> dict[str, int]:
    """Totals of the ``deepdive`` counters of a finished pipeline (committed, else attempted)."""
    from apache_beam.metrics.metric import MetricsFilter

    if type(result).__module__.startswith("apache_beam.runners.dask"):  # no Beam metrics there
        from beam_pipelines import dask_runner

        return dask_runner.take_counters(result)
    totals: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


# ----------------------------------------------------------------------------------------------
# run directory


def is_remote(path: Any) -> bool:
    """Whether ``path`` is a URL of a Beam file system (``gs://``, ``s3://``, ``hdfs://``...)
    rather than a local file name."""
    return "://" in str(path)


def prepare_output_dir(output_dir: str, overwrite: bool, owned: Iterable[str]) -> None:
    """Create ``output_dir``; refuse a finished run unless ``overwrite``; clear stale outputs.

    ``owned`` names the entries this pipeline writes (e.g. ``documents``, ``stats.json``); only
    those are removed, so a user's other files in the directory are left alone. ``output_dir``
    may be a bucket URL (no folder to create there: objects appear with their first file).
    """
    make_dirs(output_dir)
    if FileSystems.exists(FileSystems.join(output_dir, COMPLETED)) and not overwrite:
        raise ConfigError(
            f"output directory {output_dir} already holds a completed run; "
            "pass --overwrite or choose another OUTPUT_DIR"
        )
    for name in [*owned, COMPLETED, PROGRESS_DIR]:
        remove(FileSystems.join(output_dir, name))


def make_dirs(path: str) -> None:
    """Create the local folder ``path`` with its parents; nothing for a URL (a bucket has no
    folders: an object's name makes its "folder")."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Delete the file or folder ``path`` (a folder with everything under it); nothing if absent.

    On a bucket a "folder" is every object whose name starts with ``path/``.
    """
    if not is_remote(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return
    if FileSystems.exists(path):
        FileSystems.delete([path])
    folder = path.rstrip("/") + "/"
    inside = matching(folder + "**")
    if inside:  # on GCS a name ending in "/" deletes the whole prefix in batches
        FileSystems.delete([folder] if folder.startswith("gs://") else inside)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader sees half a file: a local file is written
    beside and renamed; a bucket object appears whole when its upload ends."""
    from apache_beam.io.filesystem import CompressionTypes

    if is_remote(path):
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        return
    tmp = path + ".tmp"
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    os.replace(tmp, path)


def read_text(path: str) -> str:
    """The UTF-8 text of the file ``path`` (local or a bucket URL)."""
    from apache_beam.io.filesystem import CompressionTypes

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read().decode("utf-8")


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON in ``path`` (local or a bucket URL), written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    write_bytes(path, text.encode("utf-8"))


def mark_completed(output_dir: str) -> None:
    """Write ``COMPLETED`` — the last file of a run; readers trust a directory only with it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n"
    write_bytes(FileSystems.join(output_dir, COMPLETED), stamp.encode())


def absolute(path: str) -> str:
    """A local path made absolute (the manifest must not depend on the working directory); a
    bucket URL as given."""
    return path if is_remote(path) else os.path.abspath(path)


def file_name(path: str) -> str:
    """The last part of a file name or URL (``gs://b/in/x.jsonl`` → ``x.jsonl``)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def matching(pattern: str) -> list[str]:
    """The files that a glob (local or URL) matches, sorted; none is not an error here."""
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def input_files(pattern: str | os.PathLike | Sequence[Any]) -> list[str]:
    """Files of a glob, a file or a run directory (its ``documents/*.jsonl*`` if it has them,
    else its ``*.jsonl*``), or of a list of these; sorted within each pattern.

    Local patterns go to :func:`framework.data.document.expand_inputs` unchanged; a bucket URL
    is matched through Beam's ``FileSystems``. InputError when nothing matches.
    """
    from framework.data.document import expand_inputs

    patterns = list(pattern) if isinstance(pattern, list | tuple) else [pattern]
    if not any(is_remote(p) for p in patterns):
        return expand_inputs(pattern)
    files: list[str] = []
    for p in patterns:
        files += _url_inputs(str(p)) if is_remote(p) else expand_inputs(p)
    if not files:
        raise InputError(f"input {pattern!s}: no files match")
    return files


def _url_inputs(url: str) -> list[str]:
    """Files of one URL: a glob, a file, or a run directory (see :func:`input_files`)."""
    if any(c in url for c in "*?["):
        return matching(url)
    if FileSystems.exists(url):
        return [url]
    folder = url.rstrip("/")
    documents = matching(f"{folder}/documents/*.jsonl*")
    return documents or matching(f"{folder}/*.jsonl*")


# ----------------------------------------------------------------------------------------------
# shard sinks


def shard_of(doc_id: str, num_shards: int) -> int:
    """Stable shard index of a document id (sha1, so it is the same on every worker and run)."""
    digest = hashlib.sha1(doc_id.encode("utf-8", errors="surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little") % max(1, num_shards)


def write_shard(path: str, docs: Iterable[Document]) -> int:
    """Write documents (sorted by id) as one gzip JSONL file via Beam's FileSystems; atomic."""
    ordered = sorted(docs, key=lambda d: d.id)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
        for doc in ordered:
            gz.write(doc.to_json().encode("utf-8", errors="surrogatepass") + b"\n")
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    from apache_beam.io.filesystem import CompressionTypes

    # create() makes the missing parent directories itself (where the file system has any),
    # safely when several workers write shards of one category at once.
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(buffer.getvalue())
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    return len(ordered)


class _WriteGroup(beam.DoFn):
    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def process(self, element: tuple[tuple[str, int], Iterable[Document]]):
        (category, shard), docs = element
        path = FileSystems.join(self.output_dir, category, shard_name(shard))
        n = write_shard(path, docs)
        count(f"written.{category}", n)
        yield category, path, n


class WriteShards(beam.PTransform):
    """``(category, Document)`` → ``OUTPUT_DIR/<category>/NNNNN.jsonl.gz``; yields written paths.

    ``num_shards`` is per category; a shard that receives no document is not written.
    """

    def __init__(self, output_dir: str, num_shards: int):
        super().__init__()
        self.output_dir = output_dir
        self.num_shards = max(1, int(num_shards))

    def expand(self, pcoll):
        n = self.num_shards
        return (
            pcoll
            | "KeyByShard" >> beam.Map(lambda cd: ((cd[0], shard_of(cd[1].id, n)), cd[1]))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteGroup(self.output_dir))
        )


# ----------------------------------------------------------------------------------------------
# progress for local runs


class Heartbeat:
    """Worker side of :class:`Progress`: writes this worker's count at most once a second."""

    def __init__(self, output_dir: str | None):
        local = output_dir and not is_remote(output_dir)  # no heartbeats into a bucket
        self.directory = FileSystems.join(output_dir, PROGRESS_DIR) if local else None
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.done = 0
        self.last = 0.0

    def tick(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if self.directory is None or (not force and now - self.last < 1.0):
            return
        self.last = now
        try:
            os.makedirs(self.directory, exist_ok=True)
            tmp = os.path.join(self.directory, f".{self.name}.tmp")
            with open(tmp, "w") as f:
                f.write(str(self.done))
            os.replace(tmp, os.path.join(self.directory, self.name))
        except OSError:
            self.directory = None  # remote or read-only output: no progress, no failure


class Progress:
    """Main-process side: a tqdm bar summing the workers' heartbeat files (local runs into a
    local OUTPUT_DIR only: the heartbeats are local files)."""

    def __init__(self, output_dir: str, unit: str = "page", total: int | None = None, enabled=True):
        local = not is_remote(output_dir)
        self.directory = FileSystems.join(output_dir, PROGRESS_DIR) if local else None
        self.unit = unit
        self.total = total
        self.enabled = enabled and local
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> int:
        done = 0
        for path in glob.glob(os.path.join(self.directory, "[!.]*")):
            try:
                with open(path) as f:
                    done += int(f.read() or 0)
            except (OSError, ValueError):
                pass
        return done

    def _loop(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, unit=self.unit, dynamic_ncols=True, mininterval=0.5) as bar:
            while not self._stop.wait(0.5):
                done = self._read()
                if done > bar.n:
                    bar.update(done - bar.n)
            done = self._read()
            if done > bar.n:
                bar.update(done - bar.n)

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def read_document_records(path: str) -> Iterator[tuple[int, Document | None, str | None, str]]:
    """``(line index, document or None, error or None, raw line)`` for each non-blank line of a
    documents file (``.jsonl`` or ``.jsonl.gz``, any Beam filesystem); a bad line is an error, not
    an exception, so the caller can write it aside and go on."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as raw:  # .gz is decompressed from the file name
        for line_no, data in enumerate(iter(raw.readline, b"")):
            line = data.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                doc = Document.from_dict(record)
                if not isinstance(record.get("text"), str):
                    raise ValueError("'text' must be a string")
            except (json.JSONDecodeError, ValueError) as error:
                yield line_no, None, f"{type(error).__name__}: {error}", line
                continue
            yield line_no, doc, None, line
