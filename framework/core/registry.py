"""Plugin registries: one per kind, each entry selectable by name from gin.

Semantics, stated first:

* A *kind* (``filters``, ``extractors``, ``formatters``, ``tokenizers``, ``models``, ``samplers``,
  ``launchers``, ``templates``, ``skills``, ...) is a :class:`Registry`. ``@FILTERS.register("gopher_quality")`` adds a class or a
  factory function under that name.
* Names are snake_case and unique across *all* kinds, so ``gopher_quality`` means one thing.
* Registration checks the kind's Protocol: a class must define every member the Protocol names;
  a factory function is checked when it is built (:meth:`Registry.check`).
* Every entry becomes the gin configurable ``KIND.NAME`` (``filters.gopher_quality``), so gin files
  select plugins with ``@filters.gopher_quality()`` and set parameters with
  ``filters.gopher_quality.min_doc_words = 50``.
* Every entry records where it came from (module, file:line, distribution) for ``deepdive plugins``.
* Unknown names raise :class:`UnknownPluginError`, whose message carries close-match suggestions
  and the list of known names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import gin

from framework.core.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownPluginError(ConfigError):
    """A plugin name that no registry knows."""


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a plugin was defined: module, ``file:line`` and the distribution that ships it."""

    module: str
    location: str
    distribution: str

    def __str__(self) -> str:
        return f"{self.module} ({self.location}) [{self.distribution}]"


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any  # the gin-wrapped class or function
    origin: Origin

    @property
    def qualified_name(self) -> str:
        return f"{self.kind}.{self.name}"


# ----------------------------------------------------------------------------------------------
# Protocols, one per kind. Members are checked on classes at registration time.


@runtime_checkable
class Filter(Protocol):
    """``filter(doc) -> bool | (bool, reason)``; ``explain(doc) -> dict`` of statistics."""

    def filter(self, doc: Any) -> bool | tuple[bool, str]: ...

    def explain(self, doc: Any) -> dict: ...


@runtime_checkable
class Extractor(Protocol):
    """``extract(html) -> text`` (empty string when nothing was found)."""

    def extract(self, html: str) -> str: ...


@runtime_checkable
class Formatter(Protocol):
    """``format(doc) -> doc``: rewrites a document's text (e.g. PII anonymisation)."""

    def format(self, doc: Any) -> Any: ...


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, ids: Any, **kwargs: Any) -> str: ...


@runtime_checkable
class Model(Protocol):
    """A model plugin is a hyper-parameter config whose ``build(rngs)`` makes the flax NNX module."""

    def build(self, rngs: Any) -> Any: ...


@runtime_checkable
class Converter(Protocol):
    """Imports one external checkpoint format into a model plugin (``deepdive convert NAME``)."""

    model: str  # the model plugin it fills
    architectures: tuple[str, ...]  # e.g. Hugging Face ``config.json`` "architectures"

    def config_kwargs(self, hf_config: dict) -> dict: ...

    def params(self, tensors: dict, config: Any) -> dict: ...


@runtime_checkable
class Sampler(Protocol):
    """A logits transform or selection step: ``sampler(logits, ...) -> logits`` (see sample.py)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class ChatTemplate(Protocol):
    """Turns OpenAI-style messages into a model's chat text, split into segments that say which
    characters are the assistant's (what supervised fine-tuning learns: its content and the
    end-of-turn token) — see ``plugins/templates/``."""

    special_tokens: tuple[str, ...]  # the template's control tokens, added to the tokenizer
    end_of_turn: str  # where a generated assistant turn stops

    def render(self, messages: Any, add_generation_prompt: bool = False) -> Any: ...


@runtime_checkable
class Skill(Protocol):
    """A synthetic task for post-training, generated offline and checked exactly:
    ``example(rng) -> (messages, answer)`` (a conversation ending with the user's turn, and the
    one correct reply) — see ``plugins/skills/``."""

    def example(self, rng: Any) -> Any: ...


@runtime_checkable
class Launcher(Protocol):
    def launch(self, *args: Any, **kwargs: Any) -> Any: ...


# ----------------------------------------------------------------------------------------------


def protocol_members(protocol: type) -> list[str]:
    """The methods a Protocol asks for (public names, plus ``__call__``)."""
    return [
        m
        for m, v in vars(protocol).items()
        if callable(v) and (not m.startswith("_") or m == "__call__")
    ]


_ALL_NAMES: dict[str, str] = {}  # name -> kind, for uniqueness across kinds
REGISTRIES: dict[str, Registry] = {}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    try:
        return importlib.metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - metadata lookup is best effort
        return {}


def _distribution_of(module_name: str) -> str:
    top = module_name.split(".")[0]
    dists = _packages_distributions().get(top, [])
    if not dists:
        return "deepdive" if top in {"plugins", "framework", "beam_pipelines"} else "local"
    name = dists[0]
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def _origin_of(obj: Any) -> Origin:
    module = getattr(obj, "__module__", "?") or "?"
    try:
        file = inspect.getsourcefile(obj) or "?"
        line = inspect.getsourcelines(obj)[1]
        location = f"{file}:{line}"
    except (OSError, TypeError):
        location = "?"
    return Origin(module=module, location=location, distribution=_distribution_of(module))


def suggest(name: str, known: list[str]) -> str:
    """'did you mean ...?' text for ``name`` among ``known`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


class Registry:
    """Named plugins of one kind. See the module docstring for the rules."""

    def __init__(self, kind: str, protocol: type | None = None):
        self.kind = kind
        self.protocol = protocol
        self._entries: dict[str, Entry] = {}
        REGISTRIES[kind] = self

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register a class or factory under ``name`` and make it ``KIND.NAME`` in gin."""

        def decorate(obj: Any) -> Any:
            self._check_name(name)
            if inspect.isclass(obj):
                self._check_class(name, obj)
            origin = _origin_of(obj)
            wrapped = gin.configurable(name, module=self.kind)(obj)
            self._entries[name] = Entry(self.kind, name, wrapped, origin)
            _ALL_NAMES[name] = self.kind
            return wrapped

        return decorate

    def _check_name(self, name: str) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"{self.kind}: plugin name {name!r} is not snake_case")
        if name in _ALL_NAMES:
            raise ValueError(
                f"{self.kind}: plugin name {name!r} is already registered as "
                f"{_ALL_NAMES[name]}.{name}; names are unique across all kinds"
            )

    def _check_class(self, name: str, cls: type) -> None:
        if self.protocol is None:
            return
        members = protocol_members(self.protocol)
        missing = [m for m in members if not hasattr(cls, m)]
        if missing:
            raise TypeError(
                f"{self.kind}.{name}: {cls.__qualname__} does not follow the {self.kind} protocol "
                f"({self.protocol.__name__}); missing: {', '.join(missing)}"
            )

    def check(self, name: str, built: Any) -> Any:
        """Check an object built by a factory against the kind's Protocol; returns it."""
        if self.protocol is not None and not isinstance(built, self.protocol):
            raise TypeError(
                f"{self.kind}.{name} built a {type(built).__name__}, which does not follow the "
                f"{self.kind} protocol ({self.protocol.__name__})"
            )
        return built

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        if _ALL_NAMES.get(name) == self.kind:
            del _ALL_NAMES[name]
        with contextlib.suppress(Exception):
            gin.config._REGISTRY.pop(f"{self.kind}.{name}", None)  # noqa: SLF001

    @contextlib.contextmanager
    def temporary(self, name: str, obj: Any) -> Iterator[Any]:
        """Register ``obj`` as ``name`` for the duration of a ``with`` block (tests)."""
        wrapped = self.register(name)(obj)
        try:
            yield wrapped
        finally:
            self.unregister(name)

    # -- lookup -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            known = self.names()
            raise UnknownPluginError(
                f"unknown {self.kind} plugin {name!r}: {suggest(name, known)}"
                f"known {self.kind}: {', '.join(known) or '(none)'}"
            )
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The registered (gin-configurable) class or factory called ``name``."""
        return self.entry(name).obj

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build the plugin ``name`` (gin bindings apply) and check it against the Protocol."""
        return self.check(name, self.get(name)(**kwargs))


FILTERS = Registry("filters", Filter)
EXTRACTORS = Registry("extractors", Extractor)
FORMATTERS = Registry("formatters", Formatter)
TOKENIZERS = Registry("tokenizers", Tokenizer)
MODELS = Registry("models", Model)
SAMPLERS = Registry("samplers", Sampler)
LAUNCHERS = Registry("launchers", Launcher)
CONVERTERS = Registry("converters", Converter)
TEMPLATES = Registry("templates", ChatTemplate)
SKILLS = Registry("skills", Skill)
DATA = Registry("data")  # training input sources (framework/train/input.py)


def kind(name: str) -> Registry:
    """The registry of kind ``name`` (with suggestions when it does not exist)."""
    if name not in REGISTRIES:
        known = sorted(REGISTRIES)
        raise UnknownPluginError(
            f"unknown plugin kind {name!r}: {suggest(name, known)}known kinds: {', '.join(known)}"
        )
    return REGISTRIES[name]


def lookup(qualified: str) -> Entry:
    """Find ``KIND.NAME``; a bare ``NAME`` is looked up across all kinds."""
    if "." in qualified:
        kind_name, name = qualified.split(".", 1)
        return kind(kind_name).entry(name)
    if qualified in _ALL_NAMES:
        return REGISTRIES[_ALL_NAMES[qualified]].entry(qualified)
    known = sorted(f"{k}.{n}" for n, k in _ALL_NAMES.items())
    raise UnknownPluginError(
        f"unknown plugin {qualified!r}: {suggest(qualified, known + list(_ALL_NAMES))}"
        f"known plugins: {', '.join(known)}"
    )


def all_qualified_names() -> list[str]:
    return sorted(f"{k}.{n}" for n, k in _ALL_NAMES.items())
