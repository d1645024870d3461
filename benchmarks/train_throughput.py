"""Training throughput and peak memory: deepdive (``deepdive train``) vs PyTorch + transformers.

Both sides train the same GPT-2 configuration from random init with AdamW in fp32 on random
tokens, in separate child processes of this script, with the same thread count and the same
allocator (``LD_PRELOAD`` of tcmalloc when found, else the system malloc; both get the same).
deepdive runs the real trainer (``deepdive train --gin_file experiments/bench/*.gin``, with its
defaults: on one CPU device that means the BLAS products of ``framework/kernels/cpu/gemm.py`` and the
blocked attention kernel of ``framework/kernels/cpu/attention.py``) and its figure is the median
``tokens_per_s`` of metrics.jsonl after the warm-up steps; PyTorch runs a plain
``GPT2LMHeadModel`` loop (forward, loss, backward, clip, AdamW step) timed the same way.
Peak memory is each child's maximum resident set size (``wait4``).

    python benchmarks/train_throughput.py                 # baby GPT b8, GPT-2 124M b1 and b4
    python benchmarks/train_throughput.py --only baby --steps 20 --threads 2

Targets (issue 6): deepdive tokens/s >= 1.0x PyTorch's, peak memory <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONFIGS = {
    # name: (gin file, layers, heads, width, context, vocab, batch)
    "baby": ("bench/baby_gpt.gin", 6, 6, 384, 256, 8192, 8),
    "gpt2_b1": ("bench/gpt2_124m.gin", 12, 12, 768, 1024, 50257, 1),
    "gpt2_b4": ("bench/gpt2_124m.gin", 12, 12, 768, 1024, 50257, 4),
}

TCMALLOC_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
]


def find_allocator() -> str | None:
    for path in TCMALLOC_CANDIDATES:
        if Path(path).exists():
            return path
    return None


def child_env(threads: int, allocator: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"),
        PYTHONPATH=str(REPO),
    )
    env["XLA_FLAGS"] = ""  # one CPU device; XLA's thread pool spans the cores it may use
    if allocator:
        env["LD_PRELOAD"] = allocator
    else:
        env.pop("LD_PRELOAD", None)
    return env


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """Run ``cmd``; return (exit code, peak RSS in GiB, output)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read()
    code = os.waitstatus_to_exitcode(status)
    return code, usage.ru_maxrss / 1024**2, text  # ru_maxrss is KiB on Linux


def deepdive_side(name: str, steps: int, threads: int, allocator: str | None) -> dict:
    gin_file, *_shape, batch = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "framework", "train", "--gin_file", f"experiments/{gin_file}",
               f'--gin.MODEL_DIR="{tmp}/run"', f"--gin.TRAIN_STEPS={steps}",
               f"--gin.BATCH_SIZE={batch}", "--gin.train.log_every=1",
               "--gin.CHECKPOINT_EVERY=1000000000", "--gin.train.progress=False"]  # fmt: skip
        code, rss, text = run_child(cmd, child_env(threads, allocator))
        if code != 0:
            raise SystemExit(f"deepdive {name} failed ({code}):\n{text[-3000:]}")
        rows = [
            json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        ]
    warm = [r["tokens_per_s"] for r in rows if r["step"] > max(2, steps // 4)]
    return {"tokens_per_s": statistics.median(warm), "peak_gib": rss,
            "mfu": statistics.median(r["mfu"] for r in rows if r["step"] > 2)}  # fmt: skip


def torch_worker(name: str, steps: int, threads: int) -> None:
    """The PyTorch side (runs in its own process): prints one JSON line."""
    here = Path(__file__).resolve().parent  # benchmarks/ must not shadow HF's `tokenizers`
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    _gin, layers, heads, width, context, vocab, batch = CONFIGS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=context, n_embd=width, n_layer=layers,
                     n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    model = GPT2LMHeadModel(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    times = []
    for _ in range(steps):
        tokens = torch.randint(0, vocab, (batch, context + 1))
        start = time.perf_counter()
        logits = model(tokens[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    warm = times[max(2, steps // 4) :]
    print(json.dumps({"tokens_per_s": batch * context / statistics.median(warm)}))


def torch_side(name: str, steps: int, threads: int, allocator: str | None) -> dict:
    cmd = [sys.executable, __file__, "--torch_worker", name, "--steps", str(steps),
           "--threads", str(threads)]  # fmt: skip
    code, rss, text = run_child(cmd, child_env(threads, allocator))
    if code != 0:
        raise SystemExit(f"torch {name} failed ({code}):\n{text[-3000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_gib"] = rss
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no_tcmalloc", action="store_true")
    parser.add_argument("--torch_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker(args.torch_worker, args.steps, args.threads)
        return
    allocator = None if args.no_tcmalloc else find_allocator()
    print(f"threads {args.threads}; allocator {allocator or 'system malloc'} (both sides); "
          f"{args.steps} steps, median after warm-up")  # fmt: skip
    header = f"{'config':10} {'deepdive tok/s':>15} {'torch tok/s':>12} {'ratio':>6} " \
             f"{'deepdive GiB':>13} {'torch GiB':>10} {'ratio':>6} {'MFU':>6}"  # fmt: skip
    print(header)
    for name in args.only or list(CONFIGS):
        ours = deepdive_side(name, args.steps, args.threads, allocator)
        theirs = torch_side(name, args.steps, args.threads, allocator)
        print(
            f"{name:10} {ours['tokens_per_s']:15,.0f} {theirs['tokens_per_s']:12,.0f} "
            f"{ours['tokens_per_s'] / theirs['tokens_per_s']:6.2f} {ours['peak_gib']:13.2f} "
            f"{theirs['peak_gib']:10.2f} {ours['peak_gib'] / theirs['peak_gib']:6.2f} "
            f"{ours['mfu']:6.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
