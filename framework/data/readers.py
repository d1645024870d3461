"""Streaming readers for the data stage: WARC / WARC.gz, JSON Lines documents, single HTML pages.

Every reader yields :class:`ReadItem` values, one per record, and never raises on bad data:

* ``kind == "page"``: an HTML page to extract (``doc.text`` holds the decoded HTML);
* ``kind == "text"``: a document whose ``text`` is already plain text (JSONL input with ``text``);
* ``kind == "skip"``: a record that is not a page (``revisit``, ``request``, ``warcinfo``,
  ``metadata``, non-HTML responses, ...) — counted by ``reason``, not written anywhere;
* ``kind == "error"``: a record that could not be read (truncated gzip member, malformed WARC
  header, undecodable payload, bad JSON line, empty file, ...). ``doc.metadata["error"]`` says
  what went wrong; the pipeline writes it to ``errors/``.

Ids (DESIGN.md §5): the ``WARC-Record-ID`` for WARC input, the input's own ``id`` for JSONL, the
file name without extensions for a single HTML file. Error records without an id get
``<file>#<offset>`` (byte offset in the compressed file when known, else the record number).

Reading is streaming (one record in memory at a time) and splittable across workers by file.
Charset: UTF-8 when the bytes are valid UTF-8, else the encoding ``charset_normalizer`` detects
from the bytes; a payload that decodes under neither is an error record.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from typing import IO, Any

from framework.data.document import Document

HTML_TYPES = ("text/html", "application/xhtml+xml")
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc.gz")
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
# WARC


class _CountingReader:
    """Wraps a raw file to report how many compressed bytes were consumed (for error offsets)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.position += len(data)
        return data

    def readable(self) -> bool:
        return True


def _open_warc(path: str) -> tuple[IO[bytes], IO[bytes]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = None
    for line in lines:
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            continue
        if text[0] in " \t" and last:  # folded continuation line
            headers[last] += " " + text.strip()
            continue
        if ":" not in text:
            continue
        name, value = text.split(":", 1)
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


def _dechunk(body: bytes) -> bytes | None:
    """Decode HTTP chunked transfer-encoding; None when the body is not validly chunked."""
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return None
        size_text = body[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        pos = end + 2
        if size == 0:
            return bytes(out)
        if pos + size > len(body):
            out += body[pos:]  # truncated final chunk: keep what is there
            return bytes(out)
        out += body[pos : pos + size]
        pos += size + 2


def _decode_content_encoding(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        pass  # crawlers often store the decoded body but keep the header: use the bytes as they are
    return body


def split_http_response(block: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of an HTTP response block (body decoded of chunking)."""
    sep = block.find(b"\r\n\r\n")
    sep_len = 4
    if sep < 0:
        sep = block.find(b"\n\n")
        sep_len = 2
    if sep < 0 or not block.startswith(b"HTTP/"):
        return None, {}, block
    head, body = block[:sep], block[sep + sep_len :]
    lines = head.split(b"\n")
    status = None
    parts = lines[0].split()
    if len(parts) >= 2 and parts[1].isdigit():
        status = int(parts[1])
    headers = _parse_headers(lines[1:])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        dechunked = _dechunk(body)
        if dechunked is not None:
            body = dechunked
    if headers.get("content-encoding"):
        body = _decode_content_encoding(body, headers["content-encoding"])
    return status, headers, body


def _strip_uri(uri: str) -> str:
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):  # wget writes <http://...>
        uri = uri[1:-1]
    return uri


def _is_html(warc_headers: dict[str, str], http_headers: dict[str, str], body: bytes) -> bool:
    declared = warc_headers.get("warc-identified-payload-type") or http_headers.get(
        "content-type", ""
    )
    if declared:
        return declared.split(";")[0].strip().lower() in HTML_TYPES
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in head


def read_warc(path: str) -> Iterator[ReadItem]:
    """Records of a WARC or WARC.gz file (gzip per record or whole-file; streaming)."""
    source = os.path.basename(path)
    if os.path.getsize(path) == 0:
        yield error_item(f"{source}#0", path, "empty_file: the file has no bytes")
        return
    stream, raw = _open_warc(path)
    record_no = 0
    try:
        while True:
            offset = raw.tell()
            try:
                item = _next_warc_record(stream, path, source, record_no, offset)
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
                kind = "truncated_gzip" if isinstance(error, EOFError) else "corrupt_gzip"
                yield error_item(
                    f"{source}#{offset}",
                    path,
                    f"{kind}: {error or 'compressed stream ended early'} (after record {record_no})",
                    offset=offset,
                )
                return
            if item is None:
                return
            record_no += 1
            yield item
    finally:
        stream.close()
        raw.close()


def _next_warc_record(
    stream: IO[bytes], path: str, source: str, record_no: int, offset: int
) -> ReadItem | None:
    # version line, skipping blank lines between records
    line = stream.readline()
    skipped = 0
    while line and not line.startswith(b"WARC/"):
        if line.strip():
            skipped += len(line)
            if skipped > 1 << 20:
                return error_item(
                    f"{source}#{offset}",
                    path,
                    f"malformed_warc: no 'WARC/' version line in 1 MiB after record {record_no}",
                    offset=offset,
                )
        line = stream.readline()
    if not line:
        if skipped:
            return error_item(
                f"{source}#{offset}",
                path,
                f"malformed_warc: {skipped} bytes of garbage at the end after record {record_no}",
                offset=offset,
            )
        return None
    header_lines = []
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("WARC header cut short")
        if line in (b"\r\n", b"\n"):
            break
        header_lines.append(line)
    headers = _parse_headers(header_lines)
    record_id = headers.get("warc-record-id") or f"{source}#{offset}"
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        return error_item(
            record_id, path, "malformed_warc: missing or bad Content-Length", offset=offset
        )
    block = stream.read(length)
    if len(block) < length:
        raise EOFError(f"record {record_id} cut short: {len(block)} of {length} bytes")
    rec_type = headers.get("warc-type", "").lower()
    url = _strip_uri(headers.get("warc-target-uri", ""))
    if rec_type != "response":
        return ReadItem("skip", reason=rec_type or "untyped")
    status, http_headers, body = split_http_response(block)
    if status is None and headers.get("content-type", "").startswith("application/http"):
        return error_item(
            record_id, path, "garbage_payload: no HTTP status line", url=url, offset=offset
        )
    if not _is_html(headers, http_headers, body):
        return ReadItem("skip", reason="non_html")
    text, charset = decode_html(body)
    if text is None or looks_binary(text):
        return error_item(
            record_id,
            path,
            "garbage_payload: payload is not decodable text",
            url=url,
            offset=offset,
            bytes=len(body),
        )
    meta = {"url": url, "date": headers.get("warc-date", ""), "source": path}
    if charset != "utf-8":
        meta["charset"] = charset
    return ReadItem("page", Document(id=record_id, text=text, metadata=meta))


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
                "unsupported_input: expected .warc[.gz], .jsonl[.gz] or .html[.gz]",
            )
    except OSError as error:  # unreadable file (permissions, vanished): one error, not a crash
        yield error_item(os.path.basename(path), path, f"unreadable_file: {error}")
