"""gin configuration: resolve files, apply bindings, and turn gin's errors into clear ones.

* ``--gin_file F`` (repeatable, applied in order, later wins) and ``--gin.NAME=VALUE`` (repeatable,
  applied after every file). ``--gin.MODEL_DIR='"runs/x"'`` binds a macro;
  ``--gin.train.steps=10`` binds a parameter.
* A file path resolves against the working directory, then ``experiments/``, then the
  repository root (so ``experiments/x.gin`` works from anywhere); ``include`` lines inside gin
  files resolve the same way.
* Unknown configurables, unknown parameters and parse errors become one :class:`ConfigError`
  line naming the file (or binding), the problem and a suggestion.
* Macros set to ``%gin.REQUIRED`` and never overridden are found eagerly, before any compute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import gin

from framework.core import paths, registry
from framework.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

_INCLUDE_RE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.MULTILINE)
_REQUIRED_MACRO_RE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*%gin\.REQUIRED", re.MULTILINE)


@dataclasses.dataclass
class ParsedConfig:
    """What was parsed: the resolved files (with includes) and the command-line bindings."""

    gin_files: list[Path]
    bindings: list[str]
    all_files: list[Path] = dataclasses.field(default_factory=list)


def search_places(path: str) -> list[Path]:
    p = Path(path)
    if p.is_absolute():
        return [p]
    return [Path.cwd() / p, EXPERIMENTS_DIR / p, REPO_ROOT / p]


def resolve_gin_file(path: str) -> Path:
    """The first existing place for ``path``: the working directory, then ``experiments/``."""
    places = search_places(path)
    for place in places:
        if place.is_file():
            return place.resolve()
    raise ConfigError(f"gin file {path!r} not found; searched: {', '.join(str(p) for p in places)}")


def _included_files(path: Path, seen: set[Path]) -> list[Path]:
    if path in seen:
        return []
    seen.add(path)
    found = [path]
    for include in _INCLUDE_RE.findall(path.read_text()):
        candidates = [path.parent / include, *search_places(include)]
        for candidate in candidates:
            if candidate.is_file():
                found += _included_files(candidate.resolve(), seen)
                break
    return found


def normalize_binding(binding: str) -> str:
    """``NAME=VALUE`` → ``NAME = VALUE``; bare words that are not gin literals become strings."""
    if "=" not in binding:
        raise ConfigError(f"--gin.{binding}: expected --gin.NAME=VALUE")
    name, value = binding.split("=", 1)
    name, value = name.strip(), value.strip()
    try:
        gin.config.parse_value(value)
    except Exception:  # noqa: BLE001 - not a gin literal: treat as a plain string
        value = json.dumps(value)
    return f"{name} = {value}"


def _explain_gin_error(error: Exception, where: str) -> str:
    text = " ".join(str(error).split())
    match = re.search(r"No configurable matching (?:reference )?'@?([^'(]+)", text)
    if match:
        wanted = match.group(1)
        known = registry.all_qualified_names() + sorted(k for k, _ in gin.config._REGISTRY.items())  # noqa: SLF001
        line = re.search(r"line (\d+)", text)
        where = f"{where}:{line.group(1)}" if line else where
        return (
            f"{where}: unknown configurable {wanted!r}: "
            f"{registry.suggest(wanted, known)}(list plugins with `deepdive plugins`)"
        )
    match = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", text)
    if match:
        configurable, param = match.groups()
        params = _parameters_of(configurable)
        return (
            f"{where}: {configurable} has no parameter {param!r}: "
            f"{registry.suggest(param, params)}its parameters: {', '.join(params)}"
        )
    return f"{where}: {text}"


def _parameters_of(selector: str) -> list[str]:
    import inspect

    try:
        configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
        fn = configurable.wrapped
        target = fn.__init__ if inspect.isclass(fn) else fn
        return [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    except Exception:  # noqa: BLE001
        return []


def missing_required_macros(files: Iterable[Path]) -> list[tuple[str, Path]]:
    """Macros that some file sets to ``%gin.REQUIRED`` and that are still REQUIRED after parsing."""
    missing = []
    for path in files:
        for name in _REQUIRED_MACRO_RE.findall(path.read_text()):
            try:
                value = gin.query_parameter(f"{name}/macro.value")
            except ValueError:
                continue
            if isinstance(value, gin.config.ConfigurableReference):
                value = value.scoped_configurable_fn()
            if value is gin.REQUIRED and name not in [m for m, _ in missing]:
                missing.append((name, path))
    return missing


class _QuietKnownNoise(logging.Filter):
    """Hide two harmless root-logger lines that would break one-line error messages: gin's
    "Path not found" for every search-path prefix an ``include`` does not match, and Beam's
    "apitools not found" at import (deepdive uses no Google Cloud client)."""

    NOISE = ("Path not found", "apitools not found")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


logging.getLogger().addFilter(_QuietKnownNoise())


def parse(
    gin_files: Sequence[str],
    bindings: Sequence[str] = (),
    check_required: bool = True,
) -> ParsedConfig:
    """Clear gin, parse ``gin_files`` then ``bindings``; raise ConfigError on any problem."""
    gin.clear_config()
    gin.add_config_file_search_path(str(EXPERIMENTS_DIR))
    gin.add_config_file_search_path(os.getcwd())
    resolved = [resolve_gin_file(f) for f in gin_files]
    all_files: list[Path] = []
    seen: set[Path] = set()
    for path in resolved:
        all_files += _included_files(path, seen)
        try:
            gin.parse_config_file(str(path))
        except (ValueError, SyntaxError, TypeError, KeyError, ImportError, OSError) as error:
            raise ConfigError(_explain_gin_error(error, str(path))) from None
    normalized = [normalize_binding(b) for b in bindings]
    for binding, raw in zip(normalized, bindings, strict=True):
        try:
            gin.parse_config(binding)
        except (ValueError, SyntaxError, TypeError, KeyError) as error:
            raise ConfigError(_explain_gin_error(error, f"--gin.{raw}")) from None
    if check_required:
        missing = missing_required_macros(all_files)
        if missing:
            names = ", ".join(f"{name} (declared in {path})" for name, path in missing)
            fixes = " ".join(f"--gin.{name}=..." for name, _ in missing)
            raise ConfigError(f"required macro not set: {names}; set it with {fixes}")
    return ParsedConfig(gin_files=resolved, bindings=list(bindings), all_files=all_files)


def query(name: str, default: Any = None) -> Any:
    """The value of a macro or binding, or ``default`` when gin has none."""
    try:
        value = gin.query_parameter(name if "." in name else f"{name}/macro.value")
    except ValueError:
        return default
    if isinstance(value, gin.config.ConfigurableReference):
        value = value.scoped_configurable_fn()
    return value


def build_references() -> list[str]:
    """Build every ``@kind.name()`` plugin that the parsed config binds (validation; no compute)."""
    built = []
    seen = set()
    for (_scope, _selector), params in list(gin.config._CONFIG.items()):  # noqa: SLF001
        for value in params.values():
            for ref in gin.config._iterate_flattened_values(value):  # noqa: SLF001
                if not isinstance(ref, gin.config.ConfigurableReference) or not ref.evaluate:
                    continue
                selector = ref.configurable.selector
                kind_name = selector.split(".")[0]
                if kind_name not in registry.REGISTRIES or id(ref) in seen:
                    continue
                seen.add(id(ref))
                try:
                    obj = ref.scoped_configurable_fn()
                except ConfigError:
                    raise
                except Exception as error:  # noqa: BLE001
                    raise ConfigError(
                        f"@{selector}(): could not be built: {type(error).__name__}: {error}"
                    ) from None
                registry.kind(kind_name).check(selector.split(".", 1)[1], obj)
                built.append(selector)
    return built


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_files(run_dir: str | os.PathLike, parsed: ParsedConfig, **extra: Any) -> None:
    """Write ``config.gin`` and ``run_manifest.json`` into ``run_dir`` (created if needed)."""
    run_dir = paths.as_path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.gin").write_text(gin.config_str())
    origins = {}
    for kind_name, reg in registry.REGISTRIES.items():
        for entry in reg.entries():
            origins[f"{kind_name}.{entry.name}"] = str(entry.origin)
    versions = {}
    for module in ("jax", "flax", "optax", "orbax.checkpoint", "grain", "apache_beam", "gin"):
        mod = sys.modules.get(module)
        if mod is not None:
            versions[module] = getattr(mod, "__version__", "?")
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "gin_files": [str(p) for p in parsed.gin_files],
        "bindings": parsed.bindings,
        "plugins": origins,
        "versions": versions,
        "python": platform.python_version(),
        "git_sha": _git_sha(),
        **extra,
    }
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
