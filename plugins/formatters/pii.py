"""``pii``: replace e-mail addresses and public IP addresses with FineWeb's placeholders.

Reference behaviour (datatrove's ``PIIFormatter``, run by FineWeb after deduplication):

* e-mail addresses (RFC 5322-style pattern, upper and lower case) are replaced first, cycling
  through ``email@example.com`` and ``firstname.lastname@example.org``;
* then IPv4 addresses — the pattern has **no word boundaries** — are replaced when
  ``ipaddress.ip_address(match).is_global``; private, loopback, link-local, shared and reserved
  addresses stay. Placeholders cycle through six addresses.

**Determinism.** datatrove keeps the cycle counter on the formatter, so a document's output depends
on how many replacements the documents before it (in the same task) needed. deepdive **restarts
the cycle for every document**: the first e-mail of each document becomes ``email@example.com``,
the second ``firstname.lastname@example.org``, and so on; likewise for IPs. The output is a function
of the document alone, and equals datatrove's output for a document it formats first.

**fix_reference_misses** (off by default, so the default is the reference's decision for decision):

* IPv4 addresses are read as whole dotted numbers: digits glued on either side make a longer
  number, not an IP (``v1234.5.6.789`` and ``1.2.3.4567`` are left alone, where the reference
  replaced a fragment and garbled them); inside a longer dotted run (``0.8.8.8.8``) every window of
  four numbers is tried, so a public address glued behind a reserved-looking one is still found (the
  reference rejects the first window and moves on, missing ``8.8.8.8``);
* IPv6 addresses (incl. compressed and IPv4-mapped forms) are replaced when global, with
  addresses from the documentation prefix ``2001:db8::/32`` (never global, so the output is stable
  under a second pass). The reference leaves every IPv6 address in the text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from framework.core.registry import FORMATTERS

EMAIL = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"|\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
"""The reference's IPv4 pattern: no boundaries, so it also matches inside longer numbers."""

# fix_reference_misses: whole runs of dotted 1-3 digit numbers, not glued to other digits.
_DOTTED_RUN = re.compile(r"(?<![0-9])(?<![0-9]\.)[0-9]{1,3}(?:\.[0-9]{1,3}){3,}(?![0-9])")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])"
    r"(?:[0-9A-Fa-f]{1,4}:|:)(?:[0-9A-Fa-f]{0,4}:){1,7}(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?"
    r"(?![0-9A-Za-z:]|\.[0-9])"
)

EMAIL_REPLACEMENTS = ("email@example.com", "firstname.lastname@example.org")
IP_REPLACEMENTS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
IPV6_REPLACEMENTS = ("2001:db8::1", "2001:db8::2", "2001:db8::3")


def is_public_ip(text: str) -> bool:
    """``ipaddress.ip_address(text).is_global`` (False for anything that is not an address)."""
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


class _Cycle:
    """Hands out replacements in turn; one per document (restarted by the formatter)."""

    def __init__(self, replacements: tuple[str, ...]):
        self.replacements = replacements
        self.i = 0

    def next(self) -> str:
        out = self.replacements[self.i % len(self.replacements)]
        self.i += 1
        return out


def _as_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    out = tuple(str(v) for v in value)
    if not out:
        raise ValueError("formatters.pii: a replacement list must not be empty")
    return out


@FORMATTERS.register("pii")
class PIIFormatter:
    """Replaces e-mail addresses and public IP addresses with placeholders, per document."""

    def __init__(
        self,
        remove_emails: bool = True,
        remove_ips: bool = True,
        only_remove_public_ips: bool = True,
        email_replacement: Any = EMAIL_REPLACEMENTS,
        ip_replacement: Any = IP_REPLACEMENTS,
        ipv6_replacement: Any = IPV6_REPLACEMENTS,
        fix_reference_misses: bool = False,
    ):
        self.remove_emails = remove_emails
        self.remove_ips = remove_ips
        self.only_remove_public_ips = only_remove_public_ips
        self.email_replacement = _as_tuple(email_replacement)
        self.ip_replacement = _as_tuple(ip_replacement)
        self.ipv6_replacement = _as_tuple(ipv6_replacement)
        self.fix_reference_misses = fix_reference_misses

    def _wanted(self, ip: str) -> bool:
        if not self.only_remove_public_ips:
            try:
                ipaddress.ip_address(ip)
                return True
            except ValueError:
                return False
        return is_public_ip(ip)

    def format(self, doc: Any) -> Any:
        """Anonymise ``doc.text`` in place and return ``doc`` (a plain string is also accepted)."""
        if isinstance(doc, str):
            return self.format_text(doc)
        doc.text = self.format_text(doc.text)
        return doc

    def format_text(self, text: str) -> str:
        if self.remove_emails and "@" in text:
            emails = _Cycle(self.email_replacement)
            text = EMAIL.sub(lambda m: emails.next(), text)
        if self.remove_ips:
            ips = _Cycle(self.ip_replacement)
            if self.fix_reference_misses:
                text = _DOTTED_RUN.sub(lambda m: self._replace_run(m.group(0), ips.next), text)
                if ":" in text:
                    v6 = _Cycle(self.ipv6_replacement)
                    text = _IPV6.sub(lambda m: self._replace_ipv6(m.group(0), v6.next), text)
            else:
                text = IPV4.sub(lambda m: self._replace_one(m.group(0), ips.next), text)
        return text

    def _replace_one(self, candidate: str, next_replacement: Callable[[], str]) -> str:
        return next_replacement() if self._wanted(candidate) else candidate

    def _replace_ipv6(self, candidate: str, next_replacement: Callable[[], str]) -> str:
        # At least three non-empty groups, so C++ scopes ("a::b") and times ("12:30") never count.
        if sum(1 for g in re.split(r"[:.]", candidate) if g) < 3:
            return candidate
        return self._replace_one(candidate, next_replacement)

    def _replace_run(self, run: str, next_replacement: Callable[[], str]) -> str:
        """Replace every wanted 4-number window of a dotted run, left to right, without overlap."""
        groups = run.split(".")
        out: list[str] = []
        i = 0
        while i < len(groups):
            window = groups[i : i + 4]
            if len(window) == 4 and self._wanted(".".join(window)):
                out.append(next_replacement())
                i += 4
            else:
                out.append(groups[i])
                i += 1
        return ".".join(out)

    def explain(self, doc: Any) -> dict:
        """What ``format`` would replace in ``doc`` (does not change it)."""
        text = doc if isinstance(doc, str) else doc.text
        after = self.format_text(text)
        return {
            "formatter": "pii",
            "emails": [m.group(0) for m in EMAIL.finditer(text)] if self.remove_emails else [],
            "changed": after != text,
            "text_after": after,
        }
