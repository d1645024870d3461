"""Plugin discovery, before any gin parsing: built-ins → entry points → ``--plugin_module``.

* The built-in ``plugins`` package is always imported: every module under it registers itself
  with its kind's decorator when imported.
* Third-party packages register through the entry-point group ``deepdive.plugins``: each entry
  point names a module (or a callable) that is imported (or called). ``DEEPDIVE_DISABLE_PLUGIN_AUTOLOAD=1``
  skips this step.
* ``--plugin_module a.b`` imports extra modules by name.

A third-party plugin that fails to import is reported on stderr and skipped, unless ``strict``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import pkgutil
import sys
from collections.abc import Iterable

from framework.core.errors import ConfigError

ENTRY_POINT_GROUP = "deepdive.plugins"
BUILTIN_PACKAGE = "plugins"
log = logging.getLogger(__name__)

_loaded = False
# (source, error) for every plugin that failed to load; shown by `deepdive plugins`.
FAILURES: list[tuple[str, str]] = []


def import_package_tree(package_name: str) -> None:
    """Import a package and all its submodules (each registers its plugins on import)."""
    package = importlib.import_module(package_name)
    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
        importlib.import_module(info.name)


def load_builtin_kind(kind: str) -> None:
    """Import only the built-in plugins of one kind (``plugins/<kind>/``): a cheap start for
    commands that need, say, tokenizers and nothing that imports jax."""
    import_package_tree(f"{BUILTIN_PACKAGE}.{kind}")


def _report(source: str, error: BaseException, strict: bool) -> None:
    message = f"plugin {source} failed to load: {type(error).__name__}: {error}"
    if strict:
        raise ConfigError(message + " (--strict_plugins is set)") from error
    FAILURES.append((source, f"{type(error).__name__}: {error}"))
    print(f"warning: {message}; skipped", file=sys.stderr)


def load_entry_points(strict: bool = False) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.split(":")[0] == BUILTIN_PACKAGE:
            continue  # the built-ins are already loaded
        try:
            loaded = ep.load()
            if callable(loaded) and not isinstance(loaded, type(sys)):
                loaded()
            if hasattr(loaded, "__path__"):
                import_package_tree(loaded.__name__)
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break deepdive
            _report(f"{ep.name} = {ep.value} (entry point)", error, strict)


def load_plugins(extra_modules: Iterable[str] = (), strict: bool = False) -> None:
    """Import built-in plugins, entry-point plugins and ``extra_modules`` (idempotent)."""
    global _loaded
    if not _loaded:
        import_package_tree(BUILTIN_PACKAGE)
        if os.environ.get("DEEPDIVE_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "True"):
            load_entry_points(strict)
        _loaded = True
    for module in extra_modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - the user named it: any failure is an error
            raise ConfigError(
                f"--plugin_module {module}: cannot import it ({type(error).__name__}: {error})"
            ) from error
