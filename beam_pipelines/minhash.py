"""MinHash near-duplicate removal on Apache Beam, every stage parallel (FineWeb's settings).

One pipeline when ``rounds_per_pipeline`` rounds of connected components suffice (the usual
case), more when they do not:

    1. files ─► Sign (per file, batches of documents: FineWeb signatures, framework/data/signatures.py)
             ─► (band key, node) for each of the 14 bands
             ─► GroupByKey(band key) ─► candidate edges: each node of a bucket → the bucket's
                smallest node (a star, not all pairs) ─► Distinct
             ─► connected components, ``rounds`` × (large-star, small-star), each a GroupByKey
             ─► edges written to OUTPUT_DIR/.minhash_work/   (+ the last round's change count)
             ─► *speculatively*, the outputs of step 3 from these edges.
       If the last round changed nothing, the edges are final stars and the outputs stand (no
       second pipeline, whose start-up would cost seconds). Otherwise they are deleted, and:
    2. while the last round still changed something: another pipeline of rounds from the files;
    3. edges (now stars: every duplicate → its component's smallest node)
             ─► clusters.jsonl (one line per cluster, grouped by kept node)
             ─► removals grouped by input file ⋈ files ─► per file: documents/NNNNN.jsonl.gz,
                removed/minhash/NNNNN.jsonl.gz, errors/NNNNN.jsonl.gz
       then stats.json and COMPLETED.

A *node* is ``(document id, file index, line index)``; tuples compare by id first, so the node
kept for a cluster — the component minimum — is the document with the **smallest id** (ties, i.e.
the same id twice in the input, by input position). The choice does not depend on sharding,
worker count or scheduling.

Connected components use the large-star / small-star algorithm (Kiveris et al., "Connected
Components in MapReduce and Beyond", 2014): large-star links every larger neighbour of a node to
the node's smallest neighbourhood member; small-star links a node and its smaller neighbours to
the smallest of them. A round changes nothing exactly when every component is a star around its
minimum, which the rounds count (``cc.round<k>.changes``).

Memory: no step holds more than one key's values — one bucket's nodes (at most the number of
documents sharing those 8 hashes), one node's neighbour ids, one input file's removal map or one
file's documents. Signatures never leave the worker that computed them except as 14 band keys
per document. Documents with fewer than 5 words have no signature: they pass through unchanged
and are counted (``no_signature``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import gin
import numpy as np

from beam_pipelines import common
from framework.data.document import Document, shard_name
from framework.data.signatures import (
    MinHashConfig,
    SignatureComputer,
    iter_batches,
    jaccard,
    signatures,
)

Node = tuple[str, int, int]  # (document id, file index, line index)
WORK_DIR = ".minhash_work"
OWNED_OUTPUTS = ["documents", "removed", "errors", "clusters.jsonl", "stats.json", WORK_DIR]


# ----------------------------------------------------------------------------------------------
# reading


def error_document(path: str, line_no: int, error: str, raw: str) -> Document:
    return Document(
        id=f"{common.file_name(path)}:{line_no + 1}",
        text=raw[:100_000],
        metadata={"error": f"malformed_record: {error}", "stage": "minhash", "source": path},
    )


# ----------------------------------------------------------------------------------------------
# stage 1: signatures → band keys


class SignFileFn(beam.DoFn):
    """One input file → ``(band key, node)`` for every document with a signature.

    Documents are signed in batches (one spaCy call for the batch's new words, one numpy
    computation for the batch's permutations). With ``emit_shingles`` the shingle hashes of each
    node also go to the ``shingles`` output (for the exact-Jaccard check).
    """

    def __init__(
        self,
        config: MinHashConfig,
        batch_size: int,
        progress_dir: str | None,
        emit_shingles: bool = False,
    ):
        self.config = config
        self.batch_size = batch_size
        self.progress_dir = progress_dir
        self.emit_shingles = emit_shingles

    def setup(self) -> None:

        self.computer = SignatureComputer(self.config)
        self.heartbeat = common.Heartbeat(self.progress_dir)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:

        file_index, path = element
        cfg = self.config
        docs = errors = short = 0

        def valid() -> Iterator[tuple[int, Document]]:
            nonlocal errors
            for line_no, doc, _error, _raw in common.read_document_records(path):
                if doc is None:
                    errors += 1  # written to errors/ by stage 2, which reads the file again
                else:
                    yield line_no, doc

        for batch in iter_batches(valid(), self.batch_size):
            shingles = self.computer.shingles_many([d.text for _, d in batch])
            have = [i for i, s in enumerate(shingles) if s.size]
            short += len(batch) - len(have)
            docs += len(batch)
            if have:
                sigs = signatures(
                    np.concatenate([shingles[i] for i in have]),
                    [shingles[i].size for i in have],
                    cfg,
                )
                bands = sigs.reshape(len(have), cfg.num_buckets, cfg.hashes_per_bucket)
                for row, i in enumerate(have):
                    line_no, doc = batch[i]
                    node = (doc.id, file_index, line_no)
                    for b in range(cfg.num_buckets):
                        yield b.to_bytes(2, "little") + bands[row, b].tobytes(), node
                    if self.emit_shingles:
                        yield beam.pvalue.TaggedOutput("shingles", (node, shingles[i].tobytes()))
            self.heartbeat.tick(len(batch))
        common.count("documents_in", docs)
        common.count("signed", docs - short)
        common.count("no_signature", short)
        common.count("malformed", errors)

    def finish_bundle(self) -> None:
        self.heartbeat.tick(0, force=True)


def bucket_edges(element: tuple[bytes, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:
    """One bucket → edges (member, smallest member); two passes over the group, no copy."""

    _key, nodes = element
    smallest = None
    size = 0
    for node in nodes:
        size += 1
        if smallest is None or node < smallest:
            smallest = node
    if size < 2:
        return
    common.count("buckets_with_duplicates")
    common.count("candidate_edges", size - 1)
    for node in nodes:
        if node != smallest:
            yield node, smallest


# ----------------------------------------------------------------------------------------------
# connected components: large-star / small-star


def _both_directions(edge: tuple[Node, Node]) -> Iterator[tuple[Node, Node]]:
    a, b = edge
    yield a, b
    yield b, a


def _towards_smaller(edge: tuple[Node, Node]) -> tuple[Node, Node]:
    a, b = edge
    return (a, b) if b < a else (b, a)


class LargeStar(beam.DoFn):
    """Node u, all neighbours → (v, m) for each neighbour v > u, m = min(neighbours ∪ {u})."""

    def __init__(self, round_index: int):
        self.counter = f"cc.round{round_index}.changes"

    def process(self, element: tuple[Node, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:

        u, neighbours = element
        m = u
        has_larger = False
        for v in neighbours:
            if v < m:
                m = v
            if v > u:
                has_larger = True
        if has_larger and m != u:  # u's larger neighbours move to a smaller centre
            common.count(self.counter)
        for v in neighbours:
            if v > u:
                yield v, m


class SmallStar(beam.DoFn):
    """Node u, its smaller neighbours N → (v, m) for v in N ∪ {u}, v ≠ m, m = min(N)."""

    def __init__(self, round_index: int):
        self.counter = f"cc.round{round_index}.changes"

    def process(self, element: tuple[Node, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:

        u, smaller = element
        m = min(smaller)
        moved = False
        for v in smaller:
            if v != m:
                moved = True
                yield v, m
        if moved:  # u had several distinct smaller neighbours: not yet a star
            common.count(self.counter)
        yield u, m


class ConnectedComponentRounds(beam.PTransform):
    """``rounds`` × (large-star, small-star) on an edge PCollection; output edges point to
    smaller nodes."""

    def __init__(self, first_round: int, rounds: int):
        super().__init__()
        self.first_round = first_round
        self.rounds = rounds

    def expand(self, edges):
        for k in range(self.first_round, self.first_round + self.rounds):
            edges = (
                edges
                | f"LargeStarMap{k}" >> beam.FlatMap(_both_directions)
                | f"LargeStarGroup{k}" >> beam.GroupByKey()
                | f"LargeStar{k}" >> beam.ParDo(LargeStar(k))
                | f"SmallStarMap{k}" >> beam.Map(_towards_smaller)
                | f"SmallStarGroup{k}" >> beam.GroupByKey()
                | f"SmallStar{k}" >> beam.ParDo(SmallStar(k))
            )
        return edges


def _edge_to_line(edge: tuple[Node, Node]) -> str:
    return json.dumps(edge, ensure_ascii=False)


def _line_to_edge(line: str) -> tuple[Node, Node]:
    a, b = json.loads(line)
    return tuple(a), tuple(b)


class _WriteLinesFn(beam.DoFn):
    def __init__(self, prefix: str):
        self.prefix = prefix

    def process(self, element: tuple[int, Iterable[str]]) -> Iterator[str]:
        from apache_beam.io.filesystems import FileSystems

        part, lines = element
        path = f"{self.prefix}-{part:05d}.jsonl"
        with FileSystems.create(path) as f:
            f.write("".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass"))
        yield path


class WriteLines(beam.PTransform):
    """Lines → ``<prefix>-NNNNN.jsonl``, written by a DoFn (not ``WriteToText``, whose finalize
    step does not run on every runner, e.g. Beam's Dask runner)."""

    def __init__(self, prefix: str, parts: int = 16):
        super().__init__()
        self.prefix = prefix
        self.parts = max(1, parts)

    def expand(self, pcoll):
        parts = self.parts
        return (
            pcoll
            | "KeyByPart" >> beam.Map(lambda line: (_stable_shard(line, parts), line))
            | "GroupByPart" >> beam.GroupByKey()
            | "WritePart" >> beam.ParDo(_WriteLinesFn(self.prefix))
        )


def read_lines(pipeline: beam.Pipeline, prefix: str, label: str) -> beam.PCollection:
    """Lines of the files :class:`WriteLines` wrote under ``prefix`` (matched now)."""
    from apache_beam.io.filesystems import FileSystems

    paths = sorted(m.path for r in FileSystems.match([prefix + "*"]) for m in r.metadata_list)
    return (
        pipeline
        | f"{label}Files" >> beam.Create(paths)
        | f"{label}Lines" >> beam.FlatMap(_file_lines)
    )


def _file_lines(path: str) -> Iterator[str]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        for line in io.TextIOWrapper(f, encoding="utf-8", errors="surrogatepass"):
            if line.strip():
                yield line.rstrip("\n")


# ----------------------------------------------------------------------------------------------
# optional: exact Jaccard of every candidate pair


def _pair_with_left(element: tuple[Node, dict[str, list]]) -> Iterator[tuple[Node, tuple]]:
    _u, grouped = element
    for shingles in grouped["shingles"]:
        for v in grouped["edges"]:
            yield v, (shingles,)


class PairJaccard(beam.DoFn):
    """(v, {shingles of v, shingles of each u paired with v}) → exact Jaccard counters."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, element: tuple[Node, dict[str, list]]) -> Iterator[float]:
        import numpy as np

        _v, grouped = element
        for mine in grouped["shingles"]:
            a = np.frombuffer(mine, dtype=np.uint64)
            for (theirs,) in grouped["left"]:
                similarity = jaccard(a, np.frombuffer(theirs, dtype=np.uint64))
                common.count("verify.pairs")
                if similarity < self.threshold:
                    common.count("verify.false_positives")
                common.count(f"verify.jaccard_ge_{int(similarity * 10) / 10:.1f}")
                yield similarity


# ----------------------------------------------------------------------------------------------
# stage 2: clusters and filtered shards


def _removal(edge: tuple[Node, Node]) -> tuple[Node, Node]:
    return _towards_smaller(edge)


def _cluster_line(element: tuple[Node, Iterable[Node]]) -> tuple[int, str]:

    kept, removed = element
    removed_ids = sorted(n[0] for n in removed)
    common.count("clusters")
    common.count("cluster_members_removed", len(removed_ids))
    line = json.dumps(
        {"kept": kept[0], "removed": removed_ids, "size": len(removed_ids) + 1},
        ensure_ascii=False,
    )
    return _stable_shard(kept[0]), line


def _stable_shard(text: str, shards: int = 16) -> int:
    import hashlib

    return (
        int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:4], "little")
        % shards
    )


class WriteClusterPart(beam.DoFn):
    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def process(self, element: tuple[int, Iterable[str]]) -> Iterator[str]:
        from apache_beam.io.filesystems import FileSystems

        part, lines = element
        path = FileSystems.join(self.work_dir, "clusters", f"{part:05d}.jsonl")
        body = "".join(line + "\n" for line in sorted(lines)).encode("utf-8", "surrogatepass")
        with FileSystems.create(path) as f:
            f.write(body)
        yield path


class FilterFileFn(beam.DoFn):
    """One input file and its removal map → documents/, removed/minhash/, errors/ shards."""

    def __init__(self, output_dir: str, formatters: Sequence[Any]):
        self.output_dir = output_dir
        self.formatters = list(formatters)

    def process(self, element: tuple[int, dict[str, list]]) -> Iterator[str]:
        from apache_beam.io.filesystems import FileSystems

        file_index, grouped = element
        if not grouped["path"]:
            return
        path = grouped["path"][0]
        removal: dict[int, str] = dict(grouped["removed"])
        kept: list[Document] = []
        removed: list[Document] = []
        errors: list[Document] = []
        for line_no, doc, error, raw in common.read_document_records(path):
            if doc is None:
                errors.append(error_document(path, line_no, error or "", raw))
                continue
            if line_no in removal:
                doc.metadata["filter_reason"] = "minhash"
                doc.metadata["duplicate_of"] = removal[line_no]
                removed.append(doc)
                continue
            for fmt in self.formatters:
                doc = fmt.format(doc)
            kept.append(doc)
        name = shard_name(file_index)
        for category, docs in (
            ("documents", kept),
            ("removed/minhash", removed),
            ("errors", errors),
        ):
            if docs or category == "documents":
                target = FileSystems.join(self.output_dir, category, name)
                common.write_shard(target, docs)
                common.count(f"written.{category}", len(docs))
                yield target


def _removal_by_file(element: tuple[Node, Node]) -> tuple[int, tuple[int, str]]:
    node, kept = element
    return node[1], (node[2], kept[0])


# ----------------------------------------------------------------------------------------------
# the configured pipeline


@dataclasses.dataclass
class MinhashPipeline:
    """The configured MinHash dedup (see :func:`build`)."""

    input: Any
    output_dir: str
    config: MinHashConfig = dataclasses.field(default_factory=MinHashConfig)
    formatters: Sequence[Any] = ()
    batch_size: int = 256
    rounds_per_pipeline: int = 4
    max_rounds: int = 64
    verify_jaccard: bool = False
    jaccard_threshold: float = 0.72

    def files(self) -> list[str]:
        """Input files: local globs or run directories, or the same as bucket URLs."""
        return common.input_files(self.input)

    def run(self, beam_args: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
        """Run every pipeline; writes the outputs, stats.json and COMPLETED; returns the stats."""
        from apache_beam.io.filesystems import FileSystems

        files = self.files()
        options = common.pipeline_options(beam_args)
        local = common.is_local(beam_args)
        work = FileSystems.join(self.output_dir, WORK_DIR)
        counters: dict[str, int] = {}
        timings: dict[str, float] = {}
        start = time.time()

        # -- pipeline 1: signatures, buckets, candidate edges, first rounds ----------------------
        edges_prefix = FileSystems.join(work, "edges_r0", "part")
        with common.Progress(self.output_dir, unit="doc", enabled=progress and local):
            p = beam.Pipeline(options=options)
            signed = (
                p
                | "Files" >> beam.Create(list(enumerate(files)))
                | "SpreadFiles" >> beam.Reshuffle()
                | "Sign"
                >> beam.ParDo(
                    SignFileFn(
                        self.config,
                        self.batch_size,
                        self.output_dir if local else None,  # heartbeats: local files only
                        emit_shingles=self.verify_jaccard,
                    )
                ).with_outputs("shingles", main="bands")
            )
            edges = (
                signed.bands
                | "GroupBuckets" >> beam.GroupByKey()
                | "BucketEdges" >> beam.FlatMap(bucket_edges)
                | "DistinctEdges" >> beam.Distinct()
            )
            if self.verify_jaccard:
                left = (
                    {
                        "edges": edges | "ByLeft" >> beam.Map(lambda e: (e[1], e[0])),
                        "shingles": signed.shingles,
                    }
                    | "JoinLeft" >> beam.CoGroupByKey()
                    | "PairLeft" >> beam.FlatMap(_pair_with_left)
                )
                jaccard = (
                    {"left": left, "shingles": signed.shingles}
                    | "JoinRight" >> beam.CoGroupByKey()
                    | "Jaccard" >> beam.ParDo(PairJaccard(self.jaccard_threshold))
                )
            rounds = min(self.rounds_per_pipeline, self.max_rounds)
            stars = edges | "CC" >> ConnectedComponentRounds(1, rounds)
            written = (
                stars
                | "EdgeLines" >> beam.Map(_edge_to_line)
                | "WriteEdges" >> WriteLines(edges_prefix, len(files))
            )
            sinks = [written, self._clusters_and_shards(p, stars, files, work)]
            if self.verify_jaccard:
                sinks.append(jaccard)
            _ = tuple(sinks) | "AllSinks" >> beam.Flatten()  # Dask runs the last sink only
            result = p.run()
            result.wait_until_finish()
        timings["first_pipeline_s"] = time.time() - start
        counters.update(common.collect_counters(result))
        done_rounds = first_rounds = rounds
        if counters.get(f"cc.round{done_rounds}.changes", 0):
            self._discard_outputs(work)  # built from edges that were not final stars yet

        # -- more rounds while the last one changed something -----------------------------------
        while counters.get(f"cc.round{done_rounds}.changes", 0) and done_rounds < self.max_rounds:
            rounds = min(self.rounds_per_pipeline, self.max_rounds - done_rounds)
            t = time.time()
            next_prefix = FileSystems.join(work, f"edges_r{done_rounds}", "part")
            p = beam.Pipeline(options=options)
            _ = (
                read_lines(p, edges_prefix, "ReadEdges")
                | "ParseEdges" >> beam.Map(_line_to_edge)
                | "CC" >> ConnectedComponentRounds(done_rounds + 1, rounds)
                | "EdgeLines" >> beam.Map(_edge_to_line)
                | "WriteEdges" >> WriteLines(next_prefix, len(files))
            )
            result = p.run()
            result.wait_until_finish()
            counters.update(common.collect_counters(result))
            edges_prefix = next_prefix
            done_rounds += rounds
            timings["extra_rounds_s"] = timings.get("extra_rounds_s", 0.0) + time.time() - t
        converged = counters.get(f"cc.round{done_rounds}.changes", 0) == 0
        if not converged:
            raise RuntimeError(
                f"connected components did not converge in max_rounds={self.max_rounds}"
            )

        # -- pipeline 3 (only after extra rounds): clusters, filtered shards --------------------
        if done_rounds > first_rounds:
            t = time.time()
            p = beam.Pipeline(options=options)
            stars = read_lines(p, edges_prefix, "ReadEdges") | "ParseEdges" >> beam.Map(
                _line_to_edge
            )
            _ = self._clusters_and_shards(p, stars, files, work)
            result = p.run()
            result.wait_until_finish()
            counters.update(common.collect_counters(result))
            timings["clusters_and_shards_s"] = time.time() - t

        self._concatenate_clusters(work)
        wall = time.time() - start
        stats = self.stats(counters, timings, wall, files, done_rounds, beam_args)
        common.write_json(FileSystems.join(self.output_dir, "stats.json"), stats)
        common.remove(work)
        common.mark_completed(self.output_dir)
        return stats

    def _clusters_and_shards(self, p, stars, files: list[str], work: str):
        """Star edges → cluster parts under ``work`` and the filtered shards; one sink."""
        removals = stars | "Removal" >> beam.Map(_removal) | "OneCentre" >> beam.CombinePerKey(min)
        cluster_parts = (
            removals
            | "ByCentre" >> beam.Map(lambda e: (e[1], e[0]))
            | "GroupClusters" >> beam.GroupByKey()
            | "ClusterLine" >> beam.Map(_cluster_line)
            | "GroupParts" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(WriteClusterPart(work))
        )
        shards = (
            {
                "path": p | "FileList" >> beam.Create(list(enumerate(files))),
                "removed": removals | "ByFile" >> beam.Map(_removal_by_file),
            }
            | "JoinFiles" >> beam.CoGroupByKey()
            | "FilterFiles" >> beam.ParDo(FilterFileFn(self.output_dir, self.formatters))
        )
        return (cluster_parts, shards) | "ClusterSinks" >> beam.Flatten()

    def _discard_outputs(self, work: str) -> None:
        """Delete the speculative cluster parts and shards (the next pipelines rewrite them)."""
        from apache_beam.io.filesystems import FileSystems

        patterns = [FileSystems.join(work, "clusters", "*.jsonl")] + [
            FileSystems.join(self.output_dir, category, "*.jsonl.gz")
            for category in ("documents", "removed/minhash", "errors")
        ]
        paths = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
        if paths:
            FileSystems.delete(paths)

    def _concatenate_clusters(self, work: str) -> None:
        """clusters.jsonl = the sorted parts, streamed in order (never loaded whole)."""
        from apache_beam.io.filesystems import FileSystems

        parts = sorted(
            m.path
            for r in FileSystems.match([FileSystems.join(work, "clusters", "*.jsonl")])
            for m in r.metadata_list
        )
        with FileSystems.create(FileSystems.join(self.output_dir, "clusters.jsonl")) as out:
            for part in parts:
                with FileSystems.open(part) as f:
                    shutil.copyfileobj(f, out)

    def stats(self, counters, timings, wall, files, rounds, beam_args) -> dict[str, Any]:

        docs = counters.get("documents_in", 0)
        stats = {
            "input": self.input if isinstance(self.input, str) else list(self.input),
            "output_dir": self.output_dir,
            "runner": common.runner_name(beam_args),
            "config": dataclasses.asdict(self.config),
            "files": len(files),
            "documents": docs,
            "signed": counters.get("signed", 0),
            "no_signature": counters.get("no_signature", 0),
            "malformed": counters.get("malformed", 0),
            "buckets_with_duplicates": counters.get("buckets_with_duplicates", 0),
            "candidate_edges": counters.get("candidate_edges", 0),
            "cc_rounds": rounds,
            "clusters": counters.get("clusters", 0),
            "removed": counters.get("written.removed/minhash", 0),
            "kept": counters.get("written.documents", 0),
            "keep_rule": "smallest document id of each cluster (ties: earliest input position)",
            "wall_time_s": round(wall, 3),
            "documents_per_s": round(docs / wall, 3) if wall > 0 else None,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "counters": dict(sorted(counters.items())),
        }
        if self.verify_jaccard:
            pairs = counters.get("verify.pairs", 0)
            fp = counters.get("verify.false_positives", 0)
            stats["verify_jaccard"] = {
                "threshold": self.jaccard_threshold,
                "candidate_pairs": pairs,
                "false_positives": fp,
                "false_positive_rate": round(fp / pairs, 6) if pairs else 0.0,
                "histogram": {
                    k[len("verify.jaccard_ge_") :]: v
                    for k, v in sorted(counters.items())
                    if k.startswith("verify.jaccard_ge_")
                },
            }
        return stats


@gin.configurable("build", module="minhash")
def build(
    input: Any = gin.REQUIRED,  # noqa: A002 - the name users bind in gin
    output_dir: str = gin.REQUIRED,
    n_grams: int = 5,
    num_buckets: int = 14,
    hashes_per_bucket: int = 8,
    seed: int = 1,
    hash_fc: str = "sha1",
    precision: int = 64,
    formatters: Sequence[Any] = (),
    batch_size: int = 256,
    rounds_per_pipeline: int = 4,
    max_rounds: int = 64,
    verify_jaccard: bool = False,
    jaccard_threshold: float = 0.72,
) -> MinhashPipeline:
    """The MinHash dedup, configured (run it with ``.run(beam_args)``).

    Args:
      input: glob (or list of globs, or a run directory) of ``documents/*.jsonl.gz`` shards.
      output_dir: where documents/, removed/minhash/, errors/, clusters.jsonl, stats.json and
        COMPLETED go (local path or Beam filesystem URL).
      n_grams, num_buckets, hashes_per_bucket, seed: FineWeb: 5, 14, 8, 1.
      hash_fc: shingle hash, "sha1" (FineWeb) or "xxhash" (datatrove's default); precision 64/32.
      formatters: applied to kept documents (FineWeb anonymises PII after dedup).
      batch_size: documents signed together (one spaCy call, one numpy computation).
      rounds_per_pipeline: connected-component rounds unrolled into one Beam pipeline; more
        pipelines follow until a round changes nothing (at most ``max_rounds``).
      verify_jaccard: also compute the exact Jaccard similarity of every candidate pair and
        count pairs below ``jaccard_threshold`` as false positives (stats.json).
    """
    try:
        config = MinHashConfig(n_grams, num_buckets, hashes_per_bucket, seed, hash_fc, precision)
    except ValueError as error:
        from framework.core.errors import ConfigError

        raise ConfigError(f"minhash.build: {error}") from None
    return MinhashPipeline(
        input=input,
        output_dir=output_dir,
        config=config,
        formatters=list(formatters or ()),
        batch_size=batch_size,
        rounds_per_pipeline=max(1, rounds_per_pipeline),
        max_rounds=max(1, max_rounds),
        verify_jaccard=verify_jaccard,
        jaccard_threshold=jaccard_threshold,
    )
