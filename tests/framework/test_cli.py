"""The command line: help, plugin listing, exit codes and one-line errors."""

import subprocess
import sys

import pytest

from framework.cli import app as cli


def deepdive(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_help_lists_every_command_of_the_design():
    result = deepdive("--help")
    assert result.returncode == 0
    for name in [
        "plugins",
        "validate",
        "data",
        "dedup",
        "explain",
        "tokenizer",
        "tokenize",
        "train",
        "eval",
        "convert",
        "sample",
        "chat",
        "skill",
        "sweep",
        "run",
    ]:
        assert name in result.stdout


def test_plugins_lists_every_kind():
    result = deepdive("plugins")
    assert result.returncode == 0, result.stderr
    for kind in [
        "filters",
        "extractors",
        "formatters",
        "tokenizers",
        "models",
        "samplers",
        "launchers",
    ]:
        assert f"\n{kind} (" in "\n" + result.stdout


def test_describe_typo_exits_2_with_suggestion_on_one_line():
    from framework.core import registry

    names = registry.FILTERS.names()
    if not names:
        pytest.skip("no filter plugins registered yet")
    name = names[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    result = deepdive("plugins", "describe", f"filters.{typo}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"did you mean '{name}'" in lines[0]


def test_validate_with_unknown_file_exits_2():
    result = deepdive("validate", "--gin_file", "does/not/exist.gin")
    assert result.returncode == 2
    assert "does/not/exist.gin" in result.stderr and "searched" in result.stderr


def test_validate_unknown_plugin_exits_2_naming_file_and_fix(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("filters.gopher_qualty.min_doc_words = 10\n")
    result = deepdive("validate", "--gin_file", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "gopher_qualty" in result.stderr


def test_validate_unset_required_macro_exits_2(tmp_path):
    run = tmp_path / "run.gin"
    run.write_text("# Required: OUT\nOUT = %gin.REQUIRED\n")
    result = deepdive("validate", "--gin_file", str(run))
    assert result.returncode == 2
    assert "OUT" in result.stderr and "--gin.OUT=" in result.stderr and str(run) in result.stderr
    ok = deepdive("validate", "--gin_file", str(run), "--gin.OUT='/tmp/x'")
    assert ok.returncode == 0, ok.stderr


def test_split_gin_bindings_and_beam_options():
    rest, bindings, beam = cli.split_gin_bindings(
        ["data", "--gin_file", "f.gin", "--gin.INPUT='x'", "--gin.N", "3", "--", "--runner=X"]
    )
    assert rest == ["data", "--gin_file", "f.gin"]
    assert bindings == ["INPUT='x'", "N=3"]
    assert beam == ["--runner=X"]


def test_version_names_the_installed_distribution_and_jax(capsys):
    from importlib import metadata

    import jax

    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"deepdive {metadata.version('deepdive')} ")
    assert f"jax {jax.__version__}" in out
