"""Registry rules: names, protocols, gin exposure, origins, suggestions, temporary registration."""

import gin
import pytest

from framework.core import registry
from framework.core.registry import FILTERS, MODELS
from framework.data.document import Document


class KeepLong:
    """Keep documents of at least ``min_chars`` characters."""

    def __init__(self, min_chars: int = 10):
        self.min_chars = min_chars

    def filter(self, doc):
        return len(doc.text) >= self.min_chars

    def explain(self, doc):
        return {"chars": len(doc.text)}


def test_registered_plugin_is_gin_configurable_as_kind_dot_name():
    with FILTERS.temporary("keep_long_test", KeepLong):
        gin.clear_config()
        gin.parse_config("filters.keep_long_test.min_chars = 3")
        built = FILTERS.build("keep_long_test")
        assert built.min_chars == 3
        assert built.filter(Document("a", "abcd")) is True
        gin.clear_config()
    assert "keep_long_test" not in FILTERS


def test_origin_records_module_file_line_and_distribution():
    with FILTERS.temporary("keep_long_origin", KeepLong) as _:
        origin = FILTERS.entry("keep_long_origin").origin
        assert origin.module == __name__
        class_line = next(
            i for i, line in enumerate(open(__file__), 1) if line.startswith("class KeepLong")
        )
        assert origin.location == f"{__file__}:{class_line}"
        assert origin.distribution  # "local" for a test module


def test_unknown_name_suggests_close_matches_and_lists_known():
    with FILTERS.temporary("keep_long_words", KeepLong):
        with pytest.raises(registry.UnknownPluginError) as info:
            FILTERS.entry("keep_lomg_words")
    message = str(info.value)
    assert "did you mean 'keep_long_words'" in message
    assert "known filters:" in message


def test_names_must_be_snake_case_and_unique_across_kinds():
    with pytest.raises(ValueError, match="snake_case"):
        FILTERS.register("KeepLong")(KeepLong)
    with FILTERS.temporary("shared_name_test", KeepLong):
        with pytest.raises(ValueError, match="unique across all kinds"):
            MODELS.register("shared_name_test")(KeepLong)


def test_protocol_is_checked_at_registration():
    class NotAFilter:
        def explain(self, doc):
            return {}

    with pytest.raises(TypeError, match="missing: filter"):
        FILTERS.register("not_a_filter_test")(NotAFilter)
    assert "not_a_filter_test" not in FILTERS


def test_factory_functions_are_checked_when_built():
    def make_bad():
        return object()

    with FILTERS.temporary("bad_factory_test", make_bad):
        with pytest.raises(TypeError, match="does not follow the filters protocol"):
            FILTERS.build("bad_factory_test")


def test_lookup_qualified_and_bare_names():
    with FILTERS.temporary("keep_long_lookup", KeepLong):
        assert registry.lookup("filters.keep_long_lookup").kind == "filters"
        assert registry.lookup("keep_long_lookup").qualified_name == "filters.keep_long_lookup"
        with pytest.raises(registry.UnknownPluginError, match="did you mean 'filters'"):
            registry.lookup("filtres.keep_long_lookup")


def test_every_kind_of_the_design_exists():
    for kind in [
        "filters",
        "extractors",
        "formatters",
        "tokenizers",
        "models",
        "samplers",
        "launchers",
    ]:
        assert registry.kind(kind).kind == kind
