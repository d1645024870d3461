"""``url``: FineWeb's URL filter — block lists and banned words in the document's URL.

Checks, in order (first hit drops; reason names are datatrove's):

1. the URL's registered domain (public-suffix aware, e.g. ``bbc.co.uk``) is in the domain block
   list → ``domain``;
2. its full host name is in the domain block list → ``subdomain``;
3. the whole URL string is in the URL block list → ``url``;
4. a banned word equals one of the URL's pieces (``re.split("[^a-zA-Z0-9]+", url)``; the pieces are
   **not** lower-cased, the list entries are) → ``hard_blacklisted``;
5. at least ``soft_word_threshold`` (2) distinct soft-banned words are among the pieces →
   ``soft_blacklisted``;
6. a banned sub-word occurs anywhere in the normalised URL (lower-cased, everything but letters
   and digits removed) → ``blacklisted_subword``.

Lists are plain text files, one entry per line, ``#`` starts a comment line, blank lines are
skipped. Words and sub-words are normalised to lower-case ASCII letters and digits; domains and
URLs are compared as written (stripped); a list file of 100,000 entries or more is held as a cached
hash index (``plugins/filters/blocklist.py``: milliseconds to load, 36 MB instead of 0.5 GB for
UT1, exact up to a 64-bit hash collision). deepdive ships small default lists of its own under
``plugins/filters/assets/`` (identity terms are deliberately not banned words). For production use
the full UT1 "adult" category, which FineWeb's block list derives from: download and unpack it
yourself (nothing is downloaded at run time) and point gin at it::

    filters.url.domain_files = ["/data/ut1/adult/domains"]
    filters.url.url_files = ["/data/ut1/adult/urls"]

``*_file(s)`` parameters replace the defaults; ``extra_*`` parameters add entries. To reproduce
datatrove's lists exactly, point the word files at datatrove's own asset files.

Registered domains come from ``tldextract`` with its bundled Public Suffix List snapshot and
network fetching disabled (``suffix_list_urls=()``), i.e. the list datatrove falls back to offline.
A document without a URL is kept (there is nothing to judge).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from framework.core.registry import FILTERS
from plugins.filters.blocklist import BlockList, read_entries
from plugins.filters.explaining import Report, verdict

ASSETS = Path(__file__).resolve().parent / "assets"
_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")


def normalize(text: str) -> str:
    """Lower-case letters and digits only: ``"Sex-Shop.COM"`` → ``"sexshopcom"``."""
    return _NON_ALNUM.sub("", text).lower()


def read_list(path: str | Path) -> list[str]:
    """Entries of a list file: stripped lines, without blank lines and ``#`` comment lines."""
    return list(read_entries(path))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


_EXTRACTOR: Any = None
_EXTRACTOR_LOCK = threading.Lock()


def _tld_extractor() -> Any:
    global _EXTRACTOR
    if _EXTRACTOR is None:
        with _EXTRACTOR_LOCK:
            if _EXTRACTOR is None:
                import tldextract

                _EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return _EXTRACTOR


def domain_parts(url: str) -> tuple[str, str]:
    """(registered domain, full host name) of ``url``; empty strings when there is none."""
    info = _tld_extractor()(url)
    registered = getattr(info, "top_domain_under_public_suffix", None)
    if registered is None:  # tldextract < 5.3
        registered = info.registered_domain
    return registered, info.fqdn


@FILTERS.register("url")
class URLFilter:
    """Drops documents whose URL is block-listed or contains banned words."""

    def __init__(
        self,
        soft_word_threshold: int = 2,
        domain_files: Any = (str(ASSETS / "domains.txt"),),
        url_files: Any = (str(ASSETS / "urls.txt"),),
        banned_words_file: str | None = str(ASSETS / "banned_words.txt"),
        soft_banned_words_file: str | None = str(ASSETS / "soft_banned_words.txt"),
        banned_subwords_file: str | None = str(ASSETS / "banned_subwords.txt"),
        extra_domains: Iterable[str] | None = None,
        extra_urls: Iterable[str] | None = None,
        extra_banned_words: Iterable[str] | None = None,
        extra_soft_banned_words: Iterable[str] | None = None,
        extra_banned_subwords: Iterable[str] | None = None,
    ):
        self.soft_word_threshold = soft_word_threshold
        self.domain_files = _as_list(domain_files)
        self.url_files = _as_list(url_files)
        self.banned_words_file = banned_words_file
        self.soft_banned_words_file = soft_banned_words_file
        self.banned_subwords_file = banned_subwords_file
        self.extra_domains = _as_list(extra_domains)
        self.extra_urls = _as_list(extra_urls)
        self.extra_banned_words = _as_list(extra_banned_words)
        self.extra_soft_banned_words = _as_list(extra_soft_banned_words)
        self.extra_banned_subwords = _as_list(extra_banned_subwords)
        self._loaded = False
        self._lock = threading.Lock()

    # -- lists (loaded on first use; large ones through a cached hash index, see blocklist.py) --
    def load(self) -> URLFilter:
        """Read every list file now (otherwise done on the first document)."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self

            def words(path: str | None, extra: list[str]) -> frozenset[str]:
                entries = (read_list(path) if path else []) + extra
                return frozenset(w for e in entries if (w := normalize(e)))

            self.domains = BlockList(self.domain_files, self.extra_domains)
            self.urls = BlockList(self.url_files, self.extra_urls)
            self.banned_words = words(self.banned_words_file, self.extra_banned_words)
            self.soft_banned_words = words(
                self.soft_banned_words_file, self.extra_soft_banned_words
            )
            self.banned_subwords = words(self.banned_subwords_file, self.extra_banned_subwords)
            self._subword_re = (
                re.compile("|".join(map(re.escape, sorted(self.banned_subwords, key=len))))
                if self.banned_subwords
                else None
            )
            self._loaded = True
        return self

    # -- protocol -------------------------------------------------------------------------------
    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        return verdict(self._run(doc, full=False))

    def explain(self, doc: Any) -> dict:
        return self._run(doc, full=True).as_dict()

    def _run(self, doc: Any, full: bool) -> Report:
        self.load()
        r = Report("url")
        url = (getattr(doc, "metadata", None) or {}).get("url")
        r.info["url"] = url
        if not url:
            r.info["note"] = "no URL in metadata: nothing to check"
            return r

        registered, fqdn = domain_parts(url)
        r.info["registered_domain"] = registered
        r.info["host"] = fqdn
        domains = f"domain block list ({len(self.domains)} entries)"
        urls = f"URL block list ({len(self.urls)} entries)"
        if (
            r.check("domain", "registered domain", registered, "in", domains, against=self.domains)
            and not full
        ):
            return r
        if (
            r.check("subdomain", "host name", fqdn, "in", domains, against=self.domains)
            and not full
        ):
            return r
        if r.check("url", "url", url, "in", urls, against=self.urls) and not full:
            return r

        pieces = set(_NON_ALNUM.split(url))
        hard = sorted(self.banned_words.intersection(pieces))
        if r.check("hard_blacklisted", "banned words among URL pieces", len(hard), ">=", 1):
            r.checks[-1]["matches"] = hard
            if not full:
                return r
        soft = sorted(self.soft_banned_words.intersection(pieces))
        if r.check(
            "soft_blacklisted",
            "distinct soft-banned words among URL pieces",
            len(soft),
            ">=",
            self.soft_word_threshold,
        ):
            if not full:
                return r
        r.checks[-1]["matches"] = soft

        hit = self._subword_re.search(normalize(url)) if self._subword_re else None
        if r.check(
            "blacklisted_subword",
            "banned sub-word in normalised URL",
            int(hit is not None),
            ">=",
            1,
        ):
            r.checks[-1]["matches"] = [hit.group(0)]
        return r
