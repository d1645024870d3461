"""Corpus tokenization on Apache Beam: documents (JSONL) → ArrayRecord token shards for grain.

Output (the token-shard contract ``framework/train/input.py`` reads):

* ``OUTPUT_DIR/train/NNNNN.array_record`` and ``OUTPUT_DIR/validation/NNNNN.array_record``: one
  record per document = its token ids as raw little-endian bytes of a 1-D array of the manifest's
  dtype, with ``eot_id`` appended (the separator between documents).
* ``OUTPUT_DIR/manifest.json``: tokenizer (absolute path, or the URL given), kind, dtype (``uint16`` when every id
  fits, else ``uint32``), vocab_size, eot_id, and per split the documents, tokens, UTF-8 bytes of
  the text, bytes per token (for bits per byte) and the shard list.
* ``errors/`` (malformed input records, with the error), ``config.gin``, ``run_manifest.json`` and
  ``COMPLETED`` last.

Determinism: a document's split and shard depend only on its id (sha1), and each shard is sorted by
id, so the output does not depend on worker count or scheduling. The validation split is every
document whose ``sha1(id)`` (as a fraction of 2**64) is below ``validation_fraction``, plus the
document with the smallest hash, so it is never empty.

Documents are encoded with ``encode_ordinary``: special-token names inside web text are text.

INPUT, OUTPUT_DIR and TOKENIZER may be bucket URLs (``gs://``): files go through Beam's
``FileSystems``, token shards are written locally and copied up (:func:`write_array_record`), and
a tokenizer in a bucket is staged on local disk to load (``load_tokenizer``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import gin
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import common
from framework.core.errors import ConfigError
from framework.data.document import Document

WORK_DIR = ".tokenize_work"
SPLITS = ("train", "validation")
OWNED_OUTPUTS = [*SPLITS, "errors", "manifest.json", WORK_DIR]


def id_fraction(doc_id: str) -> float:
    """``sha1(id)`` as a number in [0, 1): the document's place for the validation split."""
    digest = hashlib.sha1(doc_id.encode("utf-8", errors="surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def shard_file(split: str, index: int) -> str:
    return f"{split}/{index:05d}.array_record"


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "uint32"


@dataclasses.dataclass
class TokenizeSpec:
    """What ``tokenize.build`` configured; :meth:`run` executes it."""

    input: Any
    output_dir: str
    tokenizer: str
    validation_fraction: float
    train_shards: int | None
    validation_shards: int
    batch_size: int

    def files(self) -> list[str]:
        """Input files: local globs or run directories, or the same as bucket URLs."""
        return common.input_files(self.input)

    def load_tokenizer(self):
        """The tokenizer (a bucket URL is staged locally by ``load_tokenizer``); one line when a
        URL names nothing, as for a local path."""
        from framework.core import paths
        from framework.tokenize.files import load_tokenizer

        if paths.is_url(self.tokenizer) and not paths.as_path(self.tokenizer).exists():
            raise ConfigError(
                f"{self.tokenizer}: tokenizer not found (expected a directory or a .tiktoken file)"
            )
        return load_tokenizer(self.tokenizer)

    def run(self, beam_args: list[str], progress: bool = True) -> dict[str, Any]:

        files = self.files()
        tok = self.load_tokenizer()
        dtype = dtype_for(tok.vocab_size)
        shards = {
            "train": self.train_shards or max(1, len(files)),
            "validation": max(1, self.validation_shards),
        }
        out = common.absolute(self.output_dir)
        work = FileSystems.join(out, WORK_DIR)
        start = time.time()
        options = common.pipeline_options(beam_args)
        with common.Progress(out, unit="doc", enabled=progress and common.is_local(beam_args)):
            pipeline = beam.Pipeline(options=options)
            records = (
                pipeline
                | "Files" >> beam.Create(files)
                | "Reshuffle" >> beam.Reshuffle()
                | "Tokenize"
                >> beam.ParDo(TokenizeFileFn(self.tokenizer, dtype, self.batch_size, out))
            )
            # one output split by type, not tagged outputs (Beam's Dask runner mixes those)
            docs = records | "Docs" >> beam.Filter(lambda r: isinstance(r, dict))
            errors = records | "Errors" >> beam.Filter(lambda r: isinstance(r, tuple))
            smallest = beam.pvalue.AsSingleton(
                docs
                | "Fraction" >> beam.Map(lambda r: r["fraction"])
                | "Smallest" >> beam.CombineGlobally(lambda xs: min(xs, default=2.0))
            )
            written = (
                docs
                | "Assign" >> beam.Map(assign_shard, smallest, self.validation_fraction, shards)
                | "GroupByShard" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(WriteTokenShardFn(out))
            )
            error_paths = errors | "ErrorShards" >> common.WriteShards(out, 1)
            _ = (written, error_paths) | "AllSinks" >> beam.Flatten()  # Dask runs the last only
            result = pipeline.run()
            result.wait_until_finish()
        counters = common.collect_counters(result)
        manifest = self.write_manifest(out, tok, dtype, shards)
        manifest_stats = {
            "wall_time_s": round(time.time() - start, 2),
            "malformed": counters.get("tokenize.malformed", 0),
        }
        common.remove(work)
        return {**manifest, **manifest_stats}

    def write_manifest(self, out: str, tok: Any, dtype: str, shards: dict[str, int]) -> dict:
        """manifest.json from the shards' stats sidecars; a shard no document hashed to is
        written empty, so every listed shard exists."""
        splits: dict[str, dict[str, Any]] = {}
        for split in SPLITS:
            totals = {"documents": 0, "tokens": 0, "bytes": 0}
            for path in common.matching(FileSystems.join(out, WORK_DIR, f"{split}-*.json")):
                stats = json.loads(common.read_text(path))
                for key in totals:
                    totals[key] += stats[key]
            names = []
            for index in range(shards[split]):
                name = shard_file(split, index)
                path = FileSystems.join(out, name)
                if not FileSystems.exists(path):  # a shard no document hashed to: empty but present
                    write_array_record(path, [])
                names.append(name)
            totals["bytes_per_token"] = (
                round(totals["bytes"] / totals["tokens"], 4) if totals["tokens"] else None
            )
            splits[split] = {**totals, "shards": names}
        manifest = {
            "tokenizer": common.absolute(self.tokenizer),
            "tokenizer_kind": getattr(tok, "kind", "?"),
            "dtype": dtype,
            "vocab_size": tok.vocab_size,
            "eot_id": tok.eot_id,
            "splits": splits,
        }
        common.write_json(FileSystems.join(out, "manifest.json"), manifest)
        return manifest


def write_array_record(path: str, records: Iterable[bytes]) -> None:
    """One ArrayRecord file (``group_size:1``) holding ``records`` at ``path``, atomically.

    array_record's writer opens its path as a local file: it cannot write to a bucket (its
    reader does read ``gs://`` natively). So a shard for a bucket is written to a local temporary
    file and then copied up through Beam's FileSystems (the object appears whole when the upload
    ends); a local shard is written beside ``path`` and renamed.
    """
    if not common.is_remote(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        _write_records(tmp, records)
        os.replace(tmp, path)
        return
    with tempfile.TemporaryDirectory(prefix="deepdive-shard-") as staging:
        local = os.path.join(staging, common.file_name(path))
        _write_records(local, records)
        with (
            open(local, "rb") as source,
            FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as target,
        ):
            shutil.copyfileobj(source, target, 1 << 20)


def _write_records(local_path: str, records: Iterable[bytes]) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(local_path, "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()


def assign_shard(
    record: dict[str, Any], smallest: float, fraction: float, shards: dict[str, int]
) -> tuple[tuple[str, int], dict[str, Any]]:
    from beam_pipelines.common import shard_of

    split = (
        "validation" if record["fraction"] < fraction or record["fraction"] == smallest else "train"
    )
    return (split, shard_of(record["id"], shards[split])), record


class TokenizeFileFn(beam.DoFn):
    """One input file → a record (dict) per document (id, tokens as bytes, counts), and an
    ``("errors", Document)`` pair per bad line."""

    def __init__(self, tokenizer_path: str, dtype: str, batch_size: int, output_dir: str):
        self.tokenizer_path = tokenizer_path
        self.dtype = dtype
        self.batch_size = batch_size
        self.output_dir = output_dir

    def setup(self) -> None:
        from beam_pipelines.common import Heartbeat
        from framework.tokenize.files import load_tokenizer

        self.tok = load_tokenizer(self.tokenizer_path)
        self.eot = self.tok.eot_id
        self.heartbeat = Heartbeat(self.output_dir)

    def _encode(self, batch: list[Document]) -> Iterator[dict[str, Any]]:
        import numpy as np

        ids = self.tok.encode_ordinary_batch([d.text for d in batch])
        tokens = 0
        for doc, doc_ids in zip(batch, ids, strict=True):
            array = np.asarray([*doc_ids, self.eot], dtype=np.dtype(self.dtype).newbyteorder("<"))
            tokens += len(array)
            yield {
                "id": doc.id,
                "fraction": id_fraction(doc.id),
                "tokens": array.tobytes(),
                "n_tokens": len(array),
                "n_bytes": len(doc.text.encode("utf-8", errors="surrogatepass")),
            }
        common.count("tokenize.documents", len(batch))
        common.count("tokenize.tokens", tokens)
        self.heartbeat.tick(len(batch))

    def process(self, path: str):

        batch: list[Document] = []
        for line_no, doc, error, raw in common.read_document_records(path):
            if doc is None:
                common.count("tokenize.malformed")
                yield (
                    "errors",
                    Document(
                        id=f"{common.file_name(path)}:{line_no + 1}",
                        text=raw[:100_000],
                        metadata={
                            "error": f"malformed_record: {error}",
                            "stage": "tokenize",
                            "source": path,
                        },
                    ),
                )
                continue
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield from self._encode(batch)
                batch = []
        if batch:
            yield from self._encode(batch)

    def teardown(self) -> None:
        if getattr(self, "heartbeat", None) is not None:
            self.heartbeat.tick(0, force=True)


class WriteTokenShardFn(beam.DoFn):
    """``((split, shard), records)`` → one ArrayRecord file sorted by id + a stats sidecar."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def process(self, element: tuple[tuple[str, int], Iterable[dict[str, Any]]]):
        (split, index), records = element
        ordered = sorted(records, key=lambda r: r["id"])
        path = FileSystems.join(self.output_dir, shard_file(split, index))
        write_array_record(path, (r["tokens"] for r in ordered))
        stats = {
            "documents": len(ordered),
            "tokens": sum(r["n_tokens"] for r in ordered),
            "bytes": sum(r["n_bytes"] for r in ordered),
        }
        common.write_json(
            FileSystems.join(self.output_dir, WORK_DIR, f"{split}-{index:05d}.json"), stats
        )
        common.count(f"tokenize.written.{split}", len(ordered))
        yield split, index, stats


@gin.configurable("build", module="tokenize")
def build(
    input: Any = gin.REQUIRED,  # noqa: A002 - the gin macro is INPUT
    output_dir: str = gin.REQUIRED,
    tokenizer: str = gin.REQUIRED,
    validation_fraction: float = 0.005,
    train_shards: int | None = None,
    validation_shards: int = 1,
    batch_size: int = 256,
) -> TokenizeSpec:
    """Configure corpus tokenization.

    Args:
      input: glob (or list) of ``*.jsonl[.gz]`` documents, or a data/dedup output directory.
      output_dir: where the shards, manifest.json and COMPLETED go (local path or bucket URL).
      tokenizer: a tokenizer directory or rank file (anything ``load_tokenizer`` reads; a bucket
        URL is staged on local disk to load).
      validation_fraction: share of documents (by sha1 of the id) in the validation split.
      train_shards: number of train shards (default: one per input file).
      validation_shards: number of validation shards.
      batch_size: documents per ``encode_ordinary_batch`` call.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(f"VALIDATION_FRACTION must be in [0, 1), got {validation_fraction}")
    if train_shards is not None and train_shards < 1:
        raise ConfigError(f"tokenize.build.train_shards must be >= 1, got {train_shards}")
    return TokenizeSpec(
        input=input,
        output_dir=str(output_dir),
        tokenizer=str(tokenizer),
        validation_fraction=float(validation_fraction),
        train_shards=train_shards,
        validation_shards=int(validation_shards),
        batch_size=int(batch_size),
    )
