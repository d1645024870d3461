"""Sweep files: ``experiments/sweeps/NAME.toml`` → a list of runs, each a set of gin bindings.

A sweep file (TOML, read with the standard library's ``tomllib``)::

    name = "tiny_lr_width"                         # default: the file name
    description = "learning rate x width on the tiny model"
    gin_files = ["base/train.gin", "models/gpt2_tiny.gin"]   # included by every run, in order
    run_id = "lr{LEARNING_RATE}-d{d_model}"          # run directory names (see below)
    metric = "val_loss"                             # a metrics.jsonl key to compare runs by
    mode = "min"                                    # or "max"
    output = "gs://my-bucket/sweeps"                # where cloud runs write MODEL_DIR (optional)

    [bindings]                                      # the same in every run
    TRAIN_STEPS = 2000

    [grid]                                          # every combination (first key varies slowest)
    LEARNING_RATE = [1e-3, 3e-3]
    "models.gpt2.d_model" = [64, 128]

    [[runs]]                                        # extra runs, one binding set each
    id = "big-lr"                                   # optional
    bindings = { LEARNING_RATE = 1e-2, "models.gpt2.d_model" = 128 }
    resources = { accelerator = "tpu-v6e-8" }       # optional per-run override

    [resources]                                     # what each run asks the cloud for
    accelerator = "tpu-v5litepod-8"                 # or "H100:8"; checked against an allow-list
    nodes = 1
    spot = true
    cloud = "gcp"
    region = "us-west4"
    zone = "us-west4-a"
    disk_size = 256                                 # GB
    runtime_version = "v2-alpha-tpuv5-lite"         # TPU VM image (default per generation)

    [launch]                                        # backend options (see each launcher)
    backend = "skypilot"
    parallel = 2

Values: numbers and booleans are gin literals; a string is a gin string, except that a string
starting with ``@`` (``"@models.gpt2()"``) or ``%`` (``"%SEQ_LEN"``) is a gin reference or macro;
``{ gin = "..." }`` is any gin expression written verbatim. Lists and tables nest.

Run ids: ``{NAME}`` fields are binding names (``{LEARNING_RATE}``, ``{models.gpt2.d_model}``) or
their last dotted part in lower case (``{d_model}``, ``{learning_rate}``), plus ``{index}`` and
``{sweep}``; a format spec may follow (``{LEARNING_RATE:.0e}``). The default names every varied
binding. Ids keep ``[A-Za-z0-9._=-]``; anything else becomes ``_``. Ids must be unique.

A grid and explicit runs add up: the grid's combinations first, then each ``[[runs]]`` entry.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError
from framework.launch import accelerators

_TOP_KEYS = {
    "name", "description", "gin_files", "run_id", "metric", "mode", "output",
    "bindings", "grid", "runs", "resources", "launch",
}  # fmt: skip
_RUN_KEYS = {"id", "bindings", "resources", "gin_files"}
_RESOURCE_KEYS = {
    "accelerator", "count", "nodes", "spot", "cloud", "region", "zone", "disk_size",
    "runtime_version", "cpus", "memory",
}  # fmt: skip
_BINDING_NAME_RE = re.compile(r"^([A-Z][A-Z0-9_]*|[A-Za-z_][\w/]*(\.[A-Za-z_]\w*)+)$")
_FIELD_RE = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclasses.dataclass(frozen=True)
class GinExpr:
    """A gin expression written verbatim (``{ gin = "..." }`` or a string starting @ or %)."""

    text: str


def to_gin(value: Any) -> str:
    """A TOML value as gin source text (see the module docstring for the rules)."""
    if isinstance(value, GinExpr):
        return value.text
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted string gin reads back unchanged
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_gin(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {to_gin(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as a gin value")


def _from_toml(value: Any) -> Any:
    """Turn TOML values into binding values: @/% strings and {gin=...} tables become GinExpr."""
    if isinstance(value, str) and value[:1] in ("@", "%"):
        return GinExpr(value)
    if isinstance(value, dict):
        if set(value) == {"gin"} and isinstance(value["gin"], str):
            return GinExpr(value["gin"])
        return {k: _from_toml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_toml(v) for v in value]
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, GinExpr):
        return {"gin": value.text}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"gin"}:
            return GinExpr(value["gin"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def id_text(value: Any) -> str:
    """A short text for a value inside a run id (0.001 → '0.001', 3e-4 → '0.0003')."""
    if isinstance(value, GinExpr):
        return value.text.strip("@%()")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(id_text(v) for v in value)
    return str(value)


def short_name(binding: str) -> str:
    """``models.gpt2.d_model`` → ``d_model``; ``LEARNING_RATE`` → ``learning_rate``."""
    return binding.rsplit(".", 1)[-1].lower()


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one run asks a cloud for. ``accelerator`` None means whatever the backend has."""

    accelerator: str | None = None
    count: int | None = None
    nodes: int = 1
    spot: bool = False
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    disk_size: int | None = None
    runtime_version: str | None = None
    cpus: str | None = None
    memory: str | None = None

    def checked_accelerator(self) -> accelerators.Accelerator | None:
        if self.accelerator is None:
            return None
        return accelerators.parse(self.accelerator, self.count)

    @property
    def tpu_runtime_version(self) -> str | None:
        acc = self.checked_accelerator()
        if acc is None or acc.kind != "tpu":
            return None
        return self.runtime_version or acc.runtime_version


@dataclasses.dataclass
class Run:
    """One run of a sweep: its id, its bindings (fixed + varied, in order) and its resources."""

    index: int
    run_id: str
    bindings: dict[str, Any]
    varied: dict[str, Any]
    gin_files: list[str]
    resources: Resources
    train_steps: int | None = None  # filled in by rendering (from the parsed config)

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "bindings": _to_json(self.bindings),
            "varied": _to_json(self.varied),
            "gin_files": self.gin_files,
            "resources": dataclasses.asdict(self.resources),
            "train_steps": self.train_steps,
        }

    @classmethod
    def from_json(cls, data: dict) -> Run:
        return cls(
            index=data["index"],
            run_id=data["run_id"],
            bindings=_from_json(data["bindings"]),
            varied=_from_json(data["varied"]),
            gin_files=list(data["gin_files"]),
            resources=Resources(**data["resources"]),
            train_steps=data.get("train_steps"),
        )


@dataclasses.dataclass
class Sweep:
    """An expanded sweep: everything rendering and launching need."""

    name: str
    source: str
    description: str
    metric: str
    mode: str
    output: str | None
    grid: dict[str, list[Any]]
    runs: list[Run]
    launch: dict[str, Any]
    sweep_dir: str = ""  # where it was rendered, relative to the render root (the cwd then)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "metric": self.metric,
            "mode": self.mode,
            "output": self.output,
            "grid": _to_json(self.grid),
            "launch": self.launch,
            "sweep_dir": self.sweep_dir,
            "runs": [r.to_json() for r in self.runs],
        }

    @classmethod
    def from_json(cls, data: dict) -> Sweep:
        return cls(
            name=data["name"],
            source=data["source"],
            description=data.get("description", ""),
            metric=data["metric"],
            mode=data["mode"],
            output=data.get("output"),
            grid=_from_json(data.get("grid", {})),
            runs=[Run.from_json(r) for r in data["runs"]],
            launch=data.get("launch", {}),
            sweep_dir=data.get("sweep_dir", ""),
        )

    def run(self, run_id: str) -> Run:
        for run in self.runs:
            if run.run_id == run_id:
                return run
        raise ConfigError(
            f"sweep {self.name}: no run {run_id!r}; runs: {', '.join(r.run_id for r in self.runs)}"
        )


def _check_keys(where: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        from framework.core.registry import suggest

        hints = "".join(suggest(k, sorted(allowed)) for k in unknown)
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; {hints}allowed: {', '.join(sorted(allowed))}"
        )


def _check_binding_names(where: str, names: list[str]) -> None:
    for name in names:
        if not _BINDING_NAME_RE.match(name):
            raise ConfigError(
                f"{where}: {name!r} is not a gin binding name (macros are UPPER_CASE, parameters "
                'are qualified like "models.gpt2.d_model"; quote dotted names in TOML)'
            )


def _resources(where: str, table: dict, base: Resources | None = None) -> Resources:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: resources must be a table")
    _check_keys(where, table, _RESOURCE_KEYS)
    merged = {**(dataclasses.asdict(base) if base else {}), **table}
    if "accelerator" in table and "count" not in table:
        merged["count"] = None  # a new accelerator does not inherit the old count
    try:
        resources = Resources(**merged)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None
    if not isinstance(resources.nodes, int) or resources.nodes < 1:
        raise ConfigError(f"{where}: nodes must be a positive integer, got {resources.nodes!r}")
    try:
        acc = resources.checked_accelerator()
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    if acc is None and resources.runtime_version:
        raise ConfigError(f"{where}: runtime_version is for TPU accelerators only")
    if acc is not None and acc.kind == "gpu" and resources.runtime_version:
        raise ConfigError(f"{where}: runtime_version is for TPU slices, not {acc.skypilot}")
    return resources


def format_run_id(pattern: str, run_bindings: dict[str, Any], index: int, sweep: str) -> str:
    """Fill ``{FIELD}`` / ``{FIELD:spec}`` in ``pattern`` (see the module docstring)."""
    values: dict[str, Any] = {"index": index, "sweep": sweep}
    for name, value in run_bindings.items():
        values.setdefault(short_name(name), value)
        values[name] = value

    def fill(match: re.Match) -> str:
        field, spec = match.group(1).strip(), match.group(2)
        if field not in values:
            raise KeyError(field)
        value = values[field]
        if spec:
            return format(value, spec)
        return id_text(value)

    text = _FIELD_RE.sub(fill, pattern)
    return _ID_BAD_CHARS.sub("_", text).strip("_") or f"run{index}"


def load(path: str | Path) -> Sweep:
    """Read and expand a sweep file; raise ConfigError naming the file (and run) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return expand(data, source=str(path), default_name=path.stem)


def expand(data: dict, source: str = "<sweep>", default_name: str = "sweep") -> Sweep:
    """Expand a parsed sweep table into runs (the grid's combinations, then the explicit runs)."""
    where = source
    _check_keys(where, data, _TOP_KEYS)
    name = data.get("name", default_name)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", str(name)):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-'")
    gin_files = data.get("gin_files")
    if not gin_files or not isinstance(gin_files, list):
        raise ConfigError(f"{where}: gin_files must list the base gin files (e.g. base/train.gin)")
    metric = data.get("metric", "val_loss")
    mode = data.get("mode", "min")
    if mode not in ("min", "max"):
        raise ConfigError(f"{where}: mode must be 'min' or 'max', got {mode!r}")
    fixed = {k: _from_toml(v) for k, v in data.get("bindings", {}).items()}
    _check_binding_names(f"{where} [bindings]", list(fixed))
    grid = {k: _from_toml(v) for k, v in data.get("grid", {}).items()}
    _check_binding_names(f"{where} [grid]", list(grid))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where} [grid]: {key} must be a non-empty list of values")
    explicit = data.get("runs", [])
    if not isinstance(explicit, list):
        raise ConfigError(f"{where}: runs must be an array of tables ([[runs]])")
    if not grid and not explicit:
        raise ConfigError(f"{where}: no runs: add a [grid] table and/or [[runs]] entries")
    base_resources = _resources(f"{where} [resources]", data.get("resources", {}))
    output = data.get("output")
    launch = dict(data.get("launch", {}))

    varied_sets: list[tuple[dict, str | None, Resources, list[str]]] = []
    for combo in itertools.product(*grid.values()) if grid else []:
        varied_sets.append((dict(zip(grid, combo, strict=True)), None, base_resources, []))
    for i, entry in enumerate(explicit):
        run_where = f"{where} [[runs]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{run_where}: each run must be a table")
        _check_keys(run_where, entry, _RUN_KEYS)
        bindings = {k: _from_toml(v) for k, v in entry.get("bindings", {}).items()}
        _check_binding_names(run_where, list(bindings))
        if entry.get("id") is not None:
            run_where = f"{where}: run {entry['id']}"
        resources = (
            _resources(f"{run_where} resources", entry["resources"], base_resources)
            if "resources" in entry
            else base_resources
        )
        extra_files = list(entry.get("gin_files", []))
        varied_sets.append((bindings, entry.get("id"), resources, extra_files))

    pattern = data.get("run_id")
    varied_names = list(dict.fromkeys(k for v, _, _, _ in varied_sets for k in v))
    if pattern is None:
        pattern = "-".join(f"{short_name(k)}_{{{k}}}" for k in varied_names) or "run{index}"
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for index, (varied, explicit_id, resources, extra_files) in enumerate(varied_sets):
        bindings = {**fixed, **varied}
        if explicit_id is not None:
            run_id = _ID_BAD_CHARS.sub("_", str(explicit_id))
        else:
            try:
                run_id = format_run_id(pattern, bindings, index, name)
            except KeyError as error:
                known = sorted({"index", "sweep", *bindings, *(short_name(k) for k in bindings)})
                raise ConfigError(
                    f"{where}: run_id pattern {pattern!r} names {{{error.args[0]}}}, which run "
                    f"#{index + 1} does not bind; fields: {', '.join(known)}"
                ) from None
            except (ValueError, TypeError) as error:
                raise ConfigError(f"{where}: run_id pattern {pattern!r}: {error}") from None
        if run_id in seen:
            raise ConfigError(
                f"{where}: runs #{seen[run_id] + 1} and #{index + 1} both get the id {run_id!r}; "
                "name every varied binding in run_id (or give the runs an id)"
            )
        seen[run_id] = index
        runs.append(
            Run(
                index=index,
                run_id=run_id,
                bindings=bindings,
                varied=varied,
                gin_files=[*gin_files, *extra_files],
                resources=resources,
            )
        )
    return Sweep(
        name=str(name),
        source=source,
        description=str(data.get("description", "")),
        metric=str(metric),
        mode=mode,
        output=output,
        grid=grid,
        runs=runs,
        launch=launch,
    )


def save(sweep: Sweep, sweep_dir: str | Path) -> Path:
    path = Path(sweep_dir) / "sweep.json"
    path.write_text(json.dumps(sweep.to_json(), indent=2) + "\n")
    return path


def load_rendered(sweep_dir: str | Path) -> Sweep:
    """The sweep that ``deepdive sweep render`` wrote into ``runs/NAME/sweep.json``."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        raise ConfigError(
            f"{sweep_dir}: no sweep.json here; render the sweep first with "
            "`deepdive sweep render experiments/sweeps/NAME.toml`"
        )
    return Sweep.from_json(json.loads(path.read_text()))
