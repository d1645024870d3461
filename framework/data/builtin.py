"""Built-in web data for the quickstart, generated offline from what Python itself ships.

The quickstart must run on a fresh machine with no download, so it builds a small Common
Crawl-style WARC file:

* **Prose pages**: CPython's ``pydoc_data.topics`` (the language reference text behind
  ``help("assert")``) and the docstrings of well-documented standard-library modules, with code
  removed, split into sections and wrapped into HTML documents with navigation and footer
  boilerplate for the extractor to remove.
* **Pages that show each filter at work**: non-English pages (German, French), a spammy repetitive
  page, a list-like page, a page with a block-listed URL, near-duplicates of prose pages (a few
  words edited), and pages with e-mail addresses and IP addresses for PII anonymisation.

Everything is deterministic: the same bytes on every machine with the same Python version.
"""

from __future__ import annotations

import datetime
import gzip
import html
import io
import random
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

PAGE_CHARS = 4000  # target size of one prose page
SITE = "https://docs.pyref.example"

GERMAN = """Die Stadtbibliothek öffnet nach der Renovierung wieder ihre Türen. Besucherinnen und Besucher
finden dort neue Leseräume, eine größere Kinderabteilung und zahlreiche Arbeitsplätze mit
Internetzugang. Die Bauarbeiten dauerten fast zwei Jahre und kosteten mehr als vier Millionen Euro.

Der Bürgermeister betonte bei der Eröffnung, dass die Bibliothek ein Ort der Begegnung für alle
Generationen sein solle. In den kommenden Wochen sind Lesungen, Workshops und Führungen geplant,
zu denen die Bevölkerung herzlich eingeladen ist. Der Eintritt zu allen Veranstaltungen ist frei.

Die Öffnungszeiten wurden ebenfalls erweitert: Von Montag bis Samstag ist das Haus nun bis zwanzig
Uhr geöffnet. Wer einen Leseausweis besitzt, kann außerdem rund um die Uhr auf das digitale Angebot
mit Zeitungen, Zeitschriften und elektronischen Büchern zugreifen."""

FRENCH = """Le marché couvert du centre-ville accueille désormais une vingtaine de producteurs locaux
chaque samedi matin. Les habitants peuvent y acheter des légumes de saison, du fromage, du pain et
des fleurs cultivées dans la région. La municipalité espère ainsi soutenir l'agriculture locale.

Selon les organisateurs, la fréquentation a doublé depuis l'ouverture au printemps dernier. Des
animations pour les enfants et des dégustations sont proposées tout au long de l'année, et un
parking gratuit a été aménagé à proximité pour faciliter l'accès des visiteurs venus de loin."""

PII_PAGE = """Contacting the maintainers of the build farm

If a build fails for reasons that look unrelated to your change, write to the infrastructure team
at build-farm@pyref.example or to the on-call engineer, Jane.Doe@Example.COM, and include the
name of the worker and the time of the failure. The public mirror at 93.184.216.34 is refreshed
every hour, and the secondary mirror answers at 198.51.100.77 during maintenance windows.

Workers on the private network use addresses such as 10.0.0.12 and 192.168.1.20, and the local
cache listens on 127.0.0.1; these internal addresses are not secret and are kept as they are.
Please do not send passwords or tokens by e-mail. The team reads every message and usually
answers within one working day, although replies can take longer during the release weeks.

When you report a problem, describe what you expected to happen and what happened instead, and
attach the smallest example that shows it. Reports that can be reproduced are fixed first."""


# Well-documented pure-Python standard-library modules whose docstrings add prose.
DOCSTRING_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures",
    "configparser", "contextlib", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
    "enum", "fractions", "functools", "heapq", "inspect", "ipaddress", "json", "logging",
    "mailbox", "numbers", "optparse", "pathlib", "pickle", "queue", "random", "sched", "shelve",
    "shutil", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "traceback", "typing", "unittest", "urllib.parse", "uuid", "warnings",
    "weakref", "zipfile",
)  # fmt: skip

# Inline code in reference prose ("x.y(z)", "__init__", "*args") is dropped so that pages read
# as prose, as the quality filters expect of web text.
_INLINE_CODE = re.compile(r"\S*[()\[\]{}=_<>*`\"|\\#@%$^~]\S*")


def _prose(text: str) -> str:
    """Paragraphs of ``text`` without code blocks, grammar rules, headings or inline code."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or any(line.startswith((" ", ">>>", "...")) for line in lines):
            continue  # code blocks, grammar productions, doctests
        if len(lines) == 2 and set(lines[1].strip()) <= set("*=-~"):
            continue  # a reStructuredText heading
        paragraph = _INLINE_CODE.sub("", " ".join(line.strip() for line in lines))
        paragraph = re.sub(r"\s+([,.;:])", r"\1", paragraph)
        paragraph = re.sub(r"[,;:]\s*([,.;:])", r"\1", paragraph)
        paragraph = re.sub(r"\s{2,}", " ", paragraph).strip()
        if len(paragraph) > 80:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def _sources() -> list[tuple[str, str, str]]:
    """(path, title, prose) of every source text, in a fixed order."""
    import importlib
    import inspect
    import warnings
    from pydoc_data.topics import topics

    sources = [
        (f"reference/{name}", name.replace("-", " ").title(), _prose(text))
        for name, text in sorted(topics.items())
    ]
    for name in DOCSTRING_MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except ImportError:
            continue
        parts = [inspect.cleandoc(module.__doc__ or "")]
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                parts.append(inspect.cleandoc(obj.__doc__ or ""))
        sources.append((f"library/{name}", f"The {name} module", _prose("\n\n".join(parts))))
    return sources


def _sections(text: str, target: int = PAGE_CHARS) -> list[str]:
    """Split a text into pages of about ``target`` characters on paragraph boundaries."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    pages, current = [], []
    for paragraph in paragraphs:
        current.append(paragraph)
        if sum(len(p) for p in current) >= target:
            pages.append("\n\n".join(current))
            current = []
    if current:
        if pages and sum(len(p) for p in current) < target // 3:
            pages[-1] += "\n\n" + "\n\n".join(current)
        else:
            pages.append("\n\n".join(current))
    return pages


def _paragraph_html(paragraph: str) -> str:
    lines = paragraph.split("\n")
    if all(line.startswith("   ") or not line.strip() for line in lines):
        return f"<pre>{html.escape(paragraph)}</pre>"
    if set(lines[-1].strip()) <= set("*=-") and len(lines) == 2:
        return f"<h2>{html.escape(lines[0].strip())}</h2>"
    return f"<p>{html.escape(' '.join(line.strip() for line in lines))}</p>"


def page_html(title: str, body: str, lang: str = "en") -> str:
    """A complete HTML page with boilerplate (navigation, footer) around the main text."""
    paragraphs = "\n".join(_paragraph_html(p) for p in re.split(r"\n\s*\n", body) if p.strip())
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/reference/">Reference</a></li>
<li><a href="/search">Search</a></li></ul></nav>
<main><article><h1>{html.escape(title)}</h1>
{paragraphs}
</article></main>
<footer><p>Copyright the authors. All rights reserved.</p><a href="/privacy">Privacy</a></footer>
</body></html>
"""


def _edit_words(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
        words[i] = rng.choice(["alpha", "beta", "gamma", "delta", "omega"])
    return " ".join(words)


def builtin_pages() -> Iterator[tuple[str, str]]:
    """(url, html) of every built-in page, in a fixed order."""
    rng = random.Random(1234)
    prose: list[tuple[str, str, str]] = []
    for path, name, text in _sources():
        for i, section in enumerate(_sections(text)):
            url = f"{SITE}/{path}/{i}.html"
            title = f"{name} ({i + 1})"
            prose.append((url, title, section))
            yield url, page_html(title, section)
    # Near-duplicates: the same page under another URL with a few words edited.
    for k, (url, title, section) in enumerate(rng.sample(prose, 8)):
        edited = _edit_words(section, [0.0, 0.01, 0.02, 0.03][k % 4], rng)
        yield url.replace(SITE, "https://mirror.pyref.example"), page_html(title, edited)
    yield (
        "https://nachrichten.example.de/bibliothek.html",
        page_html("Stadtbibliothek", GERMAN, "de"),
    )
    yield "https://journal.example.fr/marche.html", page_html("Le marché", FRENCH, "fr")
    spam = "\n\n".join(["Buy cheap watches online today, best prices guaranteed!"] * 60)
    yield "https://deals.example.com/watches.html", page_html("Best deals", spam)
    listing = "\n\n".join(f"Item {i}: widget" for i in range(120))
    yield "https://catalog.example.com/list.html", page_html("Catalog", listing)
    yield (
        "https://free-porn-videos.example.com/page.html",
        page_html("Blocked", prose[0][2] if prose else "text"),
    )
    yield f"{SITE}/community/contact.html", page_html("Contacting the maintainers", PII_PAGE)


def _warc_record(headers: dict[str, str], payload: bytes) -> bytes:
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(payload)}\r\n\r\n"
    return head.encode("utf-8") + payload + b"\r\n\r\n"


def write_builtin_warc(path: str | Path) -> int:
    """Write the built-in pages as a Common Crawl-style ``.warc.gz``; returns the page count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    buffer = io.BytesIO()
    count = 0
    for url, page in builtin_pages():
        body = page.encode("utf-8")
        http = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        headers = {
            "WARC-Type": "response",
            "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>",
            "WARC-Date": (date + datetime.timedelta(seconds=count)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "WARC-Target-URI": url,
            "WARC-Identified-Payload-Type": "text/html",
            "Content-Type": "application/http; msgtype=response",
        }
        buffer.write(gzip.compress(_warc_record(headers, http), mtime=0))
        count += 1
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return count
