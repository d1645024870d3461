"""Every shipped gin file parses and validates (required macros bound to scratch values)."""

import re
import subprocess
import sys

import pytest

from framework import config

GIN_FILES = sorted(config.EXPERIMENTS_DIR.rglob("*.gin"))
REQUIRED = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*%gin\.REQUIRED", re.MULTILINE)
HEADER = re.compile(r"^#", re.MULTILINE)


def required_macros(path):
    names = set(REQUIRED.findall(path.read_text()))
    for include in re.findall(r"^\s*include\s+['\"]([^'\"]+)['\"]", path.read_text(), re.MULTILINE):
        for candidate in (path.parent / include, config.EXPERIMENTS_DIR / include):
            if candidate.is_file():
                names |= required_macros(candidate)
                break
    return names


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: str(p.relative_to(config.EXPERIMENTS_DIR)))
def test_gin_file_has_header_listing_required_macros(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path} must start with a header comment"
    header = text.split("\n\n")[0]
    for name in REQUIRED.findall(text):
        assert name in header, f"{path}: required macro {name} is not listed in the header"


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: str(p.relative_to(config.EXPERIMENTS_DIR)))
def test_gin_file_validates(path, tmp_path):
    bindings = [f"--gin.{name}='{tmp_path / name.lower()}'" for name in sorted(required_macros(path))]
    result = subprocess.run(
        [sys.executable, "-m", "framework", "validate", "--gin_file", str(path), *bindings],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
