"""Every command in the README runs, in order, at smoke size (and the quickstart in full)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from framework.data.builtin import write_builtin_warc

REPO = Path(__file__).resolve().parents[2]
# The commands run as a user runs them: one CPU device, not the 8 host devices of conftest.
USER_ENV = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
README = REPO / "README.md"

# Smoke-size overrides appended to a command, by its first words.
SMOKE = {
    ("train",): ["--gin.TRAIN_STEPS=4", "--gin.EVAL_EVERY=2", "--gin.CHECKPOINT_EVERY=4"],
    ("sample",): ["--max_new_tokens", "8"],
}


def readme_commands() -> list[list[str]]:
    """The `deepdive ...` lines of the README's ```bash blocks after the set-up section."""
    text = README.read_text()
    body = text.split("## The stages, one by one", 1)[1]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, re.S):
        for line in block.splitlines():
            if line.startswith("deepdive "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def setup_commands() -> list[str]:
    text = README.read_text().split("## The stages, one by one", 1)[0]
    return [
        line
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def test_readme_has_the_two_setup_commands_ci_runs():
    main, tests = setup_commands()
    assert main.endswith("deepdive run experiments/quickstart.gin")
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and tests.endswith("python -m pytest -q")


def _smoke(args: list[str], tmp: Path) -> list[str]:
    for prefix, extra in SMOKE.items():
        if tuple(args[: len(prefix)]) == prefix:
            args = args + extra
    if args[:2] == ["sweep", "render"]:
        sweep = REPO / args[2]
        text = sweep.read_text()
        text = re.sub(r"TRAIN_STEPS = \d+", "TRAIN_STEPS = 4", text)
        text = re.sub(r"EVAL_EVERY = \d+", "EVAL_EVERY = 2", text)
        text = re.sub(r"CHECKPOINT_EVERY = \d+", "CHECKPOINT_EVERY = 4", text)
        copy = tmp / sweep.name
        copy.write_text(text)
        args = [*args[:2], str(copy), *args[3:]]
    return args


@pytest.mark.slow
def test_every_readme_command_runs_in_order(tmp_path):
    write_builtin_warc(tmp_path / "runs" / "quickstart" / "raw" / "builtin.warc.gz")
    commands = readme_commands()
    assert len(commands) >= 10
    for args in commands:
        args = _smoke(args, tmp_path)
        result = subprocess.run(
            [sys.executable, "-m", "framework", *args],
            cwd=tmp_path,
            env=USER_ENV,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"deepdive {shlex.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )


@pytest.mark.slow
def test_quickstart_end_to_end_and_resume(tmp_path):
    out = tmp_path / "qs"
    cmd = [
        sys.executable,
        "-m",
        "framework",
        "run",
        "experiments/quickstart.gin",
        f"--gin.OUTPUT_DIR={str(out)!r}",
    ]
    first = subprocess.run(
        cmd, cwd=REPO, env=USER_ENV, capture_output=True, text=True, timeout=1200
    )
    assert first.returncode == 0, first.stderr[-3000:]
    stages = ("data", "dedup", "tokenizer", "tokenize", "train", "chat_tokenizer", "skill", "sft")
    for stage in stages:
        assert (out / stage / "COMPLETED").exists(), stage
    assert "validation loss" in first.stdout and "sample:" in first.stdout
    assert "plot: " in first.stdout and (out / "train" / "plots" / "metrics.png").exists()
    # the bar for the synthetic skill, on 200 held-out prompts through `chat --json`
    scores = json.loads((out / "score" / "score.json").read_text())
    assert scores["sft"]["prompts"] == 200
    assert scores["sft"]["exact_match"] >= 0.90, scores
    assert scores["base"]["exact_match"] <= 0.10, scores
    assert scores["sft"]["ended_with_end_of_turn"] >= 0.99, scores
    assert "fine-tuning on a synthetic skill" in first.stdout
    second = subprocess.run(
        cmd, cwd=REPO, env=USER_ENV, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already COMPLETED, skipped") == len(stages)
