"""gin configuration: path resolution, bindings, clear errors, eager REQUIRED checks, run files."""

import json
import os

import gin
import pytest

from framework.core import config
from framework.core.errors import ConfigError
from framework.core.registry import FILTERS


class Threshold:
    def __init__(self, threshold: float = 0.5, min_words: int = 3):
        self.threshold = threshold
        self.min_words = min_words

    def filter(self, doc):
        return True

    def explain(self, doc):
        return {}


@gin.configurable("demo_command")
def demo_command(output_dir=gin.REQUIRED, filters=()):
    return output_dir, filters


@pytest.fixture
def threshold_plugin():
    with FILTERS.temporary("threshold_test", Threshold):
        yield
    gin.clear_config()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file_lists_places_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.parse(["nope/missing.gin"])
    message = str(info.value)
    assert "missing.gin" in message
    assert str(tmp_path / "nope" / "missing.gin") in message
    assert str(config.EXPERIMENTS_DIR / "nope" / "missing.gin") in message


def test_files_apply_in_order_and_bindings_last(tmp_path, threshold_plugin):
    a = write(tmp_path, "a.gin", "filters.threshold_test.threshold = 0.1\n")
    b = write(tmp_path, "b.gin", "filters.threshold_test.threshold = 0.2\n")
    config.parse([str(a), str(b)], ["filters.threshold_test.min_words=7"])
    built = FILTERS.build("threshold_test")
    assert (built.threshold, built.min_words) == (0.2, 7)


def test_unknown_plugin_error_names_file_and_suggests(tmp_path, threshold_plugin):
    bad = write(tmp_path, "bad.gin", "demo_command.filters = [@filters.treshold_test()]\n")
    with pytest.raises(ConfigError) as info:
        config.parse([str(bad)])
    message = str(info.value)
    assert str(bad) in message
    assert "filters.treshold_test" in message
    assert "did you mean 'filters.threshold_test'" in message


def test_misspelled_parameter_names_binding_and_suggests(tmp_path, threshold_plugin):
    bad = write(tmp_path, "bad.gin", "filters.threshold_test.treshold = 0.3\n")
    with pytest.raises(ConfigError) as info:
        config.parse([str(bad)])
    message = str(info.value)
    assert str(bad) in message and "'treshold'" in message
    assert "did you mean 'threshold'" in message


def test_parse_error_is_one_clear_message(tmp_path):
    bad = write(tmp_path, "bad.gin", "demo_command.output_dir = [unclosed\n")
    with pytest.raises(ConfigError) as info:
        config.parse([str(bad)])
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)


def test_unset_required_macro_is_found_before_compute(tmp_path):
    run = write(
        tmp_path,
        "run.gin",
        "# Required: OUTPUT_DIR\nOUTPUT_DIR = %gin.REQUIRED\ndemo_command.output_dir = %OUTPUT_DIR\n",
    )
    with pytest.raises(ConfigError) as info:
        config.parse([str(run)])
    message = str(info.value)
    assert "OUTPUT_DIR" in message and str(run) in message and "--gin.OUTPUT_DIR=" in message
    config.parse([str(run)], ['OUTPUT_DIR="/tmp/out"'])
    assert demo_command() == ("/tmp/out", ())


def test_bare_words_in_bindings_become_strings(tmp_path):
    run = write(
        tmp_path, "run.gin", "OUTPUT_DIR = %gin.REQUIRED\ndemo_command.output_dir = %OUTPUT_DIR\n"
    )
    config.parse([str(run)], ["OUTPUT_DIR=/tmp/plain"])
    assert demo_command()[0] == "/tmp/plain"


def test_relative_paths_resolve_against_experiments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = sorted(config.EXPERIMENTS_DIR.rglob("*.gin"))
    if not shipped:
        pytest.skip("no shipped gin files yet")
    relative = shipped[0].relative_to(config.EXPERIMENTS_DIR)
    assert config.resolve_gin_file(str(relative)) == shipped[0].resolve()


def test_build_references_builds_selected_plugins(tmp_path, threshold_plugin):
    run = write(tmp_path, "run.gin", "demo_command.filters = [@filters.threshold_test()]\n")
    config.parse([str(run)])
    assert config.build_references() == ["filters.threshold_test"]


def test_run_files_written(tmp_path, threshold_plugin):
    run = write(tmp_path, "run.gin", "filters.threshold_test.threshold = 0.25\n")
    parsed = config.parse([str(run)], ["filters.threshold_test.min_words=4"])
    config.write_run_files(tmp_path / "out", parsed, mesh={"data": 1})
    assert "threshold_test.threshold = 0.25" in (tmp_path / "out" / "config.gin").read_text()
    manifest = json.loads((tmp_path / "out" / "run_manifest.json").read_text())
    assert manifest["gin_files"] == [str(run.resolve())]
    assert manifest["bindings"] == ["filters.threshold_test.min_words=4"]
    assert manifest["mesh"] == {"data": 1}
    assert "filters.threshold_test" in manifest["plugins"]
    assert os.path.isabs(manifest["gin_files"][0])
