"""Readers on the four shared WARC files and on hand-made bad inputs."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import uuid

from framework.data.readers import read_any, read_warc
from tests.data.warc_utils import gzip_members, warc_record, write_warc_gz
from tests.helpers import corpus


def kinds(items):
    return collections.Counter((it.kind, it.reason) for it in items)


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
    assert len(items) - 1 <= 10 and len(items) >= 5
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
