"""A third-party package plugs in through the ``deepdive.plugins`` entry point, no edit to deepdive."""

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_plugin"


@pytest.fixture(scope="module")
def installed_example():
    try:
        metadata.distribution("deepdive-example-plugin")
    except metadata.PackageNotFoundError:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                str(EXAMPLE),
            ],
            check=True,
            timeout=300,
        )
    yield


def run(*args, env_extra=None, cwd=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_plugins_lists_the_example_with_its_distribution(installed_example):
    result = run("plugins", "--kind", "filters")
    assert result.returncode == 0, result.stderr
    assert "min_characters" in result.stdout
    assert "deepdive-example-plugin 0.1.0" in result.stdout


def test_autoload_can_be_switched_off(installed_example):
    result = run(
        "plugins", "--kind", "filters", env_extra={"DEEPDIVE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert "min_characters" not in result.stdout
    result = run(
        "plugins",
        "--kind",
        "filters",
        "--plugin_module",
        "deepdive_example_plugin",
        env_extra={"DEEPDIVE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert "min_characters" in result.stdout


def test_selected_from_a_gin_file(installed_example, tmp_path):
    gin_file = tmp_path / "select.gin"
    gin_file.write_text("import framework.core.registry\nfilters.min_characters.min_chars = 5\n")
    result = run("validate", "--gin_file", str(gin_file))
    assert result.returncode == 0, result.stderr
    code = (
        "from framework.core import config, discovery, registry\n"
        "from framework.data.document import Document\n"
        "discovery.load_plugins()\n"
        f"config.parse([{str(gin_file)!r}])\n"
        "f = registry.FILTERS.build('min_characters')\n"
        "print(f.filter(Document('a', 'abc')), f.filter(Document('b', 'abcdef')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(False, 'too_short') True"


def test_broken_plugin_is_reported_and_skipped_unless_strict(tmp_path):
    broken = tmp_path / "broken_plugin_mod.py"
    broken.write_text("raise RuntimeError('boom')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    # --plugin_module is explicit, so a failure there is always an error (exit 2)
    result = run("plugins", "--plugin_module", "broken_plugin_mod", env_extra=env)
    assert result.returncode == 2
    assert "broken_plugin_mod" in result.stderr and "boom" in result.stderr
    dist = tmp_path / "site"
    (dist / "brokenplug-0.1.dist-info").mkdir(parents=True)
    (dist / "brokenplug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n"
    )
    (dist / "brokenplug-0.1.dist-info" / "entry_points.txt").write_text(
        "[deepdive.plugins]\nbroken = broken_plugin_mod\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(dist)])}
    result = run("plugins", env_extra=env)
    assert result.returncode == 0
    assert "broken_plugin_mod" in result.stderr and "skipped" in result.stderr
    strict = run("plugins", "--strict_plugins", env_extra=env)
    assert strict.returncode == 2
    assert "strict_plugins" in strict.stderr
