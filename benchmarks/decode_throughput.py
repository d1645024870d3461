"""Decode throughput: deepdive's KV-cache generation vs Hugging Face ``generate``, same weights.

For each model (the baby GPT: 6 layers, 6 heads, 384 wide, vocab 8192; GPT-2 124M) a random HF
``GPT2LMHeadModel`` is saved with ``save_pretrained`` and imported into deepdive with
``framework.hf_import``, so both sides decode the very same fp32 weights. Each side then decodes
greedily 256 new tokens after a 64-token prompt at batch 1 and 8 (HF with its KV cache,
``use_cache=True``; deepdive with ``framework.sample.Generator``: jitted prefill + one compiled
``while_loop``). tokens/s = batch · 256 / wall time of the whole call (prefill included), best of
``--repeats`` after a warm-up call (which compiles / warms the caches).

The bandwidth-bound limit: every decode step streams every weight once, so
``tokens/s ≤ batch · bandwidth / weight_bytes`` (KV-cache reads ignored: < 2% here). The
bandwidth is measured with numpy (``a.sum()`` on 1 GiB, single-threaded and split over all
cores; the higher read rate is used), and each side is reported as a % of the limit.

    python benchmarks/decode_throughput.py                 # everything (a few minutes)
    python benchmarks/decode_throughput.py --models baby --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = {
    "baby": dict(n_layer=6, n_head=6, n_embd=384, vocab_size=8192, n_positions=1024),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


def measure_bandwidth(gib: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """Read bandwidth (bytes/s) of summing a large float32 array: 1 thread and all cores."""
    a = np.ones(int(gib * 2**30) // 4, np.float32)
    a.sum()
    single = min(_timed(lambda: a.sum()) for _ in range(repeats))
    threads = os.cpu_count() or 1
    parts = np.array_split(a, threads)

    def parallel():
        workers = [threading.Thread(target=p.sum) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    multi = min(_timed(parallel) for _ in range(repeats))
    b = np.empty_like(a)
    copy = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return {
        "read_1_thread": a.nbytes / single,
        f"read_{threads}_threads": a.nbytes / multi,
        "copy_read_plus_write": 2 * a.nbytes / copy,
        "used": max(a.nbytes / single, a.nbytes / multi),
    }


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def make_hf_model(name: str, directory: Path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**MODELS[name], bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(directory)
    return model


def hf_generate(model, prompt: np.ndarray, new_tokens: int, repeats: int):
    import torch

    ids = torch.from_numpy(prompt.astype(np.int64))
    kwargs = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
        pad_token_id=0, attention_mask=torch.ones_like(ids),
    )  # fmt: skip
    with torch.inference_mode():
        out = model.generate(ids, **kwargs)  # warm-up
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            out = model.generate(ids, **kwargs)
            times.append(time.perf_counter() - began)
    return out[:, prompt.shape[1] :].numpy(), min(times)


def deepdive_generate(generator, prompt: np.ndarray, new_tokens: int, repeats: int):
    rows = [list(map(int, r)) for r in prompt]

    def once():
        return generator.generate(rows, max_new_tokens=new_tokens, stream_every=0)

    once()  # compiles prefill and the decode loop
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = once()
        times.append(time.perf_counter() - began)
    return np.array([c.tokens for c in out]), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["baby", "gpt2"], choices=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--prompt_len", type=int, default=64)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import jax
    import torch

    from framework.core import discovery
    from framework.core.registry import SAMPLERS
    from framework.models import hf_import
    from framework.sample import generate as sample

    torch.set_num_threads(os.cpu_count() or 1)
    discovery.load_plugins()
    bw = measure_bandwidth()
    print(
        f"machine: {os.cpu_count()} CPU cores, jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "memory bandwidth (numpy): "
        + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items() if k != "used")
        + f"; bound uses {bw['used'] / 1e9:.1f} GB/s"
    )
    header = (
        f"{'model':<6} {'batch':>5} {'weights MB':>10} {'bound tok/s':>11} "
        f"{'torch tok/s':>11} {'deepdive tok/s':>14} {'ratio':>6} "
        f"{'torch %bound':>12} {'deepdive %bound':>15} {'same tokens':>11}"
    )
    print(header)
    results = []
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            hf_model = make_hf_model(name, Path(tmp))
            _, config, model = hf_import.load(tmp, expect="gpt2")
        weight_bytes = sum(p.numel() * p.element_size() for p in hf_model.parameters())
        rng = np.random.default_rng(0)
        for batch in args.batches:
            prompt = rng.integers(1, MODELS[name]["vocab_size"], (batch, args.prompt_len))
            generator = sample.Generator(model, config, SAMPLERS.get("greedy")(), batch_size=batch)
            dd_tokens, dd_time = deepdive_generate(generator, prompt, args.new_tokens, args.repeats)
            hf_tokens, hf_time = hf_generate(hf_model, prompt, args.new_tokens, args.repeats)
            n = batch * args.new_tokens
            bound = batch * bw["used"] / weight_bytes
            same = float(np.mean(dd_tokens == hf_tokens))
            row = {
                "model": name, "batch": batch, "weight_bytes": weight_bytes,
                "bound_tokens_per_s": bound, "torch_tokens_per_s": n / hf_time,
                "deepdive_tokens_per_s": n / dd_time, "ratio": hf_time / dd_time,
                "torch_pct_bound": 100 * n / hf_time / bound,
                "deepdive_pct_bound": 100 * n / dd_time / bound, "same_tokens": same,
            }  # fmt: skip
            results.append(row)
            print(
                f"{name:<6} {batch:>5} {weight_bytes / 1e6:>10.1f} {bound:>11.1f} "
                f"{row['torch_tokens_per_s']:>11.1f} {row['deepdive_tokens_per_s']:>14.1f} "
                f"{row['ratio']:>5.2f}x {row['torch_pct_bound']:>11.0f}% "
                f"{row['deepdive_pct_bound']:>14.0f}% {same:>10.1%}",
                flush=True,
            )
    print(
        "targets: ratio >= 2x on the baby GPT (batch 1 and 8); deepdive >= 90% of the bound on "
        "GPT-2 124M at batch 1. 'same tokens': share of greedy tokens equal on both sides."
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth": bw, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
