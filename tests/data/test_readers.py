"""Readers on the four shared WARC files and on hand-made bad inputs."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import random
import re
import uuid
import zlib

from warcio.archiveiterator import ArchiveIterator

from framework.data.readers import read_any, read_warc
from tests.data.warc_utils import arc_file, arc_record, gzip_members, warc_record, write_warc_gz
from tests.helpers import corpus

SHARED_WARCS = (
    "dolma-sample-0000.warc.gz",
    "dolma-sample-0001.warc.gz",
    "trafilatura-pages.warc.gz",
    "warcio-example.warc.gz",
    "warcio-example-iana.org-chunked.warc",
)


def kinds(items):
    return collections.Counter((it.kind, it.reason) for it in items)


def html_page(words: str) -> bytes:
    return f"<html><body><p>{words * 20}</p></body></html>".encode()


def warcio_records(path) -> list[tuple[str, str | None]]:
    """(WARC-Type, WARC-Record-ID) of every record, as warcio itself reads the file."""
    with open(path, "rb") as f:
        return [
            (r.rec_type, r.rec_headers.get_header("WARC-Record-ID")) for r in ArchiveIterator(f)
        ]


def record_type_of(item) -> str:
    """The WARC-Type an item came from: pages, errors and non-HTML skips are responses."""
    return item.reason if item.kind == "skip" and item.reason != "non_html" else "response"


def chunked(body: bytes, size: int = 100) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_dolma_wget_warcs_responses_and_angle_bracket_uris():
    # MANIFEST: 22 + 15 response records; wget wraps WARC-Target-URI in <...>
    for name, expected in (("dolma-sample-0000.warc.gz", 22), ("dolma-sample-0001.warc.gz", 15)):
        items = list(read_any(str(corpus("web", "warc", name))))
        pages = [it for it in items if it.kind == "page"]
        assert len(pages) == expected
        assert kinds(items)[("skip", "request")] == expected
        for page in pages:
            url = page.doc.metadata["url"]
            assert url.startswith("http") and not url.startswith("<") and not url.endswith(">")
            assert page.doc.id.startswith("<urn:uuid:")
            assert "<html" in page.doc.text.lower()


def test_warcio_example_revisit_and_request_are_skipped_and_counted():
    items = list(read_any(str(corpus("web", "warc", "warcio-example.warc.gz"))))
    counts = kinds(items)
    assert counts[("page", "")] == 1
    assert counts[("skip", "revisit")] == 1
    assert counts[("skip", "request")] == 2
    page = next(it for it in items if it.kind == "page")
    assert page.doc.metadata["url"] == "http://example.com/"
    assert "Example Domain" in page.doc.text


def test_chunked_transfer_encoding_is_decoded():
    path = corpus("web", "warc", "warcio-example-iana.org-chunked.warc")
    raw = path.read_bytes()
    assert b"Transfer-Encoding: chunked" in raw
    pages = [it for it in read_any(str(path)) if it.kind == "page"]
    assert len(pages) == 1
    text = pages[0].doc.text
    assert text.lstrip().startswith("<!doctype html>") or text.lstrip().lower().startswith(
        "<!doctype"
    )
    assert text.rstrip().endswith("</html>")
    # no chunk-size line (hex digits alone on a line) survives inside the HTML
    assert "\r\n0\r\n" not in text
    assert all(
        not (
            ln.strip()
            and all(c in "0123456789abcdefABCDEF" for c in ln.strip())
            and len(ln.strip()) <= 4
        )
        for ln in text.splitlines()[1:]
    )


def test_trafilatura_warc_ids_urls_and_bytes_match_the_manifest():
    rows = {}
    with open(corpus("web", "pages.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            rid = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, row['id'])}>"
            rows[rid] = row
    pages = [it for it in read_any(str(corpus("web", "warc", "trafilatura-pages.warc.gz")))]
    assert len(pages) == 936 and all(p.kind == "page" for p in pages)
    utf8_checked = 0
    for page in pages:
        row = rows[page.doc.id]
        assert page.doc.metadata["url"] == row["url"].strip()
        if "charset" not in page.doc.metadata:  # decoded as UTF-8: must be the exact bytes
            text = page.doc.text
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            bom = hashlib.sha256(b"\xef\xbb\xbf" + text.encode("utf-8")).hexdigest()
            assert row["sha256"] in (digest, bom), page.doc.id
            utf8_checked += 1
        else:
            assert "\ufffd" not in page.doc.text[:2000]
    # MANIFEST: 27 pages are not valid UTF-8
    assert utf8_checked == 936 - 27


def test_non_utf8_page_is_decoded_from_its_bytes(tmp_path):
    text = "Grüße aus Köln – naïve café. " * 20
    body = f"<html><body><p>{text}</p></body></html>".encode("cp1252")
    path = write_warc_gz(tmp_path / "x.warc.gz", [warc_record(body)])
    [page] = list(read_warc(str(path)))
    assert page.kind == "page"
    assert "Grüße aus Köln" in page.doc.text and page.doc.metadata["charset"] != "utf-8"


def test_truncated_gzip_member_gives_pages_then_one_error(tmp_path):
    members = gzip_members(corpus("web", "warc", "dolma-sample-0000.warc.gz").read_bytes())
    # keep the first 10 members intact and half of the 11th
    data = b"".join(members[:10]) + members[10][: len(members[10]) // 2]
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data)
    items = list(read_warc(str(path)))
    errors = [it for it in items if it.kind == "error"]
    assert len(errors) == 1 and items[-1] is errors[0]
    assert errors[0].doc.metadata["error"].startswith("truncated_gzip")
    whole = list(read_warc(str(corpus("web", "warc", "dolma-sample-0000.warc.gz"))))
    assert len(items) - 1 == 10  # one record per intact member, none lost to read-ahead
    assert [it.doc.id for it in items if it.kind == "page"] == [
        it.doc.id for it in whole[: len(items) - 1] if it.kind == "page"
    ]


def test_garbage_payload_is_an_error_record_and_reading_goes_on(tmp_path):
    garbage = bytes(range(256)) * 40
    good = b"<html><body><p>" + b"Hello world. " * 50 + b"</p></body></html>"
    path = write_warc_gz(
        tmp_path / "g.warc.gz",
        [warc_record(garbage, url="http://bad/"), warc_record(good, url="http://good/")],
    )
    items = list(read_warc(str(path)))
    assert [it.kind for it in items] == ["error", "page"]
    assert items[0].doc.metadata["error"].startswith("garbage_payload")
    assert items[0].doc.metadata["url"] == "http://bad/"


def test_empty_and_unsupported_files(tmp_path):
    for name in ("e.warc.gz", "e.jsonl", "e.html"):
        (tmp_path / name).write_bytes(b"")
        [item] = list(read_any(str(tmp_path / name)))
        assert item.kind == "error" and item.doc.metadata["error"].startswith("empty_file")
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    [item] = list(read_any(str(tmp_path / "x.pdf")))
    assert item.kind == "error" and item.reason == "unsupported_input"


def test_jsonl_reader_text_html_and_bad_lines(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    lines = [
        json.dumps({"id": "a", "text": "plain", "metadata": {"url": "http://a/"}}),
        "{not json",
        json.dumps({"id": "b", "html": "<p>x</p>"}),
        json.dumps({"text": "no id"}),
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    items = list(read_any(str(path)))
    assert [(it.kind, it.doc.id) for it in items] == [
        ("text", "a"),
        ("error", "docs.jsonl.gz#L2"),
        ("page", "b"),
        ("error", "docs.jsonl.gz#L4"),
    ]
    assert items[0].doc.metadata == {"url": "http://a/"}


def test_html_file_id_is_the_name_without_extensions(tmp_path):
    path = tmp_path / "page-17.html.gz"
    path.write_bytes(gzip.compress(b"<html><body>hi</body></html>"))
    [item] = list(read_any(str(path)))
    assert item.kind == "page" and item.doc.id == "page-17"
    broken = tmp_path / "broken.html.gz"
    broken.write_bytes(gzip.compress(b"<html>" * 1000)[:50])
    [item] = list(read_any(str(broken)))
    assert item.kind == "error" and item.reason == "truncated_gzip"


def test_every_record_of_the_shared_warcs_is_accounted_for():
    """One item per record, of the record's type and with its id, as warcio itself lists them."""
    for name in SHARED_WARCS:
        path = corpus("web", "warc", name)
        records = warcio_records(path)
        items = list(read_any(str(path)))
        assert [record_type_of(it) for it in items] == [rec_type for rec_type, _ in records]
        for item, (_, record_id) in zip(items, records, strict=True):
            assert item.kind != "page" or item.doc.id == record_id, name


def test_trafilatura_warc_page_count_matches_the_response_lines():
    path = corpus("web", "warc", "trafilatura-pages.warc.gz")
    data = gzip.decompress(path.read_bytes())
    responses = len(re.findall(rb"^WARC-Type: response\r?$", data, re.MULTILINE))  # zcat | grep -c
    pages = [it for it in read_any(str(path)) if it.kind == "page"]
    assert len(pages) == responses == 936


def test_plain_and_whole_file_gzip_warcs_give_the_same_records(tmp_path):
    source = corpus("web", "warc", "dolma-sample-0001.warc.gz")
    expected = [rid for _, rid in warcio_records(source)]
    plain = gzip.decompress(source.read_bytes())
    (tmp_path / "plain.warc").write_bytes(plain)
    (tmp_path / "whole.warc.gz").write_bytes(gzip.compress(plain, mtime=0))
    for name in ("plain.warc", "whole.warc.gz"):
        items = list(read_any(str(tmp_path / name)))
        assert len(items) == len(expected) and all(it.kind != "error" for it in items)
        pages = [it.doc.id for it in items if it.kind == "page"]
        assert len(pages) == 15 and set(pages) <= set(expected)  # MANIFEST: 15 responses


def test_arc_files_are_read_with_their_urls(tmp_path):
    pages = {"http://a.example/one": "First page. ", "http://b.example/two?x=1": "Second page. "}
    records = [
        arc_record(url, html_page(words), date="20080102030405") for url, words in pages.items()
    ]
    data = arc_file(records)
    header = data[: len(data) - sum(map(len, records))]
    (tmp_path / "crawl.arc").write_bytes(data)
    members = [gzip.compress(part, mtime=0) for part in (header, *records)]
    (tmp_path / "crawl.arc.gz").write_bytes(b"".join(members))  # one member per record, as IA
    for name in ("crawl.arc", "crawl.arc.gz"):
        items = list(read_any(str(tmp_path / name)))
        assert kinds(items) == collections.Counter({("page", ""): 2, ("skip", "warcinfo"): 1})
        read = {it.doc.metadata["url"]: it.doc for it in items if it.kind == "page"}
        assert set(read) == set(pages)
        for url, doc in read.items():
            assert pages[url] * 20 in doc.text and doc.metadata["date"] == "2008-01-02T03:04:05Z"
            file_name, offset = doc.id.rsplit("#", 1)
            assert file_name == name and data[int(offset) :].startswith(url.encode() + b" ")


def test_target_uri_is_kept_as_written(tmp_path):
    body = html_page("Hello. ")
    urls = ["http://space.example/a b?q=c d", "<http://angle.example/>", "xhttps://odd.example/"]
    path = write_warc_gz(tmp_path / "u.warc.gz", [warc_record(body, url=u) for u in urls])
    pages = [it for it in read_warc(str(path)) if it.kind == "page"]
    assert [p.doc.metadata["url"] for p in pages] == [u.strip("<>") for u in urls]
    assert all(p.doc.text == body.decode() for p in pages)  # HTTP headers split off every one


def test_http_content_codings_are_undone(tmp_path):
    body = html_page("Encoded. ")
    html = "Content-Type: text/html"
    cases = {
        "gzip": (gzip.compress(body), f"{html}\r\nContent-Encoding: gzip"),
        "x-gzip": (gzip.compress(body), f"{html}\r\nContent-Encoding: x-gzip"),
        "deflate": (zlib.compress(body), f"{html}\r\nContent-Encoding: deflate"),
        "stored": (body, f"{html}\r\nContent-Encoding: gzip"),  # header kept, body decoded
        "chunked": (chunked(body), f"{html}\r\nTransfer-Encoding: Chunked"),
    }
    records = [
        warc_record(block, url=f"http://{name}.example/", http_headers=headers)
        for name, (block, headers) in cases.items()
    ]
    pages = list(read_warc(str(write_warc_gz(tmp_path / "c.warc.gz", records))))
    assert [p.kind for p in pages] == ["page"] * len(cases)
    assert all(p.doc.text == body.decode() for p in pages)


def test_malformed_records_are_errors_and_reading_goes_on(tmp_path):
    first, last = (warc_record(html_page(w), url=f"http://{w}.example/") for w in ("a", "z"))
    middle = warc_record(html_page("m"), url="http://m.example/", record_id="<urn:m>")
    damaged = {
        "version": middle.replace(b"WARC/1.0", b"WARQ/1.0", 1),
        "length": middle.replace(b"Content-Length: ", b"Content-Length: x", 1),
        "garbage": b"not a record\r\nstill not one\r\n",
    }
    for name, broken in damaged.items():
        plain = tmp_path / f"{name}.warc"
        plain.write_bytes(first + broken + last)
        for path in (plain, write_warc_gz(tmp_path / f"{name}.warc.gz", [first, broken, last])):
            items = list(read_warc(str(path)))
            assert [(it.kind, it.reason) for it in items] == [
                ("page", ""),
                ("error", "malformed_warc"),
                ("page", ""),
            ], path.name
            urls = [it.doc.metadata["url"] for it in items if it.kind == "page"]
            assert urls == ["http://a.example/", "http://z.example/"]
            if name == "length":  # the header was read: the error carries the record's id
                assert items[1].doc.id == "<urn:m>"


def test_garbage_after_the_last_record_is_an_error(tmp_path):
    record = warc_record(html_page("Last. "))
    for tail in (b"junk\r\n", b"junk\r\nmore junk\r\n"):
        path = tmp_path / "t.warc"
        path.write_bytes(record + tail)
        items = list(read_warc(str(path)))
        assert [(it.kind, it.reason) for it in items] == [("page", ""), ("error", "malformed_warc")]


def test_corrupt_gzip_member_ends_the_file_with_one_error(tmp_path):
    source = corpus("web", "warc", "dolma-sample-0000.warc.gz")
    members = gzip_members(source.read_bytes())
    bad = bytearray(members[10])
    bad[-8] ^= 0xFF  # the member's CRC-32: its data still decompresses, the check fails
    path = tmp_path / "crc.warc.gz"
    path.write_bytes(b"".join(members[:10]) + bytes(bad) + b"".join(members[11:]))
    items = list(read_warc(str(path)))
    assert items[-1].kind == "error" and items[-1].reason == "corrupt_gzip"
    whole = [(it.kind, it.doc and it.doc.id) for it in read_warc(str(source))]
    assert len(items) - 1 >= 10
    assert [(it.kind, it.doc and it.doc.id) for it in items[:-1]] == whole[: len(items) - 1]


def test_random_damage_never_raises(tmp_path):
    """Bytes flipped, cut or inserted anywhere: items and error records, never an exception."""
    rng = random.Random(20240101)
    records = [warc_record(html_page(f"Page {n}. "), url=f"http://{n}.example/") for n in range(4)]
    source = b"".join(records)
    for trial in range(120):
        data = bytearray(source)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            action = rng.choice(("flip", "cut", "insert"))
            if action == "flip":
                data[at] = rng.randrange(256)
            elif action == "cut":
                del data[at : at + rng.randint(1, 300)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 60))
        compressed = trial % 2 == 1
        path = tmp_path / ("d.warc.gz" if compressed else "d.warc")
        path.write_bytes(gzip.compress(bytes(data)) if compressed else bytes(data))
        items = list(read_warc(str(path)))
        assert all(it.kind in ("page", "skip", "error") for it in items)
        assert all(it.doc.metadata["error"] for it in items if it.kind == "error")
