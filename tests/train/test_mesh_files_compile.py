"""Every TPU mesh file under experiments/mesh/ compiles a real-size model's train step for the
slice its name says (``tpu_v5e_16.gin`` -> ``v5e-16``), through ``deepdive compile``: a mesh file
that does not fit its slice, or does not lay over its chips, fails here rather than on the bill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("libtpu", reason="the tpu extra (libtpu) is not installed")

REPO = Path(__file__).resolve().parents[2]
MESHES = sorted((REPO / "experiments" / "mesh").glob("tpu_*.gin"))


def topology_of(mesh_file: Path) -> str:
    """``tpu_v5e_16.gin`` -> ``v5e-16``."""
    _, generation, size = mesh_file.stem.split("_")
    return f"{generation}-{size}"


@pytest.mark.parametrize("mesh_file", MESHES, ids=[m.stem for m in MESHES])
def test_mesh_file_compiles_llama3_2_1b_for_its_slice(mesh_file, tmp_path):
    from framework.train import topologies

    chips = topologies.parse(topology_of(mesh_file)).chips
    out = tmp_path / "compile.json"
    command = [
        sys.executable, "-m", "framework", "compile", "--topology", topology_of(mesh_file),
        "--gin_file", "base/train.gin", "--gin_file", "models/llama3_2_1b.gin",
        "--gin_file", str(mesh_file), "--gin.models.llama.scan_layers=True",
        "--gin.models.llama.compute_dtype='bfloat16'", "--gin.models.llama.remat='full'",
        "--gin.SEQ_LEN=2048", f"--gin.BATCH_SIZE={chips}", "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["chips"] == chips and report["fits"]
    assert report["per_chip_bytes"]["total"] < report["hbm_bytes_per_chip"]
