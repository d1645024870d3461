"""A minimal GPT-style model following the models contract (``plugins/models/__init__.py``), for trainer tests.

Registered as ``models.tiny_test_lm`` when imported (``--plugin_module tests.train.tiny_model``
in subprocess tests), so trainer tests do not depend on the model plugins. Parameters carry
logical axis names like the real plugins. ``data.slow_synthetic`` is the synthetic source with a
delay per batch, so a test can kill a run in the middle.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from framework.core.registry import DATA, MODELS
from framework.train.input import Synthetic


def _init(names: tuple[str | None, ...], std: float = 0.02):
    return nnx.with_partitioning(nnx.initializers.normal(std), names)


class _Block(nnx.Module):
    def __init__(self, cfg: TinyLM, rngs: nnx.Rngs):
        d, h = cfg.d_model, cfg.num_heads
        self.num_heads = h
        self.ln = nnx.LayerNorm(
            d,
            rngs=rngs,
            scale_init=nnx.with_partitioning(nnx.initializers.ones, ("norm",)),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("norm",)),
        )
        self.qkv = nnx.Linear(
            d,
            3 * d,
            kernel_init=_init(("embed", "heads")),
            rngs=rngs,
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("heads",)),
        )
        self.out = nnx.Linear(
            d,
            d,
            kernel_init=_init(("heads", "embed")),
            rngs=rngs,
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)),
        )
        self.up = nnx.Linear(
            d,
            4 * d,
            kernel_init=_init(("embed", "mlp")),
            rngs=rngs,
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("mlp",)),
        )
        self.down = nnx.Linear(
            4 * d,
            d,
            kernel_init=_init(("mlp", "embed")),
            rngs=rngs,
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)),
        )

    def __call__(self, x):  # x: [B, T, D]
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(self.ln(x)), 3, axis=-1)
        q, k, v = (a.reshape(b, t, self.num_heads, d // self.num_heads) for a in (q, k, v))
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(d // self.num_heads).astype(x.dtype)
        att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, jnp.finfo(att.dtype).min)
        y = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(att, axis=-1), v).reshape(b, t, d)
        x = x + self.out(y)
        return x + self.down(jax.nn.gelu(self.up(x)))


class TinyLMModule(nnx.Module):
    def __init__(self, cfg: TinyLM, rngs: nnx.Rngs):
        self.wte = nnx.Embed(
            cfg.vocab_size, cfg.d_model, rngs=rngs, embedding_init=_init(("vocab", "embed"))
        )
        self.wpe = nnx.Embed(
            cfg.max_seq_len, cfg.d_model, rngs=rngs, embedding_init=_init((None, "embed"))
        )
        self.blocks = nnx.List([_Block(cfg, rngs) for _ in range(cfg.num_layers)])

    def __call__(self, tokens, positions=None, *, cache=None, token_mask=None):
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t), (b, t))
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.wte.attend(x).astype(jnp.float32), None


@MODELS.register("tiny_test_lm")
@dataclasses.dataclass
class TinyLM:
    vocab_size: int = 64
    max_seq_len: int = 32
    num_layers: int = 2
    num_heads: int = 2
    d_model: int = 16

    def build(self, rngs: nnx.Rngs) -> nnx.Module:
        return TinyLMModule(self, rngs)

    def num_params(self, non_embedding: bool = True) -> int:
        d, L = self.d_model, self.num_layers
        per_layer = (
            2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
        )
        n = L * per_layer + self.vocab_size * d + self.max_seq_len * d
        return n - self.max_seq_len * d if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        return 6 * self.num_params() + 12 * self.num_layers * self.d_model * seq_len


@DATA.register("slow_synthetic")
class SlowSynthetic(Synthetic.__wrapped__ if hasattr(Synthetic, "__wrapped__") else Synthetic):
    """``data.synthetic`` that sleeps ``delay_s`` before each training batch."""

    def __init__(self, vocab_size: int | None = None, delay_s: float = 0.05):
        super().__init__(vocab_size)
        self.delay_s = delay_s

    def train_iterator(self, *args, **kwargs):
        import time

        inner = super().train_iterator(*args, **kwargs)
        make = inner._make_batch

        def slow(seed, index):
            time.sleep(self.delay_s)
            return make(seed, index)

        inner._make_batch = slow
        return inner
