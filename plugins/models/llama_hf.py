"""``converters.hf_llama``: Hugging Face ``LlamaForCausalLM`` checkpoints -> ``models.llama``.

``nn.Linear`` weights ``[out, in]`` are transposed; separate q/k/v projections become the fused
``qkv`` (multi-head) or ``q`` + ``kv`` (grouped-query) kernels. RoPE is plain or Llama 3.1's
``rope_type: "llama3"`` scaling; a tied head (``tie_word_embeddings``) reuses the embedding.
Read by ``deepdive convert hf_llama`` through ``framework.models.hf_import``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.core.errors import InputError
from framework.core.registry import CONVERTERS
from framework.models import hf_import as hf
from framework.models.hf_import import Flat

_LLAMA3_KEYS = {  # HF rope_scaling key -> models.llama field
    "factor": "rope_scaling_factor",
    "low_freq_factor": "rope_low_freq_factor",
    "high_freq_factor": "rope_high_freq_factor",
    "original_max_position_embeddings": "rope_original_max_seq_len",
}


def _rope_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
    """``rope_theta`` and the ``rope_scaling*`` fields of ``models.llama`` from a HF config.

    Published Llama 3.x folders hold ``rope_scaling`` (``rope_type`` and its parameters) beside a
    top-level ``rope_theta``; transformers >= 5 writes both into ``rope_parameters``; older files
    spell ``type`` for ``rope_type``. Only plain RoPE and ``"llama3"`` are implemented: any other
    scaling would silently change the logits, so it is refused.
    """
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type")) or "default"
    if rope_type == "default":
        return dict(rope_theta=theta)
    if rope_type != "llama3":
        raise InputError(
            f"config.json: rope_type {rope_type!r} is not supported by llama "
            "(plain RoPE or 'llama3' only)"
        )
    values = {"original_max_position_embeddings": hf.get("max_position_embeddings")} | rope
    missing = [key for key in _LLAMA3_KEYS if values.get(key) is None]
    if missing:
        raise InputError(f"config.json: llama3 rope scaling lacks {', '.join(missing)}")
    scaling = {field: float(values[key]) for key, field in _LLAMA3_KEYS.items()}
    scaling["rope_original_max_seq_len"] = int(scaling["rope_original_max_seq_len"])
    return dict(rope_theta=theta, rope_scaling="llama3", **scaling)


def _config_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
    """``models.llama`` fields from a HF ``LlamaConfig`` dict."""
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise InputError("config.json: attention_bias/mlp_bias are not supported by llama")
    if hf.get("hidden_act", "silu") != "silu":
        raise InputError(f"config.json: hidden_act={hf['hidden_act']!r}; llama uses silu")
    c, h = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    if hf.get("head_dim") not in (None, c // h):
        raise InputError(f"config.json: head_dim={hf['head_dim']} != hidden_size/heads")
    return dict(
        vocab_size=int(hf["vocab_size"]),
        max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=h,
        num_kv_heads=int(hf.get("num_key_value_heads") or h),
        d_model=c,
        mlp_dim=int(hf["intermediate_size"]),
        **_rope_kwargs(hf),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def _params(tensors: dict[str, np.ndarray], config: Any) -> Flat:
    """Our ``llama`` parameter paths -> arrays, from HF ``LlamaForCausalLM`` tensors."""
    t = dict(tensors)
    c, h, k, d, f = (
        config.d_model,
        config.num_heads,
        config.kv_heads,
        config.head_dim,
        config.hidden_dim,
    )

    def linear(name: str, out_dim: int, in_dim: int) -> np.ndarray:
        return hf.take(t, name, (out_dim, in_dim)).T  # nn.Linear [out, in] -> [in, out]

    out: Flat = {
        ("embed", "embedding"): hf.take(t, "model.embed_tokens.weight", (config.vocab_size, c)),
        ("norm_f", "scale"): hf.take(t, "model.norm.weight", (c,)),
    }
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        b = ("blocks", i)
        q = linear(p + "self_attn.q_proj.weight", h * d, c).reshape(c, h, d)
        kk = linear(p + "self_attn.k_proj.weight", k * d, c).reshape(c, k, d)
        v = linear(p + "self_attn.v_proj.weight", k * d, c).reshape(c, k, d)
        o = linear(p + "self_attn.o_proj.weight", c, h * d).reshape(h, d, c)
        gate = linear(p + "mlp.gate_proj.weight", f, c)
        up = linear(p + "mlp.up_proj.weight", f, c)
        out |= {
            b + ("norm1", "scale"): hf.take(t, p + "input_layernorm.weight", (c,)),
            b + ("norm2", "scale"): hf.take(t, p + "post_attention_layernorm.weight", (c,)),
            b + ("attn", "out"): o,
            b + ("mlp", "gate_up"): np.stack([gate, up], axis=1),
            b + ("mlp", "down"): linear(p + "mlp.down_proj.weight", c, f),
        }
        if k == h:
            out[b + ("attn", "qkv")] = np.stack([q, kk, v], axis=1)
        else:
            out[b + ("attn", "q")] = q
            out[b + ("attn", "kv")] = np.stack([kk, v], axis=1)
    if config.tie_embeddings:
        t.pop("lm_head.weight", None)
    else:
        out[("lm_head",)] = linear("lm_head.weight", config.vocab_size, c)
    hf.no_leftovers(t)
    return out


@CONVERTERS.register("hf_llama")
class HFLlama:
    """Hugging Face ``LlamaForCausalLM`` -> ``models.llama``."""

    model = "llama"
    architectures = ("LlamaForCausalLM",)
    model_types = ("llama",)

    def config_kwargs(self, hf_config: dict[str, Any]) -> dict[str, Any]:
        return _config_kwargs(hf_config)

    def params(self, tensors: dict[str, np.ndarray], config: Any) -> Flat:
        return _params(tensors, config)
