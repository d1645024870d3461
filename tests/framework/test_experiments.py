"""Every shipped gin file parses and validates, with its required macros bound to scratch inputs.

Commands check their inputs at validate time (a glob that matches nothing, a run directory
without model.json), so each required macro gets a real scratch input of the right kind; where
a file needs an artefact of an earlier stage (a trained run, token shards), the only accepted
failure is the one-line error naming that scratch path.
"""

import os
import re
import subprocess
import sys

import pytest

from framework.core import config
from framework.data.builtin import write_builtin_warc
from framework.data.document import Document, write_jsonl_gz

GIN_FILES = sorted(config.EXPERIMENTS_DIR.rglob("*.gin"))
REQUIRED = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*%gin\.REQUIRED", re.MULTILINE)


def required_macros(path):
    names = set(REQUIRED.findall(path.read_text()))
    for include in re.findall(r"^\s*include\s+['\"]([^'\"]+)['\"]", path.read_text(), re.MULTILINE):
        for candidate in (path.parent / include, config.EXPERIMENTS_DIR / include):
            if candidate.is_file():
                names |= required_macros(candidate)
                break
    return names


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    base = tmp_path_factory.mktemp("scratch")
    write_builtin_warc(base / "pages.warc.gz")
    write_jsonl_gz(
        base / "docs" / "00000.jsonl.gz",
        [Document("a", "Some English text about tokenizers and models.")],
    )
    (base / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    from framework.core.registry import TOKENIZERS
    from framework.tokenize.files import load_tokenizer  # noqa: F401 - registers tokenizers

    TOKENIZERS.build("bytes").save(base / "tokenizer")
    return base


def scratch_value(path, name, scratch):
    relative = str(path.relative_to(config.EXPERIMENTS_DIR))
    if name == "INPUT":
        if relative.startswith("data/fineweb"):
            return scratch / "pages.warc.gz"
        if relative.startswith("tokenizers/"):
            return scratch / "text.txt"
        return scratch / "docs" / "*.jsonl.gz"
    if name == "TOKENIZER":
        return scratch / "tokenizer"
    return scratch / "out" / relative.replace("/", "_") / name.lower()


def test_gin_files_exist():
    assert GIN_FILES


@pytest.mark.parametrize(
    "path", GIN_FILES, ids=lambda p: str(p.relative_to(config.EXPERIMENTS_DIR))
)
def test_gin_file_has_header_listing_required_macros(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path} must start with a header comment"
    header = text.split("\n\n")[0]
    for name in REQUIRED.findall(text):
        assert name in header, f"{path}: required macro {name} is not listed in the header"


@pytest.mark.parametrize(
    "path", GIN_FILES, ids=lambda p: str(p.relative_to(config.EXPERIMENTS_DIR))
)
def test_gin_file_validates(path, scratch):
    values = {name: scratch_value(path, name, scratch) for name in sorted(required_macros(path))}
    bindings = [f"--gin.{name}='{value}'" for name, value in values.items()]
    env = dict(os.environ, XLA_FLAGS="")  # one CPU device, as on the command line
    result = subprocess.run(
        [sys.executable, "-m", "framework", "validate", "--gin_file", str(path), *bindings],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if result.returncode == 0:
        return
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    needs_artefact = [v for n, v in values.items() if n in ("MODEL_DIR", "TOKENS", "INIT_FROM")]
    assert result.returncode == 2 and any(str(v) in message for v in needs_artefact), result.stderr[
        -2000:
    ]
