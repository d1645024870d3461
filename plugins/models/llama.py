"""``llama``: the Llama decoder (Touvron et al. 2023), numerically the same as HF ``LlamaForCausalLM``.

Rotary positions (RoPE, "rotate half" layout), RMSNorm before each sub-layer, grouped-query
attention (``num_kv_heads`` key/value heads shared by groups of query heads), a SwiGLU MLP, no
biases, and an output head that is untied from the token embedding unless ``tie_embeddings``.

    x = embed(tokens)                                 # [B, T, C]
    for each block:  x = x + attn(norm1(x), rope);  x = x + swiglu(norm2(x))
    logits = norm_f(x) @ lm_head                      # [B, T, V], fp32
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

ROPE_SCALINGS = ("llama3",)  # values of LlamaConfig.rope_scaling besides None


@MODELS.register("llama")
@dataclasses.dataclass(frozen=True)
class LlamaConfig(layers.PalmFlopsPerToken):
    """Llama hyper-parameters (defaults: a ~110M model, 12 layers × 768, 4 key/value heads).

    ``num_kv_heads``: None = num_heads (multi-head); 1 = multi-query. ``mlp_dim``: None = Meta's
    rule, ``multiple_of`` rounded up from 2/3 · 4 · d_model. ``max_seq_len`` is the context the
    trainer and sampler check against (RoPE itself has no table).

    ``rope_scaling``: None = plain RoPE; ``"llama3"`` = Llama 3.1's long-context frequency
    scaling (``layers.llama3_inv_freq``) with ``rope_scaling_factor``, ``rope_low_freq_factor``,
    ``rope_high_freq_factor`` and ``rope_original_max_seq_len`` (HF ``rope_scaling`` keys
    ``factor``, ``low_freq_factor``, ``high_freq_factor``, ``original_max_position_embeddings``);
    those four are ignored when ``rope_scaling`` is None. The dtype policy
    (``param_dtype``, ``compute_dtype``), ``attention_impl``, ``remat`` and ``scan_layers`` are as
    for ``gpt2``.
    """

    vocab_size: int = 32000
    max_seq_len: int = 2048
    num_layers: int = 12
    num_heads: int = 12
    d_model: int = 768
    num_kv_heads: int | None = 4
    mlp_dim: int | None = None
    multiple_of: int = 256
    rope_theta: float = 10000.0
    rope_scaling: str | None = None  # None (plain RoPE) or one of ROPE_SCALINGS
    rope_scaling_factor: float = 8.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_seq_len: int = 8192
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
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
            "llama",
            vocab_size=self.vocab_size,
            max_seq_len=self.max_seq_len,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_model=self.d_model,
            kv_heads=self.kv_heads,
        )
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"models.llama: d_model={self.d_model} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.num_heads % self.kv_heads:
            raise ConfigError(
                f"models.llama: num_heads={self.num_heads} is not a multiple of "
                f"num_kv_heads={self.kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"models.llama: head size {self.head_dim} must be even for RoPE")
        layers.check_dtypes("llama", self.param_dtype, self.compute_dtype)
        self._check_rope_scaling()

    def _check_rope_scaling(self) -> None:
        from framework.core.errors import ConfigError

        if self.rope_scaling is None:
            return
        if self.rope_scaling not in ROPE_SCALINGS:
            raise ConfigError(
                f"models.llama: rope_scaling={self.rope_scaling!r}; known: None, "
                + ", ".join(repr(name) for name in ROPE_SCALINGS)
            )
        layers.check_positive(
            "llama",
            rope_scaling_factor=self.rope_scaling_factor,
            rope_low_freq_factor=self.rope_low_freq_factor,
            rope_original_max_seq_len=self.rope_original_max_seq_len,
        )
        if self.rope_high_freq_factor <= self.rope_low_freq_factor:
            raise ConfigError(
                f"models.llama: rope_high_freq_factor={self.rope_high_freq_factor} must exceed "
                f"rope_low_freq_factor={self.rope_low_freq_factor}"
            )

    # -- derived ------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def hidden_dim(self) -> int:
        if self.mlp_dim:
            return self.mlp_dim
        hidden = int(2 * 4 * self.d_model / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    @property
    def rope_frequency_scaling(self) -> layers.Llama3RopeScaling | None:
        """What ``rope_scaling`` does to the RoPE frequencies (None: plain RoPE)."""
        if self.rope_scaling is None:
            return None
        return layers.Llama3RopeScaling(
            factor=float(self.rope_scaling_factor),
            low_freq_factor=float(self.rope_low_freq_factor),
            high_freq_factor=float(self.rope_high_freq_factor),
            original_max_seq_len=int(self.rope_original_max_seq_len),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- the Model protocol ------------------------------------------------------------------
    def build(self, rngs: nnx.Rngs) -> Llama:
        return Llama(self, rngs=rngs)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. ``non_embedding`` drops the input embedding table when the head is
        untied (a lookup, not a matmul); a tied table stays in, as for GPT-2 (nanoGPT convention).
        """
        c, f, v, L = self.d_model, self.hidden_dim, self.vocab_size, self.num_layers
        h, k, d = self.num_heads, self.kv_heads, self.head_dim
        per_block = 2 * c + c * h * d + c * 2 * k * d + h * d * c + c * 2 * f + f * c
        head = 0 if self.tie_embeddings else c * v
        total = v * c + L * per_block + c + head
        if non_embedding and not self.tie_embeddings:
            total -= v * c
        return total


class Block(nnx.Module):
    """``x + attn(rms1(x))`` then ``x + swiglu(rms2(x))``."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        c = config
        init = layers.normal(c.init_std)
        out_init = layers.normal(c.init_std / math.sqrt(2 * c.num_layers))
        self.norm1 = layers.RMSNorm(c.d_model, eps=c.norm_eps, dtype=c.compute_dtype, rngs=rngs)
        self.attn = layers.CausalSelfAttention(
            c.d_model,
            c.num_heads,
            c.kv_heads,
            use_bias=False,
            rope_theta=c.rope_theta,
            rope_scaling=c.rope_frequency_scaling,
            init=init,
            out_init=out_init,
            dtype=c.compute_dtype,
            implementation=c.attention_impl,
            rngs=rngs,
        )
        self.norm2 = layers.RMSNorm(c.d_model, eps=c.norm_eps, dtype=c.compute_dtype, rngs=rngs)
        self.mlp = layers.SwiGLU(
            c.d_model, c.hidden_dim, init=init, out_init=out_init, dtype=c.compute_dtype, rngs=rngs
        )

    def __call__(self, x, positions, ctx, kv=None):
        a, kv = self.attn(self.norm1(x), positions, ctx, kv)
        x = x + a
        x = x + self.mlp(self.norm2(x))
        return x, kv


class Llama(nnx.Module):
    """The Llama language model; call contract in ``plugins/models/__init__.py``."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = config
        self.embed = layers.Embed(
            c.vocab_size,
            c.d_model,
            init=layers.normal(c.init_std),
            dtype=c.compute_dtype,
            rngs=rngs,
        )
        if c.scan_layers:
            self.blocks = layers.stacked_blocks(lambda r: Block(c, rngs=r), c.num_layers, rngs)
        else:
            self.blocks = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
        self.norm_f = layers.RMSNorm(c.d_model, eps=c.norm_eps, dtype=c.compute_dtype, rngs=rngs)
        self.lm_head = (
            None
            if c.tie_embeddings
            else layers.param(
                rngs, layers.normal(c.init_std), (c.d_model, c.vocab_size), ("embed", "vocab")
            )
        )
        layers.store_params_in(self, c.param_dtype)

    def features(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        *,
        cache: KVCache | None = None,
        token_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Final hidden states ``[B, T, C]`` (after ``norm_f``) and the updated cache."""
        batch, length = tokens.shape
        if cache is None:
            positions, ctx = layers.forward_context(tokens, positions, token_mask, segment_ids)
            valid = None
        else:
            mask = jnp.ones(tokens.shape, jnp.bool_) if token_mask is None else token_mask
            if positions is None:
                positions = cache.positions_for(mask)
            ctx, valid = layers.attention_context(batch, length, mask, cache.valid, cache.index)

        x = self.embed(tokens)  # [B, T, C]
        x, new_kv = layers.run_blocks(
            self.blocks, x, positions, ctx, cache, remat=self.config.remat
        )
        x = self.norm_f(x)
        if cache is not None:
            cache = cache.replace(k=new_kv[0], v=new_kv[1], valid=valid, index=cache.index + length)
        return x, cache

    def logits(self, x: jax.Array) -> jax.Array:
        """Hidden states ``[B, T, C]`` -> fp32 logits ``[B, T, V]``."""
        if self.lm_head is None:
            return self.embed.attend(x)
        w = self.lm_head[...].astype(self.config.compute_dtype)
        return layers.dense(x, w, preferred_element_type=jnp.float32)

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
