"""Import Hugging Face checkpoints (``config.json`` + ``*.safetensors``) into deepdive models.

Only data is read: ``config.json`` with :mod:`json`, tensors through the ``safetensors`` numpy API
(no torch, never pickle — ``pytorch_model.bin`` is refused). Sharded checkpoints
(``model.safetensors.index.json``) are supported.

What is specific to one architecture — which HF config fields map to which plugin fields, and
where each tensor goes — lives with the model plugin as a ``converters`` plugin (e.g.
``plugins/models/gpt2_hf.py`` registers ``converters.hf_gpt2``). This module reads the folder,
finds the converter through the registry (by name, or by the checkpoint's architecture), and
fills the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from framework.core.errors import InputError
from framework.models.layers import build_unsharded

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


def read_tensors(hf_dir: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint as a numpy array, read by safetensors itself (bf16 arrives
    as ``ml_dtypes.bfloat16``; :func:`take` widens every tensor to fp32)."""
    from safetensors import safe_open

    hf_dir = Path(hf_dir)
    tensors: dict[str, np.ndarray] = {}
    for path in _safetensors_files(hf_dir):
        if not path.is_file():
            raise InputError(f"{path}: listed in the safetensors index but missing")
        try:
            with safe_open(str(path), framework="np") as f:
                for name in f.keys():
                    tensors[name] = f.get_tensor(name)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    return tensors


def take(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Remove tensor ``name`` from ``tensors`` as fp32, checking its ``shape``."""
    if name not in tensors:
        raise InputError(f"checkpoint has no tensor {name!r}")
    value = np.asarray(tensors.pop(name), dtype=np.float32)
    if value.shape != shape:
        raise InputError(f"tensor {name!r} has shape {value.shape}, expected {shape}")
    return value


def strip_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The tensors with ``prefix`` removed from the names that have it."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in tensors.items()}


def no_leftovers(tensors: dict[str, np.ndarray]) -> None:
    """Raise when tensors remain that the model has no place for (rotary caches aside)."""
    rest = sorted(k for k in tensors if not k.endswith("rotary_emb.inv_freq"))
    if rest:
        shown = ", ".join(rest[:5]) + (" ..." if len(rest) > 5 else "")
        raise InputError(f"checkpoint has {len(rest)} tensors this model does not use: {shown}")


# ----------------------------------------------------------------------------------------------
# Into a model


def stack_layers(flat: Flat, num_layers: int, prefix: str = "blocks") -> Flat:
    """Per-layer entries ``(prefix, i, *rest)`` as one stacked entry ``(prefix, *rest)`` with a
    leading layer axis, the layout of scanned layers (``layers.stacked_blocks``)."""
    out: Flat = {}
    per_layer: dict[tuple, dict[int, np.ndarray]] = {}
    for path, value in flat.items():
        if len(path) > 2 and path[0] == prefix and isinstance(path[1], int):
            per_layer.setdefault((prefix, *path[2:]), {})[path[1]] = value
        else:
            out[path] = value
    for path, layers in per_layer.items():
        if sorted(layers) != list(range(num_layers)):
            raise InputError(f"parameter {path}: layers {sorted(layers)}, model has {num_layers}")
        out[path] = np.stack([layers[i] for i in range(num_layers)])
    return out


def assign(model_config: Any, flat: Flat) -> Any:
    """Build ``model_config``'s module (abstractly, no random init) and fill every parameter
    from ``flat`` (path tuple -> array). Missing, extra or mis-shaped entries raise."""
    import jax.numpy as jnp
    from flax import nnx

    abstract = nnx.eval_shape(lambda: build_unsharded(model_config, nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    flat_params = dict(nnx.to_flat_state(params))
    if getattr(model_config, "scan_layers", False):
        flat = stack_layers(flat, int(model_config.num_layers))
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


def find_converter(hf: dict[str, Any], name: str | None = None) -> tuple[str, Any]:
    """``(name, converter)``: the registered converter ``name``, else the one whose
    ``architectures`` (or ``model_types``) names this checkpoint's ``config.json``."""
    from framework.core import discovery, registry

    if not registry.CONVERTERS.names():
        discovery.load_plugins()
    if name is not None:
        return name, registry.CONVERTERS.build(name)
    archs = list(hf.get("architectures") or [])
    converters = {n: registry.CONVERTERS.build(n) for n in registry.CONVERTERS.names()}
    for found, converter in converters.items():
        if set(archs) & set(converter.architectures) or (
            not archs and hf.get("model_type") in getattr(converter, "model_types", ())
        ):
            return found, converter
    known = {n: list(c.architectures) for n, c in converters.items()}
    raise InputError(
        f"config.json: architecture {archs or hf.get('model_type')} has no converter; "
        f"registered: {known}"
    )


def load(
    hf_dir: str | Path,
    expect: str | None = None,
    converter: str | None = None,
    **overrides: Any,
) -> tuple[str, Any, Any]:
    """``(model_plugin_name, model_config, model)`` from a HF checkpoint folder.

    ``converter``: a ``converters`` plugin name (``hf_gpt2``); None finds it from config.json.
    ``expect``: the model plugin the caller wants ("gpt2"); a different one raises.
    ``overrides``: config fields to set (e.g. ``compute_dtype="bfloat16"``).
    """
    from framework.core import registry

    hf = read_config(hf_dir)
    name, conv = find_converter(hf, converter)
    archs = list(hf.get("architectures") or [])
    if converter is not None and archs and not set(archs) & set(conv.architectures):
        raise InputError(
            f"{hf_dir}: holds a {archs[0]}, not a {conv.model} model (converters.{name} reads "
            f"{', '.join(conv.architectures)})"
        )
    if expect is not None and conv.model != expect:
        found = archs[0] if archs else conv.model
        raise InputError(f"{hf_dir}: holds a {found}, not a {expect} model")
    model_config = registry.MODELS.get(conv.model)(**(conv.config_kwargs(hf) | overrides))
    flat = conv.params(read_tensors(hf_dir), model_config)
    return conv.model, model_config, assign(model_config, flat)
