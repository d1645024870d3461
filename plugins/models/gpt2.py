"""``gpt2``: the GPT-2 decoder (Radford et al. 2019), numerically the same as HF ``GPT2LMHeadModel``.

Learned absolute positions, pre-LayerNorm blocks, multi-head attention with biases, a GELU
(tanh approximation, HF's ``gelu_new``) MLP of width 4·C, a final LayerNorm and an output head
tied to the token embedding. Hugging Face checkpoints load with ``framework.hf_import``
(``deepdive convert hf_gpt2``).

    x = wte(tokens) + wpe(positions)                 # [B, T, C]
    for each block:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))
    logits = ln_f(x) @ wteᵀ                          # [B, T, V], fp32
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from framework.core.registry import MODELS
from framework.models import layers
from framework.models.kv_cache import KVCache


@MODELS.register("gpt2")
@dataclasses.dataclass(frozen=True)
class GPT2Config(layers.PalmFlopsPerToken):
    """GPT-2 hyper-parameters (defaults: GPT-2 small, 124M parameters).

    ``param_dtype`` / ``compute_dtype``: the dtype policy (``layers.check_dtypes``): how weights
    are stored and what the matmuls run in; fp32/fp32 by default, fp32/bf16 for accelerators.
    ``attention_impl``: None (automatic: the blocked CPU kernel of ``framework/kernels/cpu/attention.py``
    for fp32 causal attention on one CPU device, else ``jax.nn.dot_product_attention``), "xla"
    (always ``jax.nn.dot_product_attention``), "cudnn" (flash attention on NVIDIA GPUs, plain
    causal training path) or "lowmem" (``layers.lowmem_attention``: keeps no T×T matrix for the
    backward pass, in XLA ops). ``remat``: what each block keeps for the backward pass, a name
    of ``layers.REMAT_POLICIES`` (``none``, ``full``, ``dots_saveable``, ...).
    ``scan_layers`` (default True): the blocks' parameters stacked on a leading ``layers`` axis
    and run by one ``lax.scan``, so compile time and program size do not grow with depth
    (unrolled again on CPU targets, ``backend.layer_loop_unroll``); False: a module per layer.
    Checkpoints of either layout resume in the other.
    ``dropout`` applies to the embeddings and to each residual branch (not to attention weights).
    """

    vocab_size: int = 50257
    max_seq_len: int = 1024
    num_layers: int = 12
    num_heads: int = 12
    d_model: int = 768
    mlp_dim: int | None = None  # None: 4 * d_model
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    param_dtype: str = "float32"  # how parameters (and optimizer moments) are stored
    compute_dtype: str = "float32"  # what the matmuls run in (bf16 on accelerators)
    attention_impl: str | None = None
    remat: str | bool = "none"  # layers.REMAT_POLICIES (True/False: "full"/"none")
    scan_layers: bool = True  # blocks stacked on a `layers` axis, one scanned block (see layers)

    def __post_init__(self):
        from framework.core.errors import ConfigError

        layers.remat_policy(self.remat)  # an unknown policy name fails here, with the list
        layers.check_positive(
            "gpt2",
            vocab_size=self.vocab_size,
            max_seq_len=self.max_seq_len,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_model=self.d_model,
        )
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"models.gpt2: d_model={self.d_model} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        layers.check_dtypes("gpt2", self.param_dtype, self.compute_dtype)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"models.gpt2: dropout={self.dropout} must be in [0, 1)")

    # -- derived ------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def hidden_dim(self) -> int:
        return self.mlp_dim or 4 * self.d_model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- the Model protocol ------------------------------------------------------------------
    def build(self, rngs: nnx.Rngs) -> GPT2:
        return GPT2(self, rngs=rngs)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` drops the position table (nanoGPT convention).

        The token embedding stays in: it is tied to the output head, which is a matmul.
        """
        c, f, v, L = self.d_model, self.hidden_dim, self.vocab_size, self.num_layers
        per_block = (
            2 * 2 * c  # ln1, ln2 (scale + bias)
            + c * 3 * c
            + 3 * c  # qkv kernel + bias
            + c * c
            + c  # out kernel + bias
            + c * f
            + f
            + f * c
            + c  # mlp fc, proj (+ biases)
        )
        total = v * c + self.max_seq_len * c + L * per_block + 2 * c  # + ln_f
        return total - self.max_seq_len * c if non_embedding else total


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        c = config
        init = layers.normal(c.init_std)
        # GPT-2 scales the residual projections by 1/sqrt(2·L) at init.
        out_init = layers.normal(c.init_std / math.sqrt(2 * c.num_layers))
        self.ln1 = layers.LayerNorm(
            c.d_model, eps=c.layer_norm_eps, dtype=c.compute_dtype, rngs=rngs
        )
        self.attn = layers.CausalSelfAttention(
            c.d_model,
            c.num_heads,
            use_bias=True,
            rope_theta=None,
            init=init,
            out_init=out_init,
            dtype=c.compute_dtype,
            implementation=c.attention_impl,
            rngs=rngs,
        )
        self.ln2 = layers.LayerNorm(
            c.d_model, eps=c.layer_norm_eps, dtype=c.compute_dtype, rngs=rngs
        )
        self.mlp = layers.GeluMLP(
            c.d_model,
            c.hidden_dim,
            use_bias=True,
            init=init,
            out_init=out_init,
            dtype=c.compute_dtype,
            rngs=rngs,
        )
        drop_rngs = layers.dropout_rngs(rngs)
        self.dropout = nnx.Dropout(c.dropout, rngs=drop_rngs) if c.dropout > 0 else None

    def _drop(self, x: jax.Array) -> jax.Array:
        return x if self.dropout is None else self.dropout(x)

    def __call__(self, x, positions, ctx, kv=None):
        a, kv = self.attn(self.ln1(x), positions, ctx, kv)
        x = x + self._drop(a)
        x = x + self._drop(self.mlp(self.ln2(x)))
        return x, kv


class GPT2(nnx.Module):
    """The GPT-2 language model; call contract in ``plugins/models/__init__.py``."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        c = config
        self.config = config
        self.wte = layers.Embed(
            c.vocab_size,
            c.d_model,
            init=layers.normal(c.init_std),
            dtype=c.compute_dtype,
            rngs=rngs,
        )
        self.wpe = layers.LearnedPositions(
            c.max_seq_len,
            c.d_model,
            init=layers.normal(c.init_std),
            dtype=c.compute_dtype,
            rngs=rngs,
        )
        if c.scan_layers:
            self.blocks = layers.stacked_blocks(lambda r: Block(c, rngs=r), c.num_layers, rngs)
        else:
            self.blocks = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
        self.ln_f = layers.LayerNorm(
            c.d_model, eps=c.layer_norm_eps, dtype=c.compute_dtype, rngs=rngs
        )
        layers.store_params_in(self, c.param_dtype)
        drop_rngs = layers.dropout_rngs(rngs)
        self.dropout = nnx.Dropout(c.dropout, rngs=drop_rngs) if c.dropout > 0 else None

    def features(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        *,
        cache: KVCache | None = None,
        token_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Final hidden states ``[B, T, C]`` (after ``ln_f``) and the updated cache."""
        batch, length = tokens.shape
        if cache is None:
            positions, ctx = layers.forward_context(tokens, positions, token_mask, segment_ids)
            valid = None
        else:
            mask = jnp.ones(tokens.shape, jnp.bool_) if token_mask is None else token_mask
            if positions is None:
                positions = cache.positions_for(mask)
            ctx, valid = layers.attention_context(batch, length, mask, cache.valid, cache.index)

        x = self.wte(tokens) + self.wpe(positions)  # [B, T, C]
        if self.dropout is not None:
            x = self.dropout(x)
        x, new_kv = layers.run_blocks(
            self.blocks, x, positions, ctx, cache, remat=self.config.remat
        )
        x = self.ln_f(x)
        if cache is not None:
            cache = cache.replace(k=new_kv[0], v=new_kv[1], valid=valid, index=cache.index + length)
        return x, cache

    def logits(self, x: jax.Array) -> jax.Array:
        """Hidden states ``[B, T, C]`` -> fp32 logits ``[B, T, V]`` (tied head)."""
        return self.wte.attend(x)

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        *,
        cache: KVCache | None = None,
        token_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        x, cache = self.features(
            tokens, positions, cache=cache, token_mask=token_mask, segment_ids=segment_ids
        )
        return self.logits(x), cache
