"""Streaming readers for the data stage: WARC / ARC (plain or gzip), JSON Lines documents, single
HTML pages.

Every reader yields :class:`ReadItem` values, one per record, and never raises on bad data:

* ``kind == "page"``: an HTML page to extract (``doc.text`` holds the decoded HTML);
* ``kind == "text"``: a document whose ``text`` is already plain text (JSONL input with ``text``);
* ``kind == "skip"``: a record that is not a page (``revisit``, ``request``, ``warcinfo``,
  ``metadata``, non-HTML responses, ...) — counted by ``reason``, not written anywhere;
* ``kind == "error"``: a record that could not be read (truncated gzip member, malformed WARC
  header, undecodable payload, bad JSON line, empty file, ...). ``doc.metadata["error"]`` says
  what went wrong; the pipeline writes it to ``errors/``.

WARC and ARC records are parsed by ``warcio`` (ARC records are read as the same kind of response);
this module maps them to items and keeps reading after a damaged record.

Ids (stable across runs): the ``WARC-Record-ID`` for WARC input, ``<file>#<offset>`` for ARC
records (ARC has no record ids), the input's own ``id`` for JSONL, the file name without
extensions for a single HTML file. Error records without an id get ``<file>#<offset>``
(WARC/ARC: byte offset in the decompressed stream) or ``<file>#L<line>`` (JSONL).

Reading is streaming (one record in memory at a time) and splittable across workers by file.
Charset: UTF-8 when the bytes are valid UTF-8, else the encoding ``charset_normalizer`` detects
from the bytes; a payload that decodes under neither is an error record.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import json
import os
import re
import zlib
from collections.abc import Generator, Iterator
from typing import IO, Any

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord, ArcWarcRecordLoader
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser

from framework.data.document import Document

HTML_TYPES = ("text/html", "application/xhtml+xml")
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz", ".xhtml")


@dataclasses.dataclass
class ReadItem:
    """One record from an input file (see the module docstring for the kinds)."""

    kind: str  # "page" | "text" | "skip" | "error"
    doc: Document | None = None
    reason: str = ""


def error_item(doc_id: str, source: str, error: str, **metadata: Any) -> ReadItem:
    meta = {"error": error, "stage": "read", "source": source, **metadata}
    return ReadItem(
        "error", Document(id=doc_id, text="", metadata=meta), reason=error.split(":")[0]
    )


# ----------------------------------------------------------------------------------------------
# charset


def decode_html(body: bytes) -> tuple[str | None, str]:
    """Decode page bytes: UTF-8 if valid, else the detected encoding. Returns (text|None, charset)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    if best is None or best.encoding is None:
        return None, ""
    try:
        return body.decode(best.encoding), best.encoding
    except (UnicodeDecodeError, LookupError):
        return None, best.encoding


_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\ufffd]")


def looks_binary(text: str) -> bool:
    """True for decoded text that is mostly control characters (a garbage payload, not a page)."""
    sample = text[:4096]
    if not sample:
        return False
    return len(_CONTROL_RE.findall(sample)) / len(sample) > 0.1


# ----------------------------------------------------------------------------------------------
# WARC and ARC (parsed by warcio; this module only maps records to ReadItems and recovers from
# damage, so one bad record costs one error record, not the rest of the file)

_BLOCK_SIZE = 1 << 16  # bytes warcio reads from the decompressed stream at a time
_SCAN_LINE = 1 << 16  # longest line read at once while looking for the next record
_HTTP_HEADERS = StatusAndHeadersParser([], verify=False)  # accepts any HTTP/x status line
_DECODED_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class _PushbackStream:
    """The decompressed input as warcio reads it: counts bytes, takes bytes back, defers errors.

    * ``tell()`` is the position in the decompressed stream (warcio's record offsets use it);
    * ``push`` hands back bytes warcio had buffered, so reading can resume at the next record
      after a header warcio could not parse;
    * a read that fails (truncated or corrupt gzip) ends the stream and is kept in ``error``:
      warcio reads ahead, so raising at once would lose the whole records still in its buffer.
      ``read1`` keeps each read to one step of the decompressor, so no decoded byte is lost.
    """

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self._pending = b""
        self._position = 0
        self.error: Exception | None = None

    def read(self, size: int | None = -1) -> bytes:
        if self._pending:
            cut = len(self._pending) if size is None or size < 0 else size
            data, self._pending = self._pending[:cut], self._pending[cut:]
        else:
            data = self._read_raw(size)
        self._position += len(data)
        return data

    def _read_raw(self, size: int | None) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self._raw.read1(-1 if size is None else size)  # type: ignore[attr-defined]
        except (EOFError, zlib.error, OSError) as error:  # gzip.BadGzipFile is an OSError
            self.error = error
            return b""

    def readline(self, limit: int = -1) -> bytes:
        """One line (at most ``limit`` bytes), for skipping ahead between records."""
        parts = []
        while limit != 0:
            if not self._pending:
                self._pending = self._read_raw(_BLOCK_SIZE)
                if not self._pending:
                    break
            end = self._pending.find(b"\n") + 1 or len(self._pending)
            end = end if limit < 0 else min(end, limit)
            parts.append(self._pending[:end])
            self._pending = self._pending[end:]
            limit -= end
            if parts[-1].endswith(b"\n"):
                break
        line = b"".join(parts)
        self._position += len(line)
        return line

    def at_end(self) -> bool:
        data = self.read(1)
        self.push(data)
        return not data

    def raise_error(self) -> None:
        """Raise the read error that ended the stream early, if one did."""
        if self.error is not None:
            raise self.error

    def tell(self) -> int:
        return self._position

    def push(self, data: bytes) -> None:
        self._pending = data + self._pending
        self._position -= len(data)


class _VerbatimUriLoader(ArcWarcRecordLoader):
    """warcio's record loader, keeping ``WARC-Target-URI`` exactly as written.

    warcio percent-encodes spaces in the URI; deepdive keeps the URL as the crawler recorded it
    and only unwraps wget's ``<...>`` itself (:func:`_strip_uri`).
    """

    def _ensure_target_uri_format(self, rec_headers: StatusAndHeaders) -> str | None:
        return rec_headers.get_header("WARC-Target-URI")


def _archive_iterator(stream: _PushbackStream) -> ArchiveIterator:
    """warcio's iterator over ``stream``; HTTP headers are parsed here, not by warcio.

    warcio only parses HTTP for ``http(s):`` URIs and would consume a non-HTTP block's first
    lines as headers; :func:`_read_payload` decides from the block itself, as deepdive always has.
    """
    iterator = ArchiveIterator(stream, no_record_parse=True, block_size=_BLOCK_SIZE)
    iterator.loader = _VerbatimUriLoader(verify_http=False, arc2warc=False)
    return iterator


@dataclasses.dataclass
class _RecordInfo:
    """The header fields deepdive uses, the same for WARC records and ARC records."""

    record_id: str
    offset: int  # of the record in the decompressed stream
    length: int | None  # declared block length; None when missing, not a number or negative
    rec_type: str
    url: str
    date: str
    block_type: str  # WARC Content-Type of the block ("application/http; ..."); "" for ARC
    payload_type: str  # WARC-Identified-Payload-Type: overrides the HTTP Content-Type
    fallback_type: str  # ARC's content-type field: used when there are no HTTP headers


def _strip_uri(uri: str) -> str:
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):  # wget writes <http://...>
        uri = uri[1:-1]
    return uri


def _iso_date(timestamp: str) -> str:
    """ARC's 14-digit archive date in WARC-Date's form (the text as it is when it is not one)."""
    try:
        return datetime.datetime.strptime(timestamp, "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return timestamp


def _record_info(record: ArcWarcRecord, source: str, offset: int) -> _RecordInfo:
    """Header fields of a record. ARC records have no id: theirs is ``<file>#<offset>``."""
    headers = record.rec_headers
    length = _declared_length(record)
    if record.format == "arc":
        return _RecordInfo(
            record_id=f"{source}#{offset}",
            offset=offset,
            length=length,
            rec_type="response" if record.rec_type == "response" else "warcinfo",
            url=_strip_uri(headers.get_header("uri") or ""),
            date=_iso_date(headers.get_header("archive-date") or ""),
            block_type="",
            payload_type="",
            fallback_type=headers.get_header("content-type") or "",
        )
    return _RecordInfo(
        record_id=headers.get_header("WARC-Record-ID") or f"{source}#{offset}",
        offset=offset,
        length=length,
        rec_type=(headers.get_header("WARC-Type") or "").lower(),
        url=_strip_uri(headers.get_header("WARC-Target-URI") or ""),
        date=headers.get_header("WARC-Date") or "",
        block_type=headers.get_header("Content-Type") or "",
        payload_type=headers.get_header("WARC-Identified-Payload-Type") or "",
        fallback_type="",
    )


def _declared_length(record: ArcWarcRecord) -> int | None:
    """The record's declared block length; None when missing, not a number or negative."""
    name = "length" if record.format == "arc" else "Content-Length"
    try:
        length = int(record.rec_headers.get_header(name) or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _normalise_codings(http: StatusAndHeaders) -> None:
    """Make warcio undo exactly the codings deepdive always undid.

    Chunking is matched case-insensitively; gzip (also ``x-gzip``) and deflate are decoded,
    any other content coding is left as stored, whatever optional decoders are installed.
    """
    transfer = http.get_header("Transfer-Encoding")
    if transfer is not None and "chunked" in transfer.lower():
        http.replace_header("Transfer-Encoding", "chunked")
    coding = http.get_header("Content-Encoding")
    if coding is not None:
        decoded = _DECODED_CODINGS.get(coding.strip().lower())
        if decoded:
            http.replace_header("Content-Encoding", decoded)
        else:
            http.remove_header("Content-Encoding")


def _read_payload(record: ArcWarcRecord) -> tuple[StatusAndHeaders | None, bytes]:
    """(HTTP headers or None, payload) of a response block.

    A block that starts with an HTTP status line is split by warcio's HTTP parser and its body
    de-chunked and decompressed by warcio; any other block is the payload as it is.
    """
    block = record.raw_stream
    first = block.readline()
    if not first.startswith(b"HTTP/"):
        return None, first + block.read()
    http = _HTTP_HEADERS.parse(block, first)
    _normalise_codings(http)
    record.http_headers = http
    return http, record.content_stream().read()


def _finish_block(record: ArcWarcRecord, info: _RecordInfo) -> None:
    """Read what is left of the block; EOFError when the file ends before its declared end."""
    block = record.raw_stream
    while block.read(_BLOCK_SIZE):
        pass
    missing = getattr(block, "limit", 0)  # warcio's LimitReader: bytes of the block not read
    if missing:
        length = info.length or 0
        raise EOFError(f"record {info.record_id} cut short: {length - missing} of {length} bytes")


def _is_html(declared: str, body: bytes) -> bool:
    if declared:
        return declared.split(";")[0].strip().lower() in HTML_TYPES
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in head


def _record_item(record: ArcWarcRecord, info: _RecordInfo, path: str) -> ReadItem:
    """A record with a valid length as a page, skip or error item (reads its whole block)."""
    if info.rec_type != "response":
        _finish_block(record, info)
        return ReadItem("skip", reason=info.rec_type or "untyped")
    http, body = _read_payload(record)
    _finish_block(record, info)
    return _response_item(info, http, body, path)


def _response_item(
    info: _RecordInfo, http: StatusAndHeaders | None, body: bytes, path: str
) -> ReadItem:
    """Page, skip (not HTML) or error (no HTTP status, undecodable payload) for a response."""
    has_status = http is not None and http.get_statuscode().isdigit()
    if not has_status and info.block_type.startswith("application/http"):
        return error_item(
            info.record_id,
            path,
            "garbage_payload: no HTTP status line",
            url=info.url,
            offset=info.offset,
        )
    http_type = (http.get_header("Content-Type") if http is not None else None) or ""
    if not _is_html(info.payload_type or http_type or info.fallback_type, body):
        return ReadItem("skip", reason="non_html")
    text, charset = decode_html(body)
    if text is None or looks_binary(text):
        return error_item(
            info.record_id,
            path,
            "garbage_payload: payload is not decodable text",
            url=info.url,
            offset=info.offset,
            bytes=len(body),
        )
    meta = {"url": info.url, "date": info.date, "source": path}
    if charset != "utf-8":
        meta["charset"] = charset
    return ReadItem("page", Document(id=info.record_id, text=text, metadata=meta))


def _open_archive(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """(decompressed stream, raw file). Python's gzip reads per-record and whole-file gzip alike
    and raises on a truncated or corrupt member, which warcio's own decompression would not."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _skip_blank_lines(stream: _PushbackStream) -> None:
    """Skip blank lines before the first record (warcio would read one as an empty header)."""
    while True:
        line = stream.readline(_SCAN_LINE)
        if line.strip() or not line:
            stream.push(line)
            return


def _skip_to_next_record(iterator: ArchiveIterator, stream: _PushbackStream) -> None:
    """Take back what warcio buffered and skip to the next line that starts a WARC record."""
    reader = iterator.reader
    if reader is not None:
        stream.push(reader.read(reader.rem_length()))
    at_line_start = True
    while True:
        line = stream.readline(_SCAN_LINE)
        if not line or (at_line_start and line.startswith(b"WARC/")):
            stream.push(line)
            return
        at_line_start = line.endswith(b"\n")


class _WarcReader:
    """Items of one decompressed WARC/ARC stream; goes on after a damaged record.

    warcio parses records until it meets bytes that are not a record header; then the bytes up
    to the next ``WARC/`` line become one error item and a new warcio iterator carries on there.
    A record without a usable length is an error item too (its block cannot be delimited).
    Truncated or corrupt compressed data ends the file with one error item.
    """

    def __init__(self, stream: _PushbackStream, path: str):
        self.stream = stream
        self.path = path
        self.source = os.path.basename(path)
        self.records = 0  # records read so far, for error messages
        self.last: _RecordInfo | None = None  # the record read last
        self.last_end = 0  # where its block ended in the decompressed stream
        _skip_blank_lines(stream)
        self.iterator = _archive_iterator(stream)
        self.junk_seen = 0  # warcio's count of lines skipped after records, already reported

    def items(self) -> Iterator[ReadItem]:
        """Every record's item; a read error ends them with one error item."""
        try:
            while (yield from self._run_iterator()):
                self.iterator = _archive_iterator(self.stream)
                self.junk_seen = 0
            self.stream.raise_error()
        except (EOFError, zlib.error, OSError) as error:  # gzip.BadGzipFile is an OSError
            yield self._stream_error(self.stream.error or error)

    def _run_iterator(self) -> Generator[ReadItem, None, bool]:
        """Items from the current iterator; True when reading must resume after damage."""
        try:
            for record in self.iterator:
                yield from self._junk_errors()
                info = _record_info(record, self.source, self.iterator.offset)
                if info.length is None:
                    yield self._bad_length_error(info)
                    return True
                item = _record_item(record, info, self.path)
                self.records += 1
                self.last = info
                self.last_end = self.stream.tell() - self.iterator.reader.rem_length()
                yield item
        except ArchiveLoadFailed as error:
            yield self._unparseable_error(error)
            return True
        yield from self._junk_errors()
        return False

    def _junk_errors(self) -> Iterator[ReadItem]:
        """An error item when warcio skipped a line where a blank line should follow a record."""
        if self.iterator.err_count > self.junk_seen and self.last is not None:
            self.junk_seen = self.iterator.err_count
            yield error_item(
                f"{self.source}#{self.last_end}",
                self.path,
                f"malformed_warc: data instead of a blank line after record "
                f"{self.last.record_id} (its Content-Length may be wrong)",
                offset=self.last_end,
            )

    def _bad_length_error(self, info: _RecordInfo) -> ReadItem:
        self._check_header_complete()
        self.records += 1
        _skip_to_next_record(self.iterator, self.stream)
        return error_item(
            info.record_id,
            self.path,
            "malformed_warc: missing or bad Content-Length",
            offset=info.offset,
        )

    def _check_header_complete(self) -> None:
        """EOFError when the file ended inside a record header (warcio returns what it read)."""
        self.stream.raise_error()
        if not self.iterator.reader.rem_length() and self.stream.at_end():
            raise EOFError("WARC header cut short")

    def _unparseable_error(self, error: ArchiveLoadFailed) -> ReadItem:
        self.stream.raise_error()
        start = self.iterator.offset
        _skip_to_next_record(self.iterator, self.stream)
        reason = " ".join(str(error).split())[:160]
        skipped = self.stream.tell() - start
        return error_item(
            f"{self.source}#{start}",
            self.path,
            f"malformed_warc: {reason} ({skipped} bytes skipped after record {self.records})",
            offset=start,
        )

    def _stream_error(self, error: Exception) -> ReadItem:
        kind = "truncated_gzip" if isinstance(error, EOFError) else "corrupt_gzip"
        offset = self.iterator.offset
        return error_item(
            f"{self.source}#{offset}",
            self.path,
            f"{kind}: {error or 'compressed stream ended early'} (after record {self.records})",
            offset=offset,
        )


def read_warc(path: str) -> Iterator[ReadItem]:
    """Records of a WARC or ARC file, plain or gzip (per record or whole-file); streaming.

    Offsets in ids and metadata count bytes of the decompressed stream.
    """
    source = os.path.basename(path)
    if os.path.getsize(path) == 0:
        yield error_item(f"{source}#0", path, "empty_file: the file has no bytes")
        return
    stream, raw = _open_archive(path)
    try:
        yield from _WarcReader(_PushbackStream(stream), path).items()
    finally:
        stream.close()
        raw.close()


# ----------------------------------------------------------------------------------------------
# JSONL and HTML


def read_jsonl_records(path: str) -> Iterator[ReadItem]:
    """Documents of a ``.jsonl[.gz]`` file: ``{"id", "text" | "html", "metadata"}`` per line."""
    source = os.path.basename(path)
    if os.path.getsize(path) == 0:
        yield error_item(f"{source}#0", path, "empty_file: the file has no bytes")
        return
    opener = gzip.open if path.endswith(".gz") else open
    line_no = 0
    try:
        with opener(path, "rb") as f:
            for line_no, raw_line in enumerate(f, 1):  # noqa: B007 - used after the loop
                if not raw_line.strip():
                    continue
                where = f"{source}#L{line_no}"
                try:
                    record = json.loads(raw_line)
                    if not isinstance(record, dict):
                        raise ValueError("a line must be a JSON object")
                    doc_id = record.get("id")
                    if doc_id is None or doc_id == "":
                        raise ValueError("missing 'id'")
                    meta = dict(record.get("metadata") or {})
                    if isinstance(record.get("text"), str):
                        yield ReadItem("text", Document(str(doc_id), record["text"], meta))
                    elif isinstance(record.get("html"), str):
                        yield ReadItem("page", Document(str(doc_id), record["html"], meta))
                    else:
                        raise ValueError("needs a string 'text' or 'html'")
                except (ValueError, UnicodeDecodeError) as error:
                    yield error_item(where, path, f"bad_json_line: line {line_no}: {error}")
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        yield error_item(
            f"{source}#L{line_no + 1}",
            path,
            f"truncated_gzip: {error or 'compressed stream ended early'} (after line {line_no})",
        )


def html_id(path: str) -> str:
    """File name without extensions: ``pages/ab12.html.gz`` → ``ab12``."""
    name = os.path.basename(path)
    for suffix in (".gz", ".html", ".htm", ".xhtml"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_html_file(path: str) -> Iterator[ReadItem]:
    """One page from an ``.html`` / ``.html.gz`` file."""
    doc_id = html_id(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        yield error_item(doc_id, path, f"truncated_gzip: {error or 'stream ended early'}")
        return
    if not data.strip():
        yield error_item(doc_id, path, "empty_file: the page has no content")
        return
    text, charset = decode_html(data)
    if text is None or looks_binary(text):
        yield error_item(doc_id, path, "garbage_payload: page is not decodable text")
        return
    meta: dict[str, Any] = {"source": path}
    if charset != "utf-8":
        meta["charset"] = charset
    yield ReadItem("page", Document(id=doc_id, text=text, metadata=meta))


def input_format(path: str) -> str | None:
    name = path.lower()
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    return None


def read_any(path: str) -> Iterator[ReadItem]:
    """Dispatch on the file name: WARC, JSONL or HTML; anything else is an error record."""
    fmt = input_format(path)
    try:
        if fmt == "warc":
            yield from read_warc(path)
        elif fmt == "jsonl":
            yield from read_jsonl_records(path)
        elif fmt == "html":
            yield from read_html_file(path)
        else:
            yield error_item(
                os.path.basename(path),
                path,
                "unsupported_input: expected .warc[.gz], .arc[.gz], .jsonl[.gz] or .html[.gz]",
            )
    except OSError as error:  # unreadable file (permissions, vanished): one error, not a crash
        yield error_item(os.path.basename(path), path, f"unreadable_file: {error}")
