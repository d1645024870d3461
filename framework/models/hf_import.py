"""Import Hugging Face checkpoints (``config.json`` + ``*.safetensors``) into deepdive models.

Only data is read: ``config.json`` with :mod:`json`, tensors through the ``safetensors`` numpy API
(no torch, never pickle — ``pytorch_model.bin`` is refused). Sharded checkpoints
(``model.safetensors.index.json``) are supported.

Supported architectures:

* ``GPT2LMHeadModel`` -> ``models.gpt2``. HF's ``Conv1D`` stores weights as ``[in, out]`` (the
  transpose of ``torch.nn.Linear``), so ``c_attn.weight [C, 3C]`` reshapes straight into our fused
  ``qkv [C, 3, H, D]`` and ``attn.c_proj.weight [C, C]`` into ``out [H, D, C]``.
* ``LlamaForCausalLM`` -> ``models.llama``. ``nn.Linear`` weights ``[out, in]`` are transposed.

The core never imports a concrete plugin: configs are built through the ``models`` registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from framework.core.errors import InputError

Flat = dict[tuple[str | int, ...], np.ndarray]


# ----------------------------------------------------------------------------------------------
# Reading a checkpoint folder


def read_config(hf_dir: str | Path) -> dict[str, Any]:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: not found; a Hugging Face checkpoint folder has config.json")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None


def _safetensors_files(hf_dir: Path) -> list[Path]:
    single = hf_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as error:
            raise InputError(f"{index}: malformed safetensors index ({error})") from None
        return [hf_dir / name for name in sorted(set(weight_map.values()))]
    if (hf_dir / "pytorch_model.bin").exists():
        raise InputError(
            f"{hf_dir}: only pytorch_model.bin (a pickle) is present; deepdive reads safetensors "
            "only. Convert it with transformers: "
            "AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)"
        )
    raise InputError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")


def _read_bf16(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """bfloat16 tensors (numpy has no bf16; safetensors' numpy API refuses them): read them from
    the file's JSON header and byte offsets, returned as float32."""
    import ml_dtypes

    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    out = {}
    for name in names:
        info = header[name]
        start, end = info["data_offsets"]
        raw = np.frombuffer(data[start:end].tobytes(), dtype=ml_dtypes.bfloat16)
        out[name] = raw.reshape(info["shape"]).astype(np.float32)
    return out


def read_tensors(hf_dir: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint as a numpy array (bf16 widened to fp32)."""
    from safetensors import safe_open

    hf_dir = Path(hf_dir)
    tensors: dict[str, np.ndarray] = {}
    for path in _safetensors_files(hf_dir):
        if not path.is_file():
            raise InputError(f"{path}: listed in the safetensors index but missing")
        bf16: list[str] = []
        try:
            with safe_open(str(path), framework="np") as f:
                for name in f.keys():
                    try:
                        tensors[name] = f.get_tensor(name)
                    except (KeyError, TypeError, ValueError):
                        bf16.append(name)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{path}: not a readable safetensors file ({error})") from None
        if bf16:
            tensors.update(_read_bf16(path, bf16))
    return tensors


def _take(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in tensors:
        raise InputError(f"checkpoint has no tensor {name!r}")
    value = np.asarray(tensors.pop(name), dtype=np.float32)
    if value.shape != shape:
        raise InputError(f"tensor {name!r} has shape {value.shape}, expected {shape}")
    return value


def _strip_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------
# GPT-2


def gpt2_config_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
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


def gpt2_params(tensors: dict[str, np.ndarray], config: Any) -> Flat:
    """Our ``gpt2`` parameter paths -> arrays, from HF ``GPT2LMHeadModel`` tensors."""
    t = _strip_prefix(tensors, "transformer.")
    c, h, d, f = config.d_model, config.num_heads, config.head_dim, config.hidden_dim
    out: Flat = {
        ("wte", "embedding"): _take(t, "wte.weight", (config.vocab_size, c)),
        ("wpe", "embedding"): _take(t, "wpe.weight", (config.max_seq_len, c)),
        ("ln_f", "scale"): _take(t, "ln_f.weight", (c,)),
        ("ln_f", "bias"): _take(t, "ln_f.bias", (c,)),
    }
    for i in range(config.num_layers):
        p = f"h.{i}."
        b = ("blocks", i)
        out |= {
            b + ("ln1", "scale"): _take(t, p + "ln_1.weight", (c,)),
            b + ("ln1", "bias"): _take(t, p + "ln_1.bias", (c,)),
            b + ("ln2", "scale"): _take(t, p + "ln_2.weight", (c,)),
            b + ("ln2", "bias"): _take(t, p + "ln_2.bias", (c,)),
            # Conv1D [in, out]; out = (q | k | v), each (head, head_dim)
            b + ("attn", "qkv"): _take(t, p + "attn.c_attn.weight", (c, 3 * c)).reshape(c, 3, h, d),
            b + ("attn", "qkv_bias"): _take(t, p + "attn.c_attn.bias", (3 * c,)).reshape(3, h, d),
            b + ("attn", "out"): _take(t, p + "attn.c_proj.weight", (c, c)).reshape(h, d, c),
            b + ("attn", "out_bias"): _take(t, p + "attn.c_proj.bias", (c,)),
            b + ("mlp", "fc"): _take(t, p + "mlp.c_fc.weight", (c, f)),
            b + ("mlp", "fc_bias"): _take(t, p + "mlp.c_fc.bias", (f,)),
            b + ("mlp", "proj"): _take(t, p + "mlp.c_proj.weight", (f, c)),
            b + ("mlp", "proj_bias"): _take(t, p + "mlp.c_proj.bias", (c,)),
        }
        for buffer in ("attn.bias", "attn.masked_bias"):  # causal-mask buffers of old checkpoints
            t.pop(p + buffer, None)
    head = t.pop("lm_head.weight", None)
    if head is not None and not np.array_equal(head, out[("wte", "embedding")]):
        raise InputError("lm_head.weight differs from wte.weight; gpt2 ties them")
    _no_leftovers(t)
    return out


# ----------------------------------------------------------------------------------------------
# Llama


def llama_config_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
    """``models.llama`` fields from a HF ``LlamaConfig`` dict."""
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise InputError("config.json: attention_bias/mlp_bias are not supported by llama")
    if hf.get("hidden_act", "silu") != "silu":
        raise InputError(f"config.json: hidden_act={hf['hidden_act']!r}; llama uses silu")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise InputError(f"config.json: rope scaling {rope} is not supported (plain RoPE only)")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
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
        rope_theta=float(theta),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def llama_params(tensors: dict[str, np.ndarray], config: Any) -> Flat:
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
        return _take(t, name, (out_dim, in_dim)).T  # nn.Linear [out, in] -> [in, out]

    out: Flat = {
        ("embed", "embedding"): _take(t, "model.embed_tokens.weight", (config.vocab_size, c)),
        ("norm_f", "scale"): _take(t, "model.norm.weight", (c,)),
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
            b + ("norm1", "scale"): _take(t, p + "input_layernorm.weight", (c,)),
            b + ("norm2", "scale"): _take(t, p + "post_attention_layernorm.weight", (c,)),
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
    _no_leftovers(t)
    return out


def _no_leftovers(tensors: dict[str, np.ndarray]) -> None:
    rest = sorted(k for k in tensors if not k.endswith("rotary_emb.inv_freq"))
    if rest:
        shown = ", ".join(rest[:5]) + (" ..." if len(rest) > 5 else "")
        raise InputError(f"checkpoint has {len(rest)} tensors this model does not use: {shown}")


# ----------------------------------------------------------------------------------------------
# Into a model


def assign(model_config: Any, flat: Flat) -> Any:
    """Build ``model_config``'s module (abstractly, no random init) and fill every parameter
    from ``flat`` (path tuple -> array). Missing, extra or mis-shaped entries raise."""
    import jax.numpy as jnp
    from flax import nnx

    abstract = nnx.eval_shape(lambda: _build_unsharded(model_config))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    flat_params = dict(nnx.to_flat_state(params))
    missing = sorted(str(p) for p in flat_params if p not in flat)
    extra = sorted(str(p) for p in flat if p not in flat_params)
    if missing or extra:
        raise InputError(f"parameter mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    filled = {}
    for path, variable in flat_params.items():
        value = flat[path]
        if tuple(value.shape) != tuple(variable.shape):
            raise InputError(f"parameter {path}: shape {value.shape}, model wants {variable.shape}")
        filled[path] = variable.replace(jnp.asarray(value, dtype=variable.dtype))
    return nnx.merge(graphdef, nnx.from_flat_state(filled), rest)


def _build_unsharded(model_config: Any) -> Any:
    from flax import nnx

    with nnx.use_eager_sharding(False):
        return model_config.build(nnx.Rngs(0))


ARCHITECTURES: dict[str, tuple[str, Callable, Callable]] = {
    "GPT2LMHeadModel": ("gpt2", gpt2_config_kwargs, gpt2_params),
    "LlamaForCausalLM": ("llama", llama_config_kwargs, llama_params),
}


def load(hf_dir: str | Path, expect: str | None = None, **overrides: Any) -> tuple[str, Any, Any]:
    """``(plugin_name, model_config, model)`` from a HF checkpoint folder.

    ``expect``: the plugin the caller wants ("gpt2"); a different architecture raises.
    ``overrides``: config fields to set (e.g. ``dtype="bfloat16"``).
    """
    from framework.core import discovery, registry

    hf = read_config(hf_dir)
    archs = hf.get("architectures") or []
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        model_type = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}.get(
            hf.get("model_type", "")
        )
        arch = model_type
    if arch is None:
        raise InputError(
            f"{Path(hf_dir) / 'config.json'}: architecture {archs or hf.get('model_type')} is not "
            f"supported; supported: {', '.join(ARCHITECTURES)}"
        )
    plugin, config_kwargs, params_fn = ARCHITECTURES[arch]
    if expect is not None and plugin != expect:
        raise InputError(f"{hf_dir}: holds a {arch}, not a {expect} model")
    if plugin not in registry.MODELS:
        discovery.load_plugins()
    model_config = registry.MODELS.get(plugin)(**(config_kwargs(hf) | overrides))
    flat = params_fn(read_tensors(hf_dir), model_config)
    return plugin, model_config, assign(model_config, flat)
