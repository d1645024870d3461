"""Checkpoints of a run directory (orbax) and the model-only run directory used for inference.

Layout of ``MODEL_DIR/checkpoints/<step>/`` (an orbax ``CheckpointManager`` directory):

* ``params``    — the model parameters (an ``nnx.State`` of ``nnx.Param``; always float32),
* ``opt_state`` — the optax optimizer state (training checkpoints only),
* ``meta``      — JSON: ``step``, the PRNG key data ``rng`` and the input iterator state ``data``.

A model-only run (``write_inference_run``, used by ``deepdive convert``) stores ``params`` and
``meta`` at step 0. ``MODEL_DIR/model.json`` (``{"plugin": name, "config": {...}}``) rebuilds the
model without gin; ``MODEL_DIR/tokenizer/`` is a copy of the tokenizer directory.

Saves are asynchronous (orbax writes in a background thread; ``wait()`` before exit) and only
the newest ``max_to_keep`` checkpoints are kept. A directory only counts as a checkpoint once
orbax has finalised it, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from framework.core import paths
from framework.core.errors import InputError
from framework.core.paths import PathLike
from framework.models import layers

CHECKPOINTS = "checkpoints"
MODEL_JSON = "model.json"
TOKENIZER_DIR = "tokenizer"


# -- model.json ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)  # dtypes and the like: the config class parses its own string form


def model_config_dict(model_config: Any) -> dict[str, Any]:
    """The config's fields as JSON-ready values."""
    if dataclasses.is_dataclass(model_config):
        fields = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)}
    else:
        fields = dict(vars(model_config))
    return {k: _plain(v) for k, v in fields.items() if not k.startswith("_")}


def write_model_json(model_dir: PathLike, plugin_name: str, model_config: Any) -> None:
    body = {"plugin": plugin_name, "config": model_config_dict(model_config)}
    paths.write_text(paths.as_path(model_dir) / MODEL_JSON, json.dumps(body, indent=2) + "\n")


def plugin_name_of(model_config: Any) -> str:
    """The ``models`` registry name of a config object (its class was registered under it)."""
    from framework.core import registry

    for entry in registry.MODELS.entries():
        wrapped = entry.obj
        if isinstance(wrapped, type) and isinstance(model_config, wrapped):
            return entry.name
    # gin wraps classes in a subclass; compare the undecorated class too
    for entry in registry.MODELS.entries():
        target = getattr(entry.obj, "__wrapped__", entry.obj)
        if isinstance(target, type) and type(model_config).__name__ == target.__name__:
            return entry.name
    raise InputError(
        f"model config {type(model_config).__name__} is not a registered models plugin"
    )


# fields whose default changed since model.json files were first written: a missing field means
# the old default (runs from before stacked layers were the default store their blocks per layer)
LEGACY_MODEL_FIELDS = {"scan_layers": False}


def read_model_config(model_dir: PathLike) -> tuple[str, Any]:
    """``(plugin_name, model_config)`` from ``MODEL_DIR/model.json``."""
    from framework.core import discovery, registry

    path = paths.as_path(model_dir) / MODEL_JSON
    if not path.exists():
        raise InputError(f"{path}: not found; is {model_dir} a deepdive run directory?")
    try:
        body = json.loads(path.read_text())
        plugin, fields = body["plugin"], body["config"]
    except (ValueError, KeyError) as error:
        raise InputError(f"{path}: malformed model.json ({error})") from None
    if plugin not in registry.MODELS:
        discovery.load_plugins()
    config_cls = registry.MODELS.get(plugin)
    names = (
        {f.name for f in dataclasses.fields(config_cls)}
        if dataclasses.is_dataclass(config_cls)
        else None
    )
    fields = {**LEGACY_MODEL_FIELDS, **fields}
    if "dtype" in fields:  # before the dtype policy: one compute dtype, fp32 parameters
        fields.setdefault("compute_dtype", fields.pop("dtype"))
    kwargs = {}
    for key, value in fields.items():
        if names is not None and key not in names:
            continue
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return plugin, config_cls(**kwargs)


# -- tokenizer copy ------------------------------------------------------------------------------


def copy_tokenizer(tokenizer_path: PathLike | None, model_dir: PathLike) -> Any:
    """Copy a tokenizer directory (or a ``.tiktoken`` rank file, saved as a directory) into
    ``MODEL_DIR/tokenizer``; either may be a bucket URL."""
    if tokenizer_path is None:
        return None
    source = paths.as_path(tokenizer_path)
    target = paths.as_path(model_dir) / TOKENIZER_DIR
    if str(source) == str(target):
        return target
    if source.is_dir():
        paths.copy_tree(source, target)
    elif source.exists():
        from framework.tokenize.files import load_tokenizer

        save_tokenizer(load_tokenizer(str(tokenizer_path)), model_dir)
    else:
        raise InputError(f"tokenizer {source}: not found")
    return target


def save_tokenizer(tokenizer: Any, model_dir: PathLike) -> Any:
    """Save ``tokenizer`` as ``MODEL_DIR/tokenizer``, replacing an older one (staged locally
    for a bucket run)."""
    target = paths.as_path(model_dir) / TOKENIZER_DIR
    if target.exists():
        target.rmtree()
    return paths.save_folder(target, tokenizer.save)


def load_run_tokenizer(model_dir: PathLike) -> Any:
    """The tokenizer saved in ``MODEL_DIR/tokenizer`` (None when the run has none)."""
    folder = paths.as_path(model_dir) / TOKENIZER_DIR
    if not folder.is_dir():
        return None
    from framework.tokenize.files import load_tokenizer

    return load_tokenizer(str(folder))  # stages a bucket folder itself


# -- orbax ---------------------------------------------------------------------------------------


def manager(model_dir: PathLike, max_to_keep: int | None = 3, asynchronous: bool = True):
    """The orbax CheckpointManager of ``MODEL_DIR/checkpoints`` (items params/opt_state/meta)."""
    import orbax.checkpoint as ocp

    directory = paths.as_path(model_dir) / CHECKPOINTS
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=asynchronous,
        create=True,
    )
    return ocp.CheckpointManager(
        directory, item_names=("params", "opt_state", "meta"), options=options
    )


def save(
    mngr: Any,
    step: int,
    params: Any,
    meta: dict[str, Any],
    opt_state: Any | None = None,
    force: bool = False,
) -> bool:
    """Start saving a checkpoint for ``step`` (asynchronous); returns whether one was started."""
    import orbax.checkpoint as ocp

    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if opt_state is not None:
        items["opt_state"] = ocp.args.StandardSave(opt_state)
    return mngr.save(step, args=ocp.args.Composite(**items), force=force)


def restore(
    mngr: Any,
    step: int,
    abstract_params: Any,
    abstract_opt_state: Any | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Restore ``(params, opt_state_or_None, meta)`` of ``step`` onto the abstract trees'
    shardings (``jax.ShapeDtypeStruct`` leaves with ``sharding``)."""
    import orbax.checkpoint as ocp

    items = {
        "params": ocp.args.StandardRestore(abstract_params),
        "meta": ocp.args.JsonRestore(),
    }
    if abstract_opt_state is not None:
        items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    opt_state = restored["opt_state"] if abstract_opt_state is not None else None
    return restored["params"], opt_state, dict(restored["meta"])


# -- the two layouts of a model's blocks -----------------------------------------------------------
# Scanned layers store each block parameter once, stacked on a leading layer axis
# (``blocks/attn/qkv`` is ``[L, ...]``); unrolled layers store one entry per layer
# (``blocks/<i>/attn/qkv``). A checkpoint written in one layout resumes in the other.

STACKED, PER_LAYER = "stacked", "per_layer"


def stored_blocks_layout(model_dir: PathLike, step: int) -> str | None:
    """How checkpoint ``step`` stores the model's blocks: :data:`STACKED`, :data:`PER_LAYER`, or
    None (no ``blocks``, or metadata orbax cannot read)."""
    import orbax.checkpoint as ocp

    directory = paths.as_path(model_dir) / CHECKPOINTS / str(step) / "params"
    try:
        tree = ocp.StandardCheckpointer().metadata(directory).item_metadata
        blocks = tree["blocks"]
    except (KeyError, TypeError, ValueError, FileNotFoundError):
        return None
    if not isinstance(blocks, dict) or not blocks:
        return None
    return PER_LAYER if all(str(k).isdigit() for k in blocks) else STACKED


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def relayout_blocks(tree: Any, target: Any) -> Any:
    """``tree`` (params, or an optimizer state holding param-shaped trees) rearranged into the
    structure of ``target`` (the same model in the other blocks layout): per-layer entries
    stacked on a new leading axis, or a stacked entry split into layers. Leaves are placed on
    ``target``'s shardings when its leaves carry them."""
    import jax
    import jax.numpy as jnp

    source = {
        tuple(_key_name(k) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    target_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)

    def take(path: tuple[str, ...]) -> Any:
        if path in source:
            return source[path]
        if "blocks" not in path:
            raise InputError(f"checkpoint has no entry {'/'.join(path)}")
        at = path.index("blocks") + 1
        if at < len(path) and path[at].isdigit():  # per-layer target, stacked source
            return source[path[:at] + path[at + 1 :]][int(path[at])]
        layers_found = []  # stacked target, per-layer source
        while path[:at] + (str(len(layers_found)),) + path[at:] in source:
            layers_found.append(source[path[:at] + (str(len(layers_found)),) + path[at:]])
        if not layers_found:
            raise InputError(f"checkpoint has no entry {'/'.join(path)} in either layout")
        return jnp.stack(layers_found)

    leaves = []
    for path, want in target_leaves:
        value = take(tuple(_key_name(k) for k in path))
        if tuple(value.shape) != tuple(want.shape):
            raise InputError(
                f"checkpoint entry {'/'.join(_key_name(k) for k in path)}: shape "
                f"{tuple(value.shape)}, model wants {tuple(want.shape)}"
            )
        sharding = getattr(want, "sharding", None)
        leaves.append(jax.device_put(value, sharding) if sharding is not None else value)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def abstract_of(tree: Any, sharding_tree: Any | None = None) -> Any:
    """``jax.ShapeDtypeStruct`` leaves (with shardings from ``sharding_tree`` when given)."""
    import jax

    if sharding_tree is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            tree,
        )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding_tree
    )


# -- damaged checkpoints --------------------------------------------------------------------------
# A storage glitch or a partial upload can leave a finalised step that does not restore. The
# trainer moves such a step aside (renamed, never deleted) and resumes from the one before;
# readers (sample, eval, convert) refuse it, naming the steps that do load.

DAMAGED_SUFFIX = ".damaged"


def describe_failure(error: BaseException) -> str:
    """The first line of what restoring raised, short enough for a one-line message."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


def move_aside(model_dir: PathLike, step: int) -> str:
    """Rename ``checkpoints/<step>`` to ``checkpoints/<step>.damaged`` (``.damaged-2``, ... when
    taken) so orbax no longer lists it; returns the new path."""
    folder = paths.as_path(model_dir) / CHECKPOINTS
    target = folder / f"{step}{DAMAGED_SUFFIX}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{step}{DAMAGED_SUFFIX}-{n}"
    (folder / str(step)).rename(target)
    return str(target)


def readable(model_dir: PathLike, step: int) -> bool:
    """Whether every array of checkpoint ``step`` reads back, as saved (no model needed): tells
    a damaged step from one that does not fit the model being restored into it."""
    import orbax.checkpoint as ocp

    folder = paths.as_path(model_dir) / CHECKPOINTS / str(step)
    items = [folder / name for name in ("params", "opt_state") if (folder / name).exists()]
    try:
        with ocp.StandardCheckpointer() as reader:
            for item in items:
                reader.restore(item)
    except Exception:  # noqa: BLE001 - any failure to read the bytes is damage
        return False
    return bool(items)


def _single_device_target(abstract_params: Any) -> Any:
    import jax

    device = jax.local_devices()[0]
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(device)
        ),
        abstract_params,
    )


def _restores(mngr: Any, step: int, target: Any) -> bool:
    try:
        restore(mngr, step, target)
    except Exception:  # noqa: BLE001 - any failure to read the step counts as damage
        return False
    return True


# -- inference runs ------------------------------------------------------------------------------


def write_inference_run(
    model_dir: PathLike,
    plugin_name: str,
    model_config: Any,
    model: Any,
    tokenizer_path: PathLike | None,
) -> None:
    """Make ``model_dir`` a run directory holding ``model`` (step 0) that ``deepdive sample`` and
    ``deepdive eval`` can use: model.json, tokenizer/, checkpoints/0/, COMPLETED."""
    import jax
    from flax import nnx

    model_dir = paths.as_path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_model_json(model_dir, plugin_name, model_config)
    copy_tokenizer(tokenizer_path, model_dir)
    params = nnx.state(model, nnx.Param)
    params = jax.tree.map(lambda x: x.astype("float32") if x.dtype.kind == "f" else x, params)
    mngr = manager(model_dir, max_to_keep=None, asynchronous=False)
    save(mngr, 0, params, {"step": 0, "source": "write_inference_run"}, force=True)
    mngr.wait_until_finished()
    mngr.close()
    (model_dir / "COMPLETED").write_text("step 0\n")


def latest_step(model_dir: PathLike) -> int | None:
    """The newest finalised checkpoint step under ``MODEL_DIR/checkpoints`` (None when none)."""
    directory = paths.as_path(model_dir) / CHECKPOINTS
    if not directory.is_dir():
        return None
    mngr = manager(model_dir, asynchronous=False)
    try:
        return mngr.latest_step()
    finally:
        mngr.close()


def load_for_inference(model_dir: PathLike, step: int | None = None):
    """``(model, tokenizer, model_config, step)`` from a run directory: the model rebuilt from
    model.json, its parameters from the newest (or the given) checkpoint, the tokenizer from
    ``MODEL_DIR/tokenizer`` (None when the run has none). A checkpoint that does not restore
    is an :class:`InputError` naming it and the steps that do."""
    from flax import nnx

    model_dir = paths.as_path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: no such run directory")
    plugin, model_config = read_model_config(model_dir)
    abstract = nnx.eval_shape(lambda: layers.build_unsharded(model_config, nnx.Rngs(0)))
    graphdef, abstract_params, rest = nnx.split(abstract, nnx.Param, ...)
    target = _single_device_target(abstract_params)
    mngr = manager(model_dir, asynchronous=False)
    try:
        steps = mngr.all_steps()
        if not steps:
            raise InputError(f"{model_dir}: no checkpoint under {model_dir / CHECKPOINTS}")
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise InputError(
                f"{model_dir}: no checkpoint for step {step}; available: {sorted(steps)}"
            )
        try:
            params, _, _ = restore(mngr, step, target)
        except Exception as error:  # noqa: BLE001 - a damaged step: say which, and what loads
            good = [
                s for s in sorted(steps, reverse=True) if s != step and _restores(mngr, s, target)
            ]
            hint = (f"steps that load: {', '.join(map(str, good))} (--step N)" if good
                    else "no other step loads")  # fmt: skip
            raise InputError(
                f"{model_dir}: checkpoint {step} is damaged ({describe_failure(error)}); {hint}"
            ) from None
    finally:
        mngr.close()
    model = layers.build_unsharded(model_config, nnx.Rngs(0))  # non-param state, then params
    nnx.update(model, params)
    return model, load_run_tokenizer(model_dir), model_config, step
