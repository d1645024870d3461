"""No local-only file API on a path that may be a bucket URL.

Walks the source of ``framework/``, ``plugins/`` and ``beam_pipelines/`` and flags calls of
``Path(...)``, ``open(...)``, ``os.path.*(...)``, ``os.makedirs``, ``shutil.*`` and ``glob.glob``
whose argument is one of the values users may point at a bucket (run directories, pipeline inputs
and outputs, ``--json`` files). Those go through ``framework/core/paths.py`` (etils.epath) or,
inside pipelines, Beam's ``FileSystems``.
"""

from __future__ import annotations

import ast
import re

from tests.helpers import REPO_ROOT

URL_CAPABLE = re.compile(
    r"\b(model_dir|output_dir|run_dir|stage_dir|out_dir|args\.json|args\.output|"
    r"config\.model_dir|self\.model_dir|OUTPUT_DIR|MODEL_DIR)\b"
)
# local by design: a sweep's rendered folder (runs/NAME/<id>/: run.gin, launch.json, train.log)
# lives beside the sweep file, and SkyPilot/xpk ship it as the job's working directory
LOCAL_BY_DESIGN = {"framework/launch/backend.py", "plugins/launchers/local.py"}
LOCAL_ONLY = {"Path", "open", "makedirs", "exists", "isdir", "isfile", "join", "glob", "rmtree",
              "copytree", "copy", "getsize"}  # fmt: skip


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        owner = ast.unparse(func.value)
        if owner in ("os.path", "os", "shutil", "glob", "pathlib"):
            return func.attr
    return ""


def offenders() -> list[str]:
    found = []
    for folder in ("framework", "plugins", "beam_pipelines"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if str(path.relative_to(REPO_ROOT)) in LOCAL_BY_DESIGN:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or _callee(node) not in LOCAL_ONLY:
                    continue
                if node.args and URL_CAPABLE.search(ast.unparse(node.args[0])):
                    where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                    found.append(f"{where}: {ast.unparse(node)[:90]}")
    return found


def test_no_local_only_call_on_a_url_capable_path():
    assert offenders() == []
