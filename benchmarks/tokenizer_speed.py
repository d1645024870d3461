"""Tokenizer speed, side by side: deepdive's BPE vs rustbpe, Hugging Face tokenizers, sentencepiece
(training) and vs tiktoken, Hugging Face, sentencepiece (encoding), on the same text in one run.

    python benchmarks/tokenizer_speed.py [--text FILE] [--vocab 4096 16384]
        [--repeat 3] [--doc_chars 5000] [--encode_repeat 15]

Training: MB/s of input text (best of ``--repeat``), GPT-4 split pattern for the byte-level
trainers; ``deepdive`` is the trainer as installed (compiled core when built), ``deepdive_py``
the pure-Python fallback. Encoding: MB/s over document-sized pieces (``--doc_chars``), 1 and 2
threads, each tokenizer with its own vocabulary of the largest size trained above; bytes per
token. Ratios are deepdive / peer (> 1 means deepdive is faster). The repeats of all contenders
are interleaved (round-robin), so a burst of load on a shared machine hits every one alike.
Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

# This file is named like Hugging Face's `tokenizers` package: drop its own folder from the path
# (Python puts it first) so `import tokenizers` finds the library, then add the repository root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from plugins.tokenizers import bpe, rankfile  # noqa: E402
from plugins.tokenizers.bpe import BPETokenizer  # noqa: E402
from plugins.tokenizers.sentencepiece import SentencePieceTokenizer  # noqa: E402

DEFAULT_TEXT = (
    Path(__file__).resolve().parent.parent.parent / "shared/corpora/text/tinyshakespeare.txt"
)


def best_times(fns: dict, repeat: int) -> tuple[dict[str, float], dict[str, object]]:
    """Best wall time of each function over ``repeat`` round-robin rounds, and its last result."""
    best = dict.fromkeys(fns, float("inf"))
    results: dict[str, object] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def ratio_row(speeds: dict[str, float]) -> str:
    ours = speeds["deepdive"]
    return "  ".join(
        f"{name} {s:6.2f} MB/s" + ("" if name == "deepdive" else f" (x{ours / s:.2f})")
        for name, s in speeds.items()
    )


def train_deepdive(text: str, vocab: int):
    return BPETokenizer().train([text], vocab)


def train_deepdive_python(text: str, vocab: int):
    return BPETokenizer().train([text], vocab, engine="python")


def train_rustbpe(text: str, vocab: int):
    import rustbpe

    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter([text]), vocab, pattern=rankfile.GPT4_PATTERN)
    return tok


def train_hf(text: str, vocab: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(rankfile.GPT4_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([text], trainer)
    return tok


def train_spm(text: str, vocab: int):
    return SentencePieceTokenizer(model_type="bpe").train([text], vocab)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=str(DEFAULT_TEXT))
    parser.add_argument("--vocab", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--doc_chars", type=int, default=5000)
    parser.add_argument(
        "--encode_repeat", type=int, default=15, help="rounds for encoding (each is short)"
    )
    args = parser.parse_args()
    text = Path(args.text).read_text(encoding="utf-8")
    mb = len(text.encode()) / 1e6
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"text: {args.text} ({mb:.2f} MB); {os.cpu_count()} CPUs (load {load:.1f}); "
        f"best of {args.repeat}; deepdive trainer: {bpe.ENGINE}"
    )

    trainers = {"deepdive": train_deepdive}
    if bpe._core is not None:
        trainers["deepdive_py"] = train_deepdive_python
    if importlib.util.find_spec("rustbpe"):
        trainers["rustbpe"] = train_rustbpe
    if importlib.util.find_spec("tokenizers"):
        trainers["hf_tokenizers"] = train_hf
    trainers["sentencepiece"] = train_spm

    print("\n== training (MB/s of input; ratio = deepdive / peer) ==")
    trained: dict[str, object] = {}
    for vocab in args.vocab:
        fns = {name: (lambda fn=fn, v=vocab: fn(text, v)) for name, fn in trainers.items()}
        seconds, trained = best_times(fns, args.repeat)
        speeds = {name: mb / s for name, s in seconds.items()}
        print(f"vocab {vocab:>6}: {ratio_row(speeds)}")

    # -- encoding, with the vocabularies of the largest size -------------------------------------
    import tiktoken

    docs = [text[i : i + args.doc_chars] for i in range(0, len(text), args.doc_chars)]
    ours: BPETokenizer = trained["deepdive"]  # type: ignore[assignment]
    tk = tiktoken.Encoding(
        "peer", pat_str=ours.pattern, mergeable_ranks=ours.ranks, special_tokens={}
    )
    encoders = {
        "deepdive": {
            1: lambda: ours.encode_ordinary_batch(docs, num_threads=1),
            2: lambda: ours.encode_ordinary_batch(docs, num_threads=2),
        },
        "deepdive_encode": {  # encode_batch: tiktoken's special-token check on every document
            1: lambda: ours.encode_batch(docs, num_threads=1),
            2: lambda: ours.encode_batch(docs, num_threads=2),
        },
        "tiktoken": {
            1: lambda: [tk.encode_ordinary(d) for d in docs],
            2: lambda: tk.encode_ordinary_batch(docs, num_threads=2),
        },
    }
    if "hf_tokenizers" in trained:
        hf = trained["hf_tokenizers"]
        encoders["hf_tokenizers"] = {
            1: lambda: [hf.encode(d).ids for d in docs],
            2: lambda: [e.ids for e in hf.encode_batch(docs)],
        }
    sp = trained["sentencepiece"]
    encoders["sentencepiece"] = {
        1: lambda: [sp.processor.encode(d) for d in docs],
        2: lambda: sp.processor.encode(docs, num_threads=2),
    }
    print(
        f"\n== encoding {len(docs)} documents of {args.doc_chars} chars (vocab {args.vocab[-1]}) =="
    )
    bpt = {}
    for threads in (1, 2):
        fns = {name: fns[threads] for name, fns in encoders.items()}
        seconds, ids = best_times(fns, args.encode_repeat)
        speeds = {name: mb / s for name, s in seconds.items()}
        bpt = {name: len(text.encode()) / sum(len(x) for x in out) for name, out in ids.items()}
        print(f"{threads} thread(s): {ratio_row(speeds)}")
    print("bytes/token: " + "  ".join(f"{n} {b:.3f}" for n, b in bpt.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
