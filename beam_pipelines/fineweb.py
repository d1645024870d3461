"""FineWeb-style processing on Apache Beam: read → URL filter → extract → filters → formatters.

The recipe (which plugins, in which order, with which settings) lives in a gin file
(``experiments/data/fineweb.gin``); this module only wires what gin hands it:

    files ─► ReadFile (per file; WARC / JSONL / HTML) ─► Reshuffle (spread pages over workers)
          ─► ProcessPage: pre_filters (on the raw page, e.g. ``url``)
                          → extractor (HTML pages only; empty text → removed, reason ``empty``)
                          → filters in order (first drop wins; ``metadata.filter_reason``)
                          → formatters (kept documents only, e.g. ``pii``)
          ─► WriteShards: documents/, removed/<step>/, errors/   (NNNNN.jsonl.gz, sorted by id)
    then stats.json (Beam counters: per step in / kept / dropped per reason / errors / time)
    and COMPLETED last.

Every decision for one page is made by :meth:`FinewebPipeline.process_item`, which both the Beam
DoFn and ``deepdive explain`` call, so the explanation is the pipeline's own verdict.

Nothing here crashes the run on bad data: an unreadable record, a page over ``max_page_chars``,
an extraction timeout or a filter that raises all become ``errors/`` records with
``metadata.error`` (``<reason>: <detail>``) and a ``stage``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import gin

from framework.data.document import Document
from framework.data.readers import ReadItem, read_any

ERROR_TEXT_LIMIT = 1_000_000  # keep the page of an extraction error in errors/ up to this size


def plugin_name(obj: Any, kind: str) -> str:
    """The registry name an object was built from (``filters.url`` → ``url``)."""
    from framework.core import registry

    for entry in registry.kind(kind).entries():
        try:
            if isinstance(obj, entry.obj):
                return entry.name
        except TypeError:  # a factory function, not a class
            continue
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name.isidentifier():
        return name
    return type(obj).__name__.lower()


def run_filter(f: Any, doc: Document) -> tuple[bool, str | None]:
    """Apply a datatrove-style filter: ``bool`` or ``(bool, reason)``."""
    result = f.filter(doc)
    if isinstance(result, tuple):
        keep, reason = result[0], (result[1] if len(result) > 1 else None)
        return bool(keep), (str(reason) if reason is not None else None)
    return bool(result), None


def _reason_key(reason: str) -> str:
    """A counter-safe reason (``non_english/de`` stays readable)."""
    return reason.replace(" ", "_").replace(".", "_")


@dataclasses.dataclass
class Outcome:
    """What happened to one record: where it goes and the counters it bumps."""

    category: str  # "documents" | "removed/<step>" | "errors" | "" (skipped)
    doc: Document | None
    events: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    trace: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # for explain


@dataclasses.dataclass
class FinewebPipeline:
    """The configured steps of a FineWeb-style run (see :func:`build`)."""

    input: Any
    output_dir: str
    extractor: Any = None
    pre_filters: Sequence[Any] = ()
    filters: Sequence[Any] = ()
    formatters: Sequence[Any] = ()
    num_shards: int = 0
    max_page_chars: int = 10_000_000

    # -- names --------------------------------------------------------------------------------
    def step_names(self) -> dict[str, list[str]]:
        def unique(objs: Sequence[Any], kind: str, taken: set[str]) -> list[str]:
            names = []
            for obj in objs:
                base = plugin_name(obj, kind)
                name, i = base, 2
                while name in taken:
                    name, i = f"{base}_{i}", i + 1
                taken.add(name)
                names.append(name)
            return names

        taken: set[str] = set()
        pre = unique(self.pre_filters, "filters", taken)
        ext = unique([self.extractor], "extractors", taken) if self.extractor is not None else []
        post = unique(self.filters, "filters", taken)
        fmt = unique(self.formatters, "formatters", taken)
        return {"pre_filters": pre, "extractor": ext, "filters": post, "formatters": fmt}

    def ordered_steps(self) -> list[tuple[str, str]]:
        names = self.step_names()
        return (
            [("read", "reader")]
            + [(n, "filter") for n in names["pre_filters"]]
            + [(n, "extractor") for n in names["extractor"]]
            + [(n, "filter") for n in names["filters"]]
            + [(n, "formatter") for n in names["formatters"]]
        )

    # -- one record ---------------------------------------------------------------------------
    def process_item(
        self, item: ReadItem, names: dict[str, list[str]] | None = None, explain: bool = False
    ) -> Outcome:
        """Every decision for one record (see the module docstring)."""
        names = names or self.step_names()
        if item.kind == "skip":
            return Outcome("", None, [(f"read.skipped.{_reason_key(item.reason)}", 1)])
        doc = item.doc
        assert doc is not None
        if item.kind == "error":
            return Outcome("errors", doc, [(f"read.errors.{_reason_key(item.reason)}", 1)])
        out = Outcome("", doc, [])

        def error(stage: str, reason: str, detail: str, keep_text: bool) -> Outcome:
            meta = dict(doc.metadata)
            meta.update({"error": f"{reason}: {detail}", "stage": stage})
            text = doc.text if keep_text and len(doc.text) <= ERROR_TEXT_LIMIT else ""
            out.category, out.doc = "errors", Document(doc.id, text, meta)
            out.events.append((f"{stage}.errors.{reason}", 1))
            out.trace.append(
                {"step": stage, "verdict": "error", "reason": reason, "detail": detail}
            )
            return out

        def drop(stage: str, reason: str) -> Outcome:
            doc.metadata["filter_reason"] = reason
            out.category = f"removed/{stage}"
            out.events.append((f"{stage}.dropped.{_reason_key(reason)}", 1))
            return out

        if len(doc.text) > self.max_page_chars:
            return error(
                "read",
                "page_too_large",
                f"{len(doc.text)} characters > max_page_chars={self.max_page_chars}",
                keep_text=False,
            )
        out.events.append(("read.out", 1))

        def apply_filters(objs: Sequence[Any], step_names: list[str]) -> bool:
            for f, name in zip(objs, step_names, strict=True):
                out.events.append((f"{name}.in", 1))
                stats = None
                start = time.perf_counter()
                try:
                    if explain:
                        stats = f.explain(doc)
                    keep, reason = run_filter(f, doc)
                except Exception as e:  # noqa: BLE001 - a filter bug must not kill the run
                    error(name, "filter_error", f"{type(e).__name__}: {e}", keep_text=True)
                    return False
                finally:
                    out.events.append((f"{name}.time_us", int((time.perf_counter() - start) * 1e6)))
                if explain:
                    out.trace.append(
                        {
                            "step": name,
                            "verdict": "keep" if keep else "drop",
                            "reason": reason,
                            "explain": stats,
                        }
                    )
                if not keep:
                    drop(name, reason or name)
                    return False
                out.events.append((f"{name}.kept", 1))
            return True

        if not apply_filters(self.pre_filters, names["pre_filters"]):
            return out
        if item.kind == "page" and self.extractor is not None:
            name = names["extractor"][0]
            out.events.append((f"{name}.in", 1))
            start = time.perf_counter()
            try:
                text = self.extractor.extract(doc.text)
            except Exception as e:  # noqa: BLE001 - timeout, crash or a bug: errors/, not a crash
                kind = type(e).__name__
                reason = {"ExtractionTimeout": "timeout", "ExtractionCrashed": "crashed"}.get(
                    kind, "extraction_error"
                )
                return error(name, reason, f"{kind}: {e}", keep_text=True)
            finally:
                out.events.append((f"{name}.time_us", int((time.perf_counter() - start) * 1e6)))
            if explain:
                out.trace.append(
                    {
                        "step": name,
                        "verdict": "keep" if text else "drop",
                        "reason": None if text else "empty",
                        "explain": {"html_chars": len(doc.text), "text_chars": len(text or "")},
                    }
                )
            if not text:
                doc.text = ""
                return drop(name, "empty")
            doc.text = text
            out.events.append((f"{name}.kept", 1))
        if not apply_filters(self.filters, names["filters"]):
            return out
        current = doc
        for fmt, name in zip(self.formatters, names["formatters"], strict=True):
            out.events.append((f"{name}.in", 1))
            start = time.perf_counter()
            try:
                current = fmt.format(current)
            except Exception as e:  # noqa: BLE001
                doc = current
                return error(name, "formatter_error", f"{type(e).__name__}: {e}", keep_text=True)
            finally:
                out.events.append((f"{name}.time_us", int((time.perf_counter() - start) * 1e6)))
            out.events.append((f"{name}.kept", 1))
        out.category, out.doc = "documents", current
        out.events.append(("documents", 1))
        return out

    # -- the Beam run -------------------------------------------------------------------------
    def files(self) -> list[str]:
        """Input files: globs or files, local or bucket URLs (``common.input_files``)."""
        from beam_pipelines import common

        return common.input_files(self.input)

    def run(self, beam_args: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
        """Run the pipeline; returns the stats written to ``stats.json`` (then ``COMPLETED``)."""
        import apache_beam as beam
        from apache_beam.io.filesystems import FileSystems

        from beam_pipelines import common

        files = self.files()
        options = common.pipeline_options(beam_args)
        shards = self.num_shards or max(1, len(files))
        output_dir = self.output_dir
        local = common.is_local(beam_args) and not common.is_remote(output_dir)
        if local:
            common.make_dirs(FileSystems.join(output_dir, "documents"))
        start = time.time()
        with common.Progress(output_dir, unit="page", enabled=progress and local):
            pipeline = beam.Pipeline(options=options)
            _ = (
                pipeline
                | "Files" >> beam.Create(files)
                | "ReadFile" >> beam.ParDo(ReadFileFn())
                | "Spread" >> beam.Reshuffle()
                | "ProcessPage" >> beam.ParDo(ProcessPageFn(self, output_dir if local else None))
                | "Write" >> common.WriteShards(output_dir, shards)
            )
            result = pipeline.run()
            result.wait_until_finish()
        counters = common.collect_counters(result)
        stats = self.stats(counters, time.time() - start, files, beam_args)
        common.write_json(FileSystems.join(output_dir, "stats.json"), stats)  # local or gs://
        common.mark_completed(output_dir)
        return stats

    def stats(
        self, counters: dict[str, int], wall_s: float, files: list[str], beam_args: Any
    ) -> dict[str, Any]:
        """stats.json: per step documents in, kept, dropped per reason, errors, time."""
        steps = []
        for name, kind in self.ordered_steps():
            prefix = f"{name}."
            dropped = {
                k[len(prefix) + 8 :]: v
                for k, v in counters.items()
                if k.startswith(prefix + "dropped.")
            }
            errors = {
                k[len(prefix) + 7 :]: v
                for k, v in counters.items()
                if k.startswith(prefix + "errors.")
            }
            if name == "read":
                skipped = {
                    k[len("read.skipped.") :]: v
                    for k, v in counters.items()
                    if k.startswith("read.skipped.")
                }
                n_out = counters.get("read.out", 0)
                steps.append(
                    {
                        "name": "read",
                        "kind": kind,
                        "files": len(files),
                        "records": n_out + sum(skipped.values()) + sum(errors.values()),
                        "out": n_out,
                        "skipped": skipped,
                        "errors": errors,
                    }
                )
                continue
            steps.append(
                {
                    "name": name,
                    "kind": kind,
                    "in": counters.get(prefix + "in", 0),
                    "kept": counters.get(prefix + "kept", 0),
                    "dropped": dropped,
                    "errors": errors,
                    "time_s": round(counters.get(prefix + "time_us", 0) / 1e6, 3),
                }
            )
        pages = counters.get("read.out", 0)
        removed = {s["name"]: sum(s["dropped"].values()) for s in steps if s.get("dropped")}
        n_errors = sum(sum(s["errors"].values()) for s in steps)
        return {
            "input": self.input if isinstance(self.input, str) else list(self.input),
            "output_dir": self.output_dir,
            "runner": _runner(beam_args),
            "pages": pages,
            "documents": counters.get("documents", 0),
            "removed": removed,
            "errors": n_errors,
            "wall_time_s": round(wall_s, 3),
            "pages_per_s": round(pages / wall_s, 3) if wall_s > 0 else None,
            "steps": steps,
            "counters": dict(sorted(counters.items())),
        }


def _runner(beam_args: Any) -> str:
    from beam_pipelines import common

    return common.runner_name(beam_args)


# ----------------------------------------------------------------------------------------------
# DoFns (module level so Beam pickles them by reference)

import apache_beam as beam  # noqa: E402


@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """``path`` itself when local; else a streamed temporary copy (gs://, s3://, hdfs://...)."""
    if "://" not in path:
        yield path
        return
    import shutil
    import tempfile

    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from beam_pipelines.common import file_name

    suffix = "".join(file_name(path).partition(".")[1:])
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.flush()
        yield tmp.name


class ReadFileFn(beam.DoFn):
    """One input file → its pages, text documents and error records; skips are only counted."""

    def process(self, path: str) -> Iterator[ReadItem]:
        from beam_pipelines import common

        skipped: dict[str, int] = {}
        with _local_copy(path) as local_path:
            for item in read_any(local_path):
                if item.kind == "skip":
                    skipped[item.reason] = skipped.get(item.reason, 0) + 1
                    continue
                if local_path != path and item.doc is not None:
                    item.doc.metadata["source"] = path
                yield item
        for reason, n in skipped.items():
            common.count(f"read.skipped.{_reason_key(reason)}", n)


class ProcessPageFn(beam.DoFn):
    """Runs :meth:`FinewebPipeline.process_item`; emits ``(category, Document)``."""

    def __init__(self, spec: FinewebPipeline, progress_dir: str | None):
        self.spec = spec
        self.progress_dir = progress_dir
        self.names: dict[str, list[str]] | None = None
        self.heartbeat: Any = None

    def setup(self) -> None:
        from beam_pipelines import common

        self.names = self.spec.step_names()
        self.heartbeat = common.Heartbeat(self.progress_dir)

    def process(self, item: ReadItem) -> Iterator[tuple[str, Document]]:
        from beam_pipelines import common

        outcome = self.spec.process_item(item, self.names)
        for name, n in outcome.events:
            common.count(name, n)
        self.heartbeat.tick()
        if outcome.category:
            yield outcome.category, outcome.doc

    def finish_bundle(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.tick(0, force=True)

    def teardown(self) -> None:
        close = getattr(self.spec.extractor, "close", None)
        if callable(close):
            close()


# ----------------------------------------------------------------------------------------------
# gin entry point


@gin.configurable("build", module="fineweb")
def build(
    input: Any = gin.REQUIRED,  # noqa: A002 - the name users bind in gin
    output_dir: str = gin.REQUIRED,
    extractor: Any = None,
    pre_filters: Sequence[Any] = (),
    filters: Sequence[Any] = (),
    formatters: Sequence[Any] = (),
    num_shards: int = 0,
    max_page_chars: int = 10_000_000,
) -> FinewebPipeline:
    """The FineWeb-style pipeline, configured (run it with ``.run(beam_args)``).

    Args:
      input: glob (or list of globs) of ``.warc[.gz]``, ``.jsonl[.gz]`` or ``.html[.gz]`` files.
      output_dir: where ``documents/``, ``removed/``, ``errors/``, ``stats.json`` and
        ``COMPLETED`` go (a local path or any Beam filesystem URL).
      extractor: ``@extractors.trafilatura()``; None for already-extracted text input.
      pre_filters: filters applied to the raw page before extraction (FineWeb: ``url``).
      filters: filters applied in order after extraction; the first drop wins.
      formatters: rewrite the kept documents (e.g. ``@formatters.pii()``).
      num_shards: shards per output category; 0 = one per input file.
      max_page_chars: pages larger than this go to ``errors/`` (``page_too_large``) unextracted.
    """
    return FinewebPipeline(
        input=input,
        output_dir=output_dir,
        extractor=extractor,
        pre_filters=list(pre_filters or ()),
        filters=list(filters or ()),
        formatters=list(formatters or ()),
        num_shards=num_shards,
        max_page_chars=max_page_chars,
    )
