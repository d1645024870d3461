"""``converters.hf_gpt2``: Hugging Face ``GPT2LMHeadModel`` checkpoints -> ``models.gpt2``.

HF's ``Conv1D`` stores weights as ``[in, out]`` (the transpose of ``torch.nn.Linear``), so
``c_attn.weight [C, 3C]`` reshapes straight into our fused ``qkv [C, 3, H, D]`` and
``attn.c_proj.weight [C, C]`` into ``out [H, D, C]``.
Read by ``deepdive convert hf_gpt2`` through ``framework.models.hf_import``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.core.errors import InputError
from framework.core.registry import CONVERTERS
from framework.models import hf_import as hf
from framework.models.hf_import import Flat


def _config_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
    """``models.gpt2`` fields from a HF ``GPT2Config`` dict; refuses variants we do not model."""
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise InputError(f"config.json: activation_function={act!r}; gpt2 supports gelu_new")
    for flag, ok in (
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
        ("scale_attn_weights", True),
        ("add_cross_attention", False),
    ):
        if hf.get(flag, ok) != ok:
            raise InputError(f"config.json: {flag}={hf[flag]!r} is not supported (need {ok})")
    return dict(
        vocab_size=int(hf["vocab_size"]),
        max_seq_len=int(hf["n_positions"]),
        num_layers=int(hf["n_layer"]),
        num_heads=int(hf["n_head"]),
        d_model=int(hf["n_embd"]),
        mlp_dim=int(hf["n_inner"]) if hf.get("n_inner") else None,
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        dropout=0.0,  # inference; HF's *_pdrop are training-time settings
    )


def _params(tensors: dict[str, np.ndarray], config: Any) -> Flat:
    """Our ``gpt2`` parameter paths -> arrays, from HF ``GPT2LMHeadModel`` tensors."""
    t = hf.strip_prefix(tensors, "transformer.")
    c, h, d, f = config.d_model, config.num_heads, config.head_dim, config.hidden_dim
    out: Flat = {
        ("wte", "embedding"): hf.take(t, "wte.weight", (config.vocab_size, c)),
        ("wpe", "embedding"): hf.take(t, "wpe.weight", (config.max_seq_len, c)),
        ("ln_f", "scale"): hf.take(t, "ln_f.weight", (c,)),
        ("ln_f", "bias"): hf.take(t, "ln_f.bias", (c,)),
    }
    for i in range(config.num_layers):
        p = f"h.{i}."
        b = ("blocks", i)
        out |= {
            b + ("ln1", "scale"): hf.take(t, p + "ln_1.weight", (c,)),
            b + ("ln1", "bias"): hf.take(t, p + "ln_1.bias", (c,)),
            b + ("ln2", "scale"): hf.take(t, p + "ln_2.weight", (c,)),
            b + ("ln2", "bias"): hf.take(t, p + "ln_2.bias", (c,)),
            # Conv1D [in, out]; out = (q | k | v), each (head, head_dim)
            b + ("attn", "qkv"): hf.take(t, p + "attn.c_attn.weight", (c, 3 * c)).reshape(
                c, 3, h, d
            ),
            b + ("attn", "qkv_bias"): hf.take(t, p + "attn.c_attn.bias", (3 * c,)).reshape(3, h, d),
            b + ("attn", "out"): hf.take(t, p + "attn.c_proj.weight", (c, c)).reshape(h, d, c),
            b + ("attn", "out_bias"): hf.take(t, p + "attn.c_proj.bias", (c,)),
            b + ("mlp", "fc"): hf.take(t, p + "mlp.c_fc.weight", (c, f)),
            b + ("mlp", "fc_bias"): hf.take(t, p + "mlp.c_fc.bias", (f,)),
            b + ("mlp", "proj"): hf.take(t, p + "mlp.c_proj.weight", (f, c)),
            b + ("mlp", "proj_bias"): hf.take(t, p + "mlp.c_proj.bias", (c,)),
        }
        for buffer in ("attn.bias", "attn.masked_bias"):  # causal-mask buffers of old checkpoints
            t.pop(p + buffer, None)
    head = t.pop("lm_head.weight", None)
    if head is not None and not np.array_equal(head, out[("wte", "embedding")]):
        raise InputError("lm_head.weight differs from wte.weight; gpt2 ties them")
    hf.no_leftovers(t)
    return out


@CONVERTERS.register("hf_gpt2")
class HFGPT2:
    """Hugging Face ``GPT2LMHeadModel`` -> ``models.gpt2``."""

    model = "gpt2"
    architectures = ("GPT2LMHeadModel",)
    model_types = ("gpt2",)

    def config_kwargs(self, hf_config: dict[str, Any]) -> dict[str, Any]:
        return _config_kwargs(hf_config)

    def params(self, tensors: dict[str, np.ndarray], config: Any) -> Flat:
        return _params(tensors, config)
