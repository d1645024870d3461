"""Training metrics: metrics.jsonl, TensorBoard events, a PNG plot, a progress bar, and MFU.

MFU follows PaLM Appendix B / nanoGPT (``estimate_mfu``): training FLOPs per token
``6·N + 12·L·H·Q·T`` (N = non-embedding parameters, attention counted non-causal), against the
dense bf16 peak of each device (the table below; no sparsity numbers) or, on CPU, a peak
measured once with a large float32 matmul:

    MFU = tokens_per_s · flops_per_token / (num_devices · peak_per_device)

Only process 0 writes files. ``metrics.jsonl`` has one JSON object per logged step with
``step, loss, lr, grad_norm, tokens_per_s, mfu`` and, on evaluation steps, ``val_loss, val_bpb``.
In a bucket run directory (no appends on object stores) the file is rewritten whole, at most
every ``sync_every_s`` and whenever the trainer saves a checkpoint (``flush``), and TensorBoard
writes to a local folder copied into the bucket at the same moments.
"""

from __future__ import annotations

import functools
import io
import json
import math
import shutil
import tempfile
import time
from typing import Any

from framework.core import paths
from framework.core.paths import PathLike
from framework.models.layers import palm_flops_per_token

# Dense bf16 peak FLOP/s per device, matched against ``jax.Device.device_kind`` (lower case).
PEAK_FLOPS: list[tuple[str, float]] = [
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),
    ("tpu v6 lite", 918e12),
    ("tpu v6e", 918e12),
    ("tpu7x", 2307e12),
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("a100", 312e12),
]


def peak_for_kind(device_kind: str) -> float | None:
    """The table's peak for a device kind (None when unknown)."""
    kind = device_kind.lower()
    for key, peak in PEAK_FLOPS:
        if key in kind:
            return peak
    return None


@functools.lru_cache(maxsize=1)
def measured_cpu_peak(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the host measured with a float32 ``size³`` matmul (best of ``repeats``)."""
    import jax
    import jax.numpy as jnp

    device = jax.local_devices(backend="cpu")[0]
    a = jax.device_put(jnp.ones((size, size), jnp.float32), device)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops_per_device() -> tuple[float, str]:
    """``(peak FLOP/s per device, where the number came from)``."""
    import jax

    device = jax.devices()[0]
    peak = peak_for_kind(device.device_kind)
    if peak is not None:
        return peak, f"{device.device_kind} table (dense bf16)"
    if device.platform == "cpu":
        # virtual CPU devices share the host's cores: split the host's measured figure
        host = measured_cpu_peak()
        return host / max(1, jax.local_device_count()), "CPU measured fp32 matmul"
    return math.nan, f"unknown device {device.device_kind}"


def model_flops_per_token(model_config: Any, seq_len: int) -> float:
    """The model's own ``flops_per_token(seq_len)``, else PaLM's formula from its fields."""
    if hasattr(model_config, "flops_per_token"):
        return float(model_config.flops_per_token(seq_len))
    n = model_config.num_params(non_embedding=True)
    return palm_flops_per_token(
        n, model_config.num_layers, model_config.num_heads,
        model_config.d_model // model_config.num_heads, seq_len,
    )  # fmt: skip


def mfu(tokens_per_s: float, flops_per_token: float, num_devices: int, peak: float) -> float:
    return tokens_per_s * flops_per_token / (num_devices * peak)


def bits_per_byte(loss_nats: float, bytes_per_token: float | None) -> float | None:
    """Tokenizer-independent loss: ``loss · tokens / (bytes · ln 2)``."""
    if not bytes_per_token:
        return None
    return loss_nats / (bytes_per_token * math.log(2))


def read_metrics(path: PathLike) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (every reader uses this one: trainer, sweeps, reports).

    A missing file has no rows. A line that is not a JSON object is skipped: the last line of a
    file being written, or one cut by a kill (the trainer rewrites the file on resume, so a cut
    line never sits between good ones for long).
    """
    try:
        text = paths.as_path(path).read_text()
    except (OSError, FileNotFoundError):
        return []
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class MetricsWriter:
    """metrics.jsonl + TensorBoard (+ the plot at the end); no-ops when ``enabled`` is False."""

    def __init__(
        self,
        model_dir: PathLike,
        resume_step: int = 0,
        enabled: bool = True,
        sync_every_s: float = 30.0,
    ):
        self.dir = paths.as_path(model_dir)
        self.enabled = enabled
        self.path = self.dir / "metrics.jsonl"
        self.remote = paths.is_url(self.dir)
        self.sync_every_s = sync_every_s
        self._tb = None
        self._tb_dir = None
        if not enabled:
            return
        # a resumed run forgets what the killed run logged after its last checkpoint
        self._rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        self._synced_at = time.monotonic()
        self._write_all()
        try:
            from tensorboardX import SummaryWriter

            tb_dir = self.dir / "tensorboard"
            if self.remote:
                self._tb_dir = tempfile.mkdtemp(prefix="deepdive-tensorboard-")
                if tb_dir.exists():  # earlier attempts' event files stay in the bucket
                    paths.copy_tree(tb_dir, self._tb_dir)
            self._tb = SummaryWriter(
                self._tb_dir or str(tb_dir), purge_step=resume_step + 1 if resume_step else None
            )
        except ImportError:  # pragma: no cover - tensorboardX is a dependency
            self._tb = None

    def _write_all(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self._rows))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _finite_or_none(v) for k, v in row.items()}
        self._rows.append(clean)
        if not self.remote:
            with self.path.open("a") as f:
                f.write(json.dumps(clean) + "\n")
        elif time.monotonic() - self._synced_at >= self.sync_every_s:
            self.flush()
        if self._tb is not None:
            step = int(row["step"])
            for key, value in clean.items():
                if key != "step" and isinstance(value, int | float):
                    self._tb.add_scalar(key, value, step)

    def flush(self) -> None:
        """Make the bucket copy current (metrics.jsonl and TensorBoard); local files already are."""
        if not (self.enabled and self.remote):
            return
        self._write_all()
        if self._tb is not None:
            self._tb.flush()
            paths.copy_tree(self._tb_dir, self.dir / "tensorboard")
        self._synced_at = time.monotonic()

    def close(self, plot: bool = True) -> Any:
        if not self.enabled:
            return None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        self.flush()
        if self._tb_dir is not None:
            shutil.rmtree(self._tb_dir, ignore_errors=True)
        return plot_metrics(self.path, self.dir / "plots" / "metrics.png") if plot else None


def _finite_or_none(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the fact visible
    return value


def plot_metrics(jsonl: PathLike, png: PathLike) -> Any:
    """Loss (train and validation), learning rate and tokens/s against the step, as a PNG."""
    rows = read_metrics(jsonl)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("loss", "train loss"), ("val_loss", "validation loss")):
        xs, ys = series(key)
        if xs:
            axes[0].plot(xs, ys, label=label, marker="o" if key == "val_loss" else None)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (nats/token)")
    axes[0].legend()
    axes[1].plot(*series("lr"))
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("learning rate")
    axes[2].plot(*series("tokens_per_s"))
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("tokens/s")
    fig.tight_layout()
    png = paths.as_path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    png.write_bytes(image.getvalue())
    return png


class Progress:
    """A tqdm bar over training steps showing loss and tokens/s (process 0 only)."""

    def __init__(self, total: int, initial: int, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="train", unit="step",
                             dynamic_ncols=True)  # fmt: skip

    def update(self, n: int, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(
                    {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                    refresh=False,
                )

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
