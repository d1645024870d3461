"""Large block lists (hashed, cached index) answer exactly as the plain set of their entries."""

from __future__ import annotations

import random
import string

import pytest

from plugins.filters import blocklist
from plugins.filters.blocklist import INDEX_MIN_ENTRIES, BlockList
from plugins.filters.url import URLFilter


def _random_domains(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = string.ascii_lowercase + string.digits + "-"
    return [
        "".join(rng.choices(letters, k=rng.randint(3, 20))) + rng.choice([".com", ".de", ".co.uk"])
        for _ in range(n)
    ]


@pytest.fixture
def big_list(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPDIVE_CACHE_DIR", str(tmp_path / "cache"))
    domains = _random_domains(INDEX_MIN_ENTRIES + 10, seed=1)
    lines = ["# UT1 adult domains", "", *domains[:5], "  spaced.example.org \r", *domains[5:]]
    path = tmp_path / "domains"
    path.write_text("\r\n".join(lines), encoding="utf-8")  # Windows line ends too
    return path, set(domains) | {"spaced.example.org"}


def test_large_list_is_hashed_cached_and_exact(big_list, tmp_path):
    path, expected = big_list
    first = BlockList([path])
    assert list((tmp_path / "cache" / "blocklists").glob("*.npy")), "index not cached"
    second = BlockList([path])  # memory-mapped from the cache
    others = set(_random_domains(20_000, seed=2)) - expected
    for blocks in (first, second):
        assert len(blocks) == len(expected)
        assert all(d in blocks for d in random.Random(3).sample(sorted(expected), 5_000))
        assert not any(d in blocks for d in others)
        assert "# UT1 adult domains" not in blocks and "" not in blocks


def test_changed_file_gets_a_new_index(big_list):
    path, expected = big_list
    assert "newly-added.example" not in BlockList([path])
    with open(path, "a", encoding="utf-8") as f:
        f.write("\nnewly-added.example\n")
    assert "newly-added.example" in BlockList([path])


def test_small_lists_and_extras_are_plain_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPDIVE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "few"
    path.write_text("a.com\n#b.com\n c.org \n", encoding="utf-8")
    blocks = BlockList([path], extra=[" d.net "])
    assert {"a.com", "c.org", "d.net"} == {
        d for d in ["a.com", "b.com", "c.org", "d.net"] if d in blocks
    }
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_still_works(big_list, monkeypatch, tmp_path):
    path, expected = big_list
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    monkeypatch.setenv("DEEPDIVE_CACHE_DIR", str(blocked))
    blocks = BlockList([path])
    assert next(iter(sorted(expected))) in blocks


def test_url_filter_uses_large_lists(big_list):
    path, expected = big_list
    domain = next(d for d in sorted(expected) if d[0].isalpha() and d.endswith(".com"))
    f = URLFilter(domain_files=[path], url_files=[])

    class Doc:
        metadata = {"url": f"https://{domain}/page"}

    assert f.filter(Doc()) == (False, "domain")


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPDIVE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert blocklist.cache_dir() == tmp_path / "deepdive"
