"""Helpers for data-stage tests: build small WARC files by hand (independent of the reader)."""

from __future__ import annotations

import gzip
import uuid
import zlib
from pathlib import Path


def warc_record(
    body: bytes,
    url: str = "http://example.com/",
    rec_type: str = "response",
    payload_type: str | None = "text/html",
    http_headers: str = "Content-Type: text/html",
    record_id: str | None = None,
) -> bytes:
    """One WARC/1.0 record (HTTP response block for ``response`` records)."""
    if rec_type == "response":
        block = f"HTTP/1.1 200 OK\r\n{http_headers}\r\n\r\n".encode() + body
    else:
        block = body
    headers = [
        "WARC/1.0",
        f"WARC-Type: {rec_type}",
        f"WARC-Record-ID: {record_id or f'<urn:uuid:{uuid.uuid4()}>'}",
        "WARC-Date: 2024-01-01T00:00:00Z",
        f"WARC-Target-URI: {url}",
        "Content-Type: application/http; msgtype=response",
        f"Content-Length: {len(block)}",
    ]
    if payload_type:
        headers.append(f"WARC-Identified-Payload-Type: {payload_type}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def write_warc_gz(path: Path, records: list[bytes]) -> Path:
    """One gzip member per record, as Common Crawl writes them."""
    path.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in records))
    return path


def gzip_members(data: bytes) -> list[bytes]:
    """Split a multi-member gzip file into its members (compressed bytes), with zlib only."""
    members = []
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(rest)
        used = len(rest) - len(d.unused_data)
        members.append(rest[:used])
        rest = d.unused_data
    return members


def arc_record(
    url: str,
    body: bytes,
    date: str = "20240101000000",
    ip: str = "192.0.2.1",
    content_type: str = "text/html",
) -> bytes:
    """One ARC v1 record: the ``URL IP-address Archive-date Content-type Archive-length`` line,
    then ``Archive-length`` bytes (here an HTTP response), then a newline."""
    block = f"HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\n\r\n".encode() + body
    return f"{url} {ip} {date} {content_type} {len(block)}\n".encode() + block + b"\n"


def arc_file(records: list[bytes], name: str = "test.arc") -> bytes:
    """An ARC v1 file: the version block (a ``filedesc://`` record) then ``records``."""
    version = b"1 0 InternetArchive\nURL IP-address Archive-date Content-type Archive-length\n"
    head = f"filedesc://{name} 0.0.0.0 20240101000000 text/plain {len(version)}\n".encode()
    return head + version + b"\n" + b"".join(records)
