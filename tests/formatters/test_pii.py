"""pii: the reference's regexes and quirks, per-document placeholders, the optional fixes."""

from framework.data.document import Document
from plugins.formatters.pii import PIIFormatter

E1, E2 = "email@example.com", "firstname.lastname@example.org"
IPS = ("22.214.171.124", "126.96.36.199", "188.8.131.52")


def test_emails_cycle_within_a_document_and_restart_per_document():
    f = PIIFormatter()
    text = "Write John.Doe@Example.COM, jane@x.org or a@b.c"
    assert f.format_text(text) == f"Write {E1}, {E2} or {E1}"
    # a second document starts the cycle again: output does not depend on document order
    assert f.format(Document("2", "only me@site.org")).text == f"only {E1}"


def test_public_ips_replaced_private_kept():
    f = PIIFormatter()
    text = "dns 8.8.8.8, lan 192.168.1.1, lo 127.0.0.1, shared 100.64.0.1, 1.1.1.1"
    assert f.format_text(text) == (
        f"dns {IPS[0]}, lan 192.168.1.1, lo 127.0.0.1, shared 100.64.0.1, {IPS[1]}"
    )


def test_reference_quirks_by_default():
    f = PIIFormatter()
    assert f.format_text("v1234.5.6.789 build") == f"v1{IPS[0]}9 build"
    assert f.format_text("1.2.3.4.5") == f"{IPS[0]}.5"
    assert f.format_text("0.8.8.8.8") == "0.8.8.8.8"  # the reference misses the glued 8.8.8.8
    assert f.format_text("dns 2001:4860:4860::8888") == "dns 2001:4860:4860::8888"


def test_fix_reference_misses():
    f = PIIFormatter(fix_reference_misses=True)
    assert f.format_text("v1234.5.6.789 build") == "v1234.5.6.789 build"
    assert f.format_text("0.8.8.8.8") == f"0.{IPS[0]}"
    assert f.format_text("dns 2001:4860:4860::8888.") == "dns 2001:db8::1."
    assert f.format_text("lo ::1, link fe80::1, c++ a::b, 12:30:45") == (
        "lo ::1, link fe80::1, c++ a::b, 12:30:45"
    )
    assert f.format_text("ip 8.8.8.8 and 10.0.0.1") == f"ip {IPS[0]} and 10.0.0.1"
    # idempotent: placeholders are replaced by themselves on a second pass
    once = f.format_text("8.8.8.8 2606:4700:4700::1111 x@y.org")
    assert once.startswith(IPS[0]) and "2001:db8::1" in once


def test_switches():
    assert PIIFormatter(remove_emails=False).format_text("a@b.org") == "a@b.org"
    assert PIIFormatter(remove_ips=False).format_text("8.8.8.8") == "8.8.8.8"
    assert PIIFormatter(only_remove_public_ips=False).format_text("10.0.0.1") == IPS[0]
