"""``tokenizers.hf_bpe``: byte-level BPE as Hugging Face checkpoints publish it, as a ``bpe``.

Llama 3, GPT-2 and the like ship their tokenizer as a Hugging Face ``tokenizer.json`` (and Meta's
Llama 3 release as a tiktoken rank file, ``tokenizer.model``). :func:`read_tokenizer_json` turns
such a file into deepdive's BPE (:class:`~plugins.tokenizers.bpe.BPETokenizer`: tiktoken ranks,
a split regex, special tokens) when the two give the same ids, and refuses it, in one line
naming the file and the reason, when they would not:

* **vocabulary**: ``model.type`` ``BPE`` over GPT-2's printable byte alphabet (``Ġ`` = space ...),
  mapped back to bytes; no dropout, byte fallback, subword prefix or word suffix.
* **merge order = id order**: tiktoken ranks a merge by the id of the token it creates, Hugging
  Face by its place in ``merges``; every merge must join two tokens into a third, and the ids
  made must never decrease along the list. Checked for every merge.
* **whole pieces**: tiktoken takes a pre-split piece that is itself a token without merging;
  Hugging Face does so only with ``ignore_merges`` (Llama 3). Without it, every token's own bytes
  must merge back into that token, which is checked for every token.
* **text**: no normalizer; the pre-tokenizer is ``ByteLevel`` with its regex (GPT-2's pattern)
  or a ``Split`` regex (``Isolated``) then ``ByteLevel`` without one (Llama 3): the regex becomes
  the BPE pattern. It must match every character (Hugging Face keeps the text between matches,
  tiktoken drops it); a probe text checks that.
* **added tokens**: ``special: true`` ones become special tokens (encoded atomically only when
  allowed, as with tiktoken); their ids must come after the byte-level tokens'. Non-special
  added tokens (Hugging Face matches them in any text) are refused.

For tokenizers trained with merge lists (GPT-2's, ``tokenizers``' trainer), tiktoken's engine may
also merge a pair the list does not name when both halves of a token meet; on BPE-trained
vocabularies this gives the same ids (the tests compare with ``tokenizers`` on real pages, GPT-2's
own vocabulary included). Files converted from tiktoken (Llama 3's) list every split of a token as
a merge, so there the two engines agree by construction.

The beginning-of-text token a ``TemplateProcessing`` post-processor adds (Llama 3's
``<|begin_of_text|>``) and the checkpoint's end-of-text token (``tokenizer_config.json``,
else ``config.json``) are kept as ``bos_token`` / ``eos_token``; ``eot_id`` is the latter, so
``deepdive sample`` stops where the model does. Encoding never adds the BOS itself (deepdive
encodes raw text); write ``<|begin_of_text|>`` in a prompt to have it.

``HFBPETokenizer.from_checkpoint`` is what ``deepdive convert`` finds through the registry:
``tokenizer.json``, else a tiktoken rank file (``*.tiktoken``, ``tokenizer.model`` in tiktoken
format, Meta's ``original/tokenizer.model``). Saved, the tokenizer is deepdive's own
``bpe.tiktoken`` + ``tokenizer.json`` (kind ``hf_bpe``, with the BOS/EOS names).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import regex

from framework.core.errors import ConfigError, InputError
from framework.core.registry import TOKENIZERS
from plugins.tokenizers import rankfile
from plugins.tokenizers.bpe import BPETokenizer
from plugins.tokenizers.rankfile import ENDOFTEXT, Ranks

# Meta's Llama 3 split pattern and rank file (the same file from Llama 3 to 3.2).
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
LLAMA3_RANKS_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
# The 256 specials after Llama 3's 128000 ranks, as Meta's llama3 tokenizer.py (3.1) numbers
# them; used only when the folder has no tokenizer_config.json to name them. Releases name a few
# reserved ids differently (3.0 has no eom/python_tag); begin/end of text, the header tokens and
# <|eot_id|> have the same ids in all.
LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
LLAMA3_SPECIALS += [
    f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(LLAMA3_SPECIALS))
]

# Text a split regex has to match entirely: letters, combining marks, digits, punctuation,
# symbols, spaces of every kind, control characters, emoji, contractions.
_PROBE = (
    "Hello, World! It's 12345 o'clock.\tÀé\u0301ß 中文 ١٢٣\r\n\n  \u00a0\u3000 "
    '$%^&*()_+-=[]{}|;:"<>?/~`\x00\x1b🙂\u200d!?\n'
)
_TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+=* \d+\r?$")


def _refuse(where: str, what: str) -> NoReturn:
    raise InputError(f"{where}: {what}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        _refuse(str(path), f"cannot read as JSON: {error}")


# -- the parts of a tokenizer.json -----------------------------------------------------------------


def _check_model(model: Mapping[str, Any], where: str) -> None:
    """A plain byte-level BPE model: nothing that changes how words are cut into tokens."""
    kind = model.get("type")
    if kind != "BPE":
        _refuse(where, f"model type {kind!r}; only byte-level BPE models can be read")
    if model.get("dropout") not in (None, 0, 0.0):
        _refuse(where, f"BPE dropout {model['dropout']} makes encoding random; it cannot be read")
    if model.get("byte_fallback"):
        _refuse(where, "byte_fallback BPE (SentencePiece-style <0xNN> tokens) is not byte-level")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            _refuse(where, f"{key} {model[key]!r} is not representable in a byte-level BPE")


def _check_normalizer(normalizer: Mapping[str, Any] | None, where: str) -> None:
    """No normalizer: deepdive's BPE encodes the text as given (NFC, lowercasing ... would not)."""
    if normalizer is None:
        return
    if normalizer.get("type") == "Sequence" and not normalizer.get("normalizers"):
        return
    _refuse(
        where,
        f"normalizer {normalizer.get('type')!r} changes the text before BPE; deepdive's BPE "
        "encodes text unchanged, so this tokenizer cannot be represented",
    )


def _is_byte_level(step: Mapping[str, Any], use_regex: bool) -> bool:
    return (
        step.get("type") == "ByteLevel"
        and not step.get("add_prefix_space", False)
        and bool(step.get("use_regex", True)) == use_regex
    )


def _pattern_of(pre_tokenizer: Mapping[str, Any] | None, where: str) -> str:
    """The split regex (or preset name) equal to the pre-tokenizer, which must be GPT-2's
    ``ByteLevel`` (its own regex) or ``Split(regex, Isolated)`` then ``ByteLevel`` without one."""
    steps = [pre_tokenizer] if pre_tokenizer is not None else []
    if pre_tokenizer is not None and pre_tokenizer.get("type") == "Sequence":
        steps = list(pre_tokenizer.get("pretokenizers") or [])
    if len(steps) == 1 and _is_byte_level(steps[0], use_regex=True):
        return "gpt2"  # the regex ByteLevel applies is GPT-2's (rankfile.GPT2_PATTERN)
    if (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and _is_byte_level(steps[1], use_regex=False)
    ):
        split = steps[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if pattern is None or split.get("behavior") != "Isolated" or split.get("invert"):
            _refuse(
                where,
                "the Split pre-tokenizer must be a Regex with behavior Isolated (not inverted), "
                f"got {json.dumps(split)[:120]}",
            )
        rankfile.check_pattern(pattern, where)
        unmatched = regex.sub(pattern, "", _PROBE)
        if unmatched:
            _refuse(
                where,
                f"the split regex leaves {unmatched[:10]!r} unmatched; Hugging Face keeps such "
                "text, tiktoken drops it",
            )
        named = {v: k for k, v in rankfile.PATTERNS.items()}
        return named.get(pattern, pattern)
    shape = [s.get("type") for s in steps] or None
    _refuse(
        where,
        f"pre-tokenizer {shape} is not one deepdive's BPE reproduces (ByteLevel with its regex, "
        "or a Split regex then ByteLevel without one; no add_prefix_space)",
    )


def _check_decoder(decoder: Mapping[str, Any] | None, where: str) -> None:
    if decoder is not None and decoder.get("type") != "ByteLevel":
        _refuse(where, f"decoder {decoder.get('type')!r} is not byte-level BPE's (ByteLevel)")


def _bos_of(post_processor: Mapping[str, Any] | None) -> str | None:
    """The special token a ``TemplateProcessing`` post-processor puts before a single text."""
    if post_processor is None:
        return None
    if post_processor.get("type") == "Sequence":
        found = [_bos_of(p) for p in post_processor.get("processors") or []]
        return next((b for b in found if b is not None), None)
    if post_processor.get("type") != "TemplateProcessing":
        return None
    single = post_processor.get("single") or []
    first = single[0] if single else {}
    return (first.get("SpecialToken") or {}).get("id")


def _merge_pair(merge: Any, index: int, where: str) -> tuple[str, str]:
    """A merge as ``(left, right)`` from either spelling (``["a", "b"]`` or ``"a b"``)."""
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if not isinstance(parts, list | tuple) or len(parts) != 2:
        _refuse(where, f"merge {index} is not a pair of tokens: {merge!r}")
    return parts[0], parts[1]


# -- vocabulary ------------------------------------------------------------------------------------


def _unicode_to_byte(where: str) -> Callable[[str], bytes]:
    """Decoder of tokens spelled in GPT-2's byte alphabet (refusing any other character)."""
    to_byte = {ch: b for b, ch in rankfile.gpt2_byte_alphabet().items()}

    def decode(token: str) -> bytes:
        try:
            return bytes(to_byte[ch] for ch in token)
        except KeyError as error:
            _refuse(
                where,
                f"token {token!r} has {error.args[0]!r}, outside the byte-level alphabet; "
                "this is not a byte-level BPE",
            )

    return decode


def _added_specials(added: Sequence[Mapping[str, Any]], where: str) -> dict[str, int]:
    """``added_tokens`` as special tokens (name -> id); non-special or stripped ones refused."""
    specials: dict[str, int] = {}
    for token in added:
        content, tid = token.get("content"), token.get("id")
        if not isinstance(content, str) or not isinstance(tid, int):
            _refuse(where, f"added token without content and id: {json.dumps(token)[:120]}")
        if not token.get("special", False):
            _refuse(
                where,
                f"added token {content!r} (id {tid}) is not special: Hugging Face matches it "
                "in any text, deepdive's BPE only matches special tokens when allowed",
            )
        flags = [k for k in ("lstrip", "rstrip", "single_word") if token.get(k)]
        if flags:
            _refuse(where, f"special token {content!r} sets {', '.join(flags)}; not supported")
        specials[content] = tid
    return specials


def _vocabulary(
    vocab: Mapping[str, int],
    specials: Mapping[str, int],
    to_bytes: Callable[[str], bytes],
    where: str,
) -> Ranks:
    """The byte-level tokens as tiktoken ranks (entries that are added tokens left out)."""
    ranks: Ranks = {}
    for token, tid in vocab.items():
        if token in specials:
            if specials[token] != tid:
                _refuse(where, f"{token!r} is id {tid} in the vocabulary, {specials[token]} added")
            continue
        ranks[to_bytes(token)] = tid
    n = len(ranks)
    for name, sid in specials.items():
        if sid < n:
            _refuse(
                where,
                f"special token {name!r} has id {sid}, among the {n} byte-level tokens' ids "
                f"(0..{n - 1}); deepdive's BPE numbers special tokens after them, so this "
                "vocabulary cannot be represented without renumbering the model",
            )
    rankfile.validate_ranks(ranks, specials, where)
    return ranks


def _check_merges(
    merges: Sequence[Any], ranks: Ranks, to_bytes: Callable[[str], bytes], where: str
) -> list[tuple[int, int, int]]:
    """``(left_id, right_id, merged_id)`` of every merge, checked against tiktoken's rule (a
    merge's priority is the id of the token it makes): parts and result are tokens, and the ids
    made never decrease along the list. (A part may have a larger id than the result: files
    converted from tiktoken list every split of a token, and so does tiktoken's engine.)"""
    out: list[tuple[int, int, int]] = []
    previous = -1
    for index, merge in enumerate(merges):
        left, right = _merge_pair(merge, index, where)
        a, b = to_bytes(left), to_bytes(right)
        ids = ranks.get(a), ranks.get(b), ranks.get(a + b)
        if None in ids:
            _refuse(
                where, f"merge {index} ({left!r} + {right!r}): a part or the result is no token"
            )
        la, lb, merged = ids
        if merged < previous:
            _refuse(
                where,
                f"merge {index} ({left!r} + {right!r} -> id {merged}) is out of id order "
                f"(previous merge made id {previous}); tiktoken-style BPE, where a merge's "
                "priority is its token's id, would encode differently",
            )
        previous = merged
        out.append((la, lb, merged))
    return out


def _check_tokens_merge_to_themselves(
    ranks: Ranks, merges: Sequence[tuple[int, int, int]], where: str
) -> None:
    """Every token's bytes, merged by the merge list, give that token (so tiktoken's lookup of a
    whole piece, which Hugging Face does only with ``ignore_merges``, changes nothing)."""
    priority: dict[tuple[int, int], tuple[int, int]] = {}
    for index, (a, b, merged) in enumerate(merges):
        priority.setdefault((a, b), (index, merged))
    byte_id = [ranks[bytes([i])] for i in range(256)]
    for token, tid in ranks.items():
        ids = [byte_id[c] for c in token]
        while len(ids) > 1:
            best = None
            for i in range(len(ids) - 1):
                found = priority.get((ids[i], ids[i + 1]))
                if found is not None and (best is None or found[0] < best[0]):
                    best = (found[0], i, found[1])
            if best is None:
                break
            ids[best[1] : best[1] + 2] = [best[2]]
        if ids != [tid]:
            _refuse(
                where,
                f"token {tid} ({token!r}) does not merge back into itself from its bytes (it "
                f"gives {ids[:6]}); without ignore_merges Hugging Face and tiktoken encode it "
                "differently",
            )


# -- the checkpoint folder's other files -----------------------------------------------------------


def _token_name(value: Any) -> str | None:
    """A token in ``tokenizer_config.json``: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _tokenizer_config(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    config = _read_json(path) if path.is_file() else {}
    return config if isinstance(config, dict) else {}


def _eos_of(folder: Path, specials: Mapping[str, int]) -> str | None:
    """The checkpoint's end-of-text special token: ``tokenizer_config.json``'s ``eos_token``,
    else ``config.json``'s ``eos_token_id`` (the first of a list), else ``<|endoftext|>``."""
    eos = _token_name(_tokenizer_config(folder).get("eos_token"))
    if eos not in specials and (folder / "config.json").is_file():
        eos_id = _read_json(folder / "config.json").get("eos_token_id")
        eos_id = eos_id[0] if isinstance(eos_id, list) and eos_id else eos_id
        eos = next((name for name, sid in specials.items() if sid == eos_id), None)
    if eos not in specials and ENDOFTEXT in specials:
        eos = ENDOFTEXT
    return eos if eos in specials else None


def read_tokenizer_json(path: str | os.PathLike) -> HFBPETokenizer:
    """The byte-level BPE of a Hugging Face ``tokenizer.json`` (see the module docstring for what
    is checked); ``tokenizer_config.json`` / ``config.json`` beside it name BOS and EOS."""
    path = Path(path)
    where = str(path)
    spec = _read_json(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        _refuse(
            where,
            "neither a deepdive tokenizer.json (no 'kind') nor a Hugging Face one (no 'model')",
        )
    model = spec["model"]
    _check_model(model, where)
    _check_normalizer(spec.get("normalizer"), where)
    pattern = _pattern_of(spec.get("pre_tokenizer"), where)
    _check_decoder(spec.get("decoder"), where)
    specials = _added_specials(spec.get("added_tokens") or [], where)
    to_bytes = _unicode_to_byte(where)
    ranks = _vocabulary(model.get("vocab") or {}, specials, to_bytes, where)
    merges = _check_merges(model.get("merges") or [], ranks, to_bytes, where)
    if not model.get("ignore_merges", False):
        _check_tokens_merge_to_themselves(ranks, merges, where)
    bos = _bos_of(spec.get("post_processor"))
    tok = HFBPETokenizer.from_ranks(
        ranks, specials, pattern, name=path.parent.name or "hf_bpe", where=where
    )
    tok.bos_token = bos if bos in specials else None
    tok.eos_token = _eos_of(path.parent, specials)
    tok.source = path.name
    _check_tiktoken_accepts(tok, where)
    return tok


def _check_tiktoken_accepts(tok: BPETokenizer, where: str) -> None:
    """Build the tiktoken encoding now, so a regex its engine rejects fails here, not later."""
    try:
        tok.encode_ordinary(_PROBE)
    except ValueError as error:
        _refuse(where, f"tiktoken rejects this tokenizer: {error}")


# -- tiktoken rank files ---------------------------------------------------------------------------


def is_tiktoken_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a tiktoken rank file (``<base64> <rank>``), e.g. to tell
    Meta's Llama 3 ``tokenizer.model`` from a SentencePiece one of the same name."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return bool(_TIKTOKEN_LINE.match(first.rstrip(b"\n")))


def read_tiktoken_in_folder(path: str | os.PathLike, folder: str | os.PathLike) -> HFBPETokenizer:
    """A tiktoken rank file of a checkpoint ``folder``: special tokens from its
    ``tokenizer_config.json`` (``added_tokens_decoder``), else Meta's Llama 3 list for Llama 3's
    rank file; the split pattern of the known release (an unknown rank file is refused: the file
    does not record its pattern)."""
    path, folder = Path(path), Path(folder)
    where = str(path)
    ranks, digest = rankfile.read_tiktoken(path)
    known = rankfile.KNOWN_RANK_FILES.get(digest)
    if digest == LLAMA3_RANKS_SHA256:
        n = len(ranks)
        known = {"name": "llama3", "pattern": LLAMA3_PATTERN,
                 "special_tokens": {s: n + i for i, s in enumerate(LLAMA3_SPECIALS)}}  # fmt: skip
    if known is None:
        _refuse(
            where,
            f"a tiktoken rank file of no known release (sha256 {digest[:12]}...): the file does "
            "not record its split pattern",
        )
    config = _tokenizer_config(folder)
    decoder = config.get("added_tokens_decoder") or {}
    if decoder:
        added = [dict(v, id=int(k)) for k, v in decoder.items()]
        specials = _added_specials(added, str(folder / "tokenizer_config.json"))
    else:
        specials = dict(known["special_tokens"])
    llama3 = known["name"] == "llama3"  # Meta's encoder puts <|begin_of_text|> before a text
    bos = _token_name(config.get("bos_token")) or ("<|begin_of_text|>" if llama3 else None)
    if not config.get("add_bos_token", llama3):
        bos = None
    tok = HFBPETokenizer.from_ranks(
        ranks, specials, known["pattern"], name=known["name"], where=where
    )
    tok.bos_token = bos if bos in specials else None
    tok.eos_token = _eos_of(folder, specials)
    if llama3 and tok.eos_token is None and "<|end_of_text|>" in specials:
        tok.eos_token = "<|end_of_text|>"
    tok.source = str(path.relative_to(folder) if path.is_relative_to(folder) else path)
    return tok


CHECKPOINT_FILES = (
    "tokenizer.json, *.tiktoken, tokenizer.model or original/tokenizer.model in tiktoken format"
)


def checkpoint_tokenizer(folder: str | os.PathLike) -> HFBPETokenizer | None:
    """The tokenizer of a Hugging Face checkpoint folder: ``tokenizer.json``, else its one
    tiktoken rank file (``*.tiktoken``, ``tokenizer.model`` / ``original/tokenizer.model`` in
    tiktoken format, not SentencePiece's); None when it has neither."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return read_tokenizer_json(folder / "tokenizer.json")
    rank_files = sorted(folder.glob("*.tiktoken"))
    if len(rank_files) > 1:
        names = ", ".join(p.name for p in rank_files)
        _refuse(str(folder), f"several tiktoken files ({names}); which one is the tokenizer?")
    models = [folder / "tokenizer.model", folder / "original" / "tokenizer.model"]
    for candidate in [*rank_files, *models]:
        if candidate.is_file() and is_tiktoken_file(candidate):
            return read_tiktoken_in_folder(candidate, folder)
    return None


# -- the plugin ------------------------------------------------------------------------------------


@TOKENIZERS.register("hf_bpe")
class HFBPETokenizer(BPETokenizer):
    """A ``bpe`` tokenizer read from a Hugging Face checkpoint (``load_tokenizer`` hands it a
    ``tokenizer.json``), that also knows the checkpoint's BOS and EOS tokens.

    Args:
      pattern, special_tokens, name, num_threads: as ``tokenizers.bpe``.
      bos_token: the special token the checkpoint puts before a text (not added by ``encode``).
      eos_token: the special token the checkpoint ends a text with (``eot_id``).
    """

    kind = "hf_bpe"
    file_patterns = ("tokenizer.json",)  # a Hugging Face tokenizer.json
    folder_files = ("tokenizer.json",)  # a Hugging Face checkpoint folder
    checkpoint_files = CHECKPOINT_FILES  # what from_checkpoint looks for (deepdive convert)

    def __init__(
        self,
        pattern: str | None = "gpt4",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        name: str = "hf_bpe",
        num_threads: int = 2,
        bos_token: str | None = None,
        eos_token: str | None = None,
    ):
        super().__init__(
            pattern=pattern, special_tokens=special_tokens, name=name, num_threads=num_threads
        )
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.source = ""

    def train(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigError(
            "tokenizers.hf_bpe reads Hugging Face tokenizers; train tokenizers.bpe instead"
        )

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike) -> HFBPETokenizer | None:
        """The tokenizer a Hugging Face checkpoint folder publishes, None when it has none of
        :data:`CHECKPOINT_FILES` (what ``deepdive convert`` asks every tokenizer plugin)."""
        return checkpoint_tokenizer(folder)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> BPETokenizer:
        """A ``tokenizer.json`` (Hugging Face's; a deepdive one loads its directory) or a
        checkpoint folder (:meth:`from_checkpoint`)."""
        path = Path(path)
        if path.is_dir():
            found = checkpoint_tokenizer(path)
            if found is None:
                _refuse(str(path), f"no tokenizer found: looked for {CHECKPOINT_FILES}")
            return found
        spec = _read_json(path)
        if isinstance(spec, dict) and "kind" in spec:  # deepdive's own tokenizer directory
            from framework.tokenize.files import load_tokenizer

            return load_tokenizer(path.parent)
        return read_tokenizer_json(path)

    @property
    def vocab_size(self) -> int:
        """Largest id + 1, as ``tokenizers.bpe``'s, also when the file adds no special token."""
        return max([len(self.ranks) - 1, *self.special_tokens.values()]) + 1

    @property
    def eot_id(self) -> int:
        """The checkpoint's end-of-text token (``<|endoftext|>`` when it names none)."""
        if self.eos_token is not None:
            return self.special_tokens[self.eos_token]
        return super().eot_id

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self.special_tokens[self.bos_token]

    def save(self, directory: str | os.PathLike) -> Path:
        """``tokenizers.bpe``'s files, with the BOS/EOS names and the source in tokenizer.json."""
        directory = super().save(directory)
        meta_path = directory / "tokenizer.json"
        meta = json.loads(meta_path.read_text())
        meta |= {"bos_token": self.bos_token, "eos_token": self.eos_token, "source": self.source}
        meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> HFBPETokenizer:
        tok = super().load(directory)
        meta = json.loads((Path(directory) / "tokenizer.json").read_text())
        for key in ("bos_token", "eos_token"):
            value = meta.get(key)
            if value is not None and value not in tok.special_tokens:
                _refuse(str(directory), f"{key} {value!r} is not one of the special tokens")
            setattr(tok, key, value)
        tok.source = str(meta.get("source", ""))
        return tok

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "source": self.source,
        }
