"""MinHash signatures vs hand-checked values, an exact big-integer model, spaCy and datatrove."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess

import numpy as np

from framework.data import signatures as minhash
from framework.data.signatures import MinHashConfig, SignatureComputer, WordSplitter, simplify_text
from tests.helpers import datatrove_python

FOX = "The quick brown fox jumps over the lazy dog. It cannot stop!"


def test_simplify_text_reference_example():
    # the example in shared/reference/fineweb-recipe.md §1.9 (HEAD order)
    assert (
        simplify_text("Héllo, WORLD! 3,5 units -- 1.000.000 x 12th")
        == "hello world 0 units 0 0 x 0th"
    )
    assert simplify_text("Ça\tva?\n\nnaïve—“quoted”") == "ca va naive quoted"
    assert simplify_text("٣٤ and ５６ digits") == "0 and 0 digits"  # any script's digits
    assert simplify_text("a\x00b\x85c") == "a b c"  # control characters are punctuation
    assert simplify_text("") == ""


def test_words_use_spacy_special_cases():
    assert WordSplitter().split(simplify_text(FOX)) == (
        "the quick brown fox jumps over the lazy dog it can not stop".split()
    )
    assert WordSplitter().split("gonna 0km 0th") == ["gon", "na", "0", "km", "0th"]


def test_shingle_hash_is_sha1_prefix_little_endian():
    words = simplify_text(FOX).split()  # no special case in the first 9 words
    hashes = minhash.shingle_hashes(words[:6])
    expected = [
        struct.unpack("<Q", hashlib.sha1(" ".join(words[i : i + 5]).encode()).digest()[:8])[0]
        for i in range(2)
    ]
    assert hashes.tolist() == expected
    # value checked by hand against datatrove's sha1_hash64 for "the quick brown fox jumps"
    assert expected[0] == 12313522834835307089
    assert minhash.shingle_hashes(words[:4]).size == 0  # fewer than 5 words: no shingles


def test_permutation_parameters_match_reference_generator():
    a, b = minhash.permutations(112, 1)
    assert a.shape == b.shape == (1, 112) and a.dtype == b.dtype == np.uint64
    # first and last values as printed by datatrove's MinhashDedupSignature.parameters (seed 1)
    assert (int(a[0, 0]), int(a[0, 111])) == (775169054918279404, 223865076026037746)
    assert (int(b[0, 0]), int(b[0, 111])) == (1062448801025099917, 1097409548522419201)


def _exact_signature(hashes: list[int]) -> list[int]:
    """Pure-Python model: (h*a mod 2^64 + b) mod 2^64, mod 2^61-1, column-wise minimum."""
    a, b = minhash.permutations(112, 1)
    p, w = (1 << 61) - 1, 1 << 64
    return [
        min((((h * int(ai)) % w + int(bi)) % w) % p for h in hashes)
        for ai, bi in zip(a[0], b[0], strict=True)
    ]


def test_signature_equals_big_integer_model_with_wraparound():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 2**64, size=n, dtype=np.uint64) for n in (1, 7, 300, 20000)]
    sigs = minhash.signatures(np.concatenate(docs), [d.size for d in docs], chunk_rows=512)
    for doc, sig in zip(docs, sigs, strict=True):
        assert sig.tolist() == _exact_signature([int(h) for h in doc])
    # the wrap-around matters: without it some minima differ
    h = int(docs[2][0])
    a0, b0 = (int(x[0, 0]) for x in minhash.permutations(112, 1))
    assert (h * a0 + b0) % ((1 << 61) - 1) != (((h * a0) % 2**64 + b0) % 2**64) % ((1 << 61) - 1)


def test_hand_checked_fox_signature():
    (sig,) = SignatureComputer().compute([FOX])
    bands = sig.reshape(14, 8)
    # printed by datatrove's MinhashDedupSignature (sha1) for the same text
    assert bands[0].tolist() == [
        327085395480752311,
        257461894996155251,
        454327780699555270,
        226360113463360020,
        42312182183823545,
        74838673361142667,
        316606424307206655,
        439255022718586444,
    ]
    assert int(bands[13][-1]) == 476331848845609891
    assert SignatureComputer().compute(["only four words here"]) == [None]


def test_word_cache_equals_spacy_on_whole_texts(english_pages):
    """The per-word cache and its ASCII shortcut give spaCy's own tokens of the whole text."""
    import spacy

    nlp = spacy.blank("en")
    texts = [simplify_text(t) for _, t in english_pages] + [
        "cannot gonna dont im 0km 0mph x0 £0 c++ e mail ½ § 0th",
    ]
    splitter = WordSplitter(max_cache=50)  # tiny cache: also exercises the cache reset
    for text in texts:
        expected = [t.text.strip() for t in nlp(text) if t.text.strip()]
        assert splitter.split(text) == expected


DATATROVE_SCRIPT = r"""
import json, sys
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
out = {}
for hash_fc, precision in [("sha1", 64), ("xxhash", 64), ("sha1", 32)]:
    step = MinhashDedupSignature(output_folder=sys.argv[2], config=MinhashConfig(
        hash_config=HashConfig(precision=precision, hash_fc=hash_fc)))
    sigs = []
    for text in json.load(open(sys.argv[1])):
        shingles = step.get_shingles(text)
        sigs.append(None if shingles.size == 0 else
                    [h for band in step.get_signature(shingles) for h in band])
    out[f"{hash_fc}-{precision}"] = sigs
print(json.dumps(out))
"""


def test_signatures_equal_datatrove_bit_for_bit(english_pages, tmp_path):
    python = datatrove_python()
    texts = [t for _, t in english_pages[:12]] + [
        FOX,
        "too short",
        "Héllo, WORLD! 3,5 units -- 1.000.000 x 12th and then some more words",
        "Ｆｕｌｌ　ｗｉｄｔｈ　ｔｅｘｔ， １２３ 日本語のテキスト です ね、 これ は テスト",
        "tabs\tand\r\nnewlines\x0bvertical\x0c feeds \u00a0nbsp\u2003em space done here",
        "IS_ALPHA is a strange string that once broke spaCy's tokenizer in datatrove",
    ]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    proc = subprocess.run(
        [python, "-c", DATATROVE_SCRIPT, str(tmp_path / "texts.json"), str(tmp_path / "dt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, expected in reference.items():
        hash_fc, precision = key.split("-")
        mine = SignatureComputer(MinHashConfig(hash_fc=hash_fc, precision=int(precision)))
        got = [None if s is None else s.tolist() for s in mine.compute(texts)]
        assert got == expected, key
