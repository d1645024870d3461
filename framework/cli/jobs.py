"""Run several deepdive commands as one resumable job: ``deepdive run experiments/quickstart.gin``.

A job is a list of *stages*, each a deepdive command with its own gin files and bindings, run in a
subprocess (so each stage has a fresh gin configuration and its own Beam pipeline). Stage ``NAME``
writes into ``OUTPUT_DIR/NAME/``; a stage whose folder holds ``COMPLETED`` is skipped, so rerunning
an interrupted job continues where it stopped.

Bindings are gin text with ``{output_dir}``, ``{stage_dir}`` and ``{input}`` placeholders, e.g.
``{"INPUT": "'{output_dir}/data/documents/*.jsonl.gz'"}``. ``OUTPUT_DIR`` may be a bucket URL
(``gs://b/runs/q``): every stage then writes there, and the job's own files (the built-in
input, a stage's captured stdout, ``report.json``) are written locally first and copied up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import gin

from framework.core import paths
from framework.core.errors import ConfigError
from framework.train.metrics import read_metrics

BUILTIN_INPUT = "{output_dir}/raw/builtin.warc.gz"


@gin.configurable("stage")
@dataclasses.dataclass
class Stage:
    """One step of a job: ``deepdive COMMAND`` with gin files and bindings."""

    name: str = gin.REQUIRED
    command: Sequence[str] = gin.REQUIRED
    gin_files: Sequence[str] = ()
    bindings: dict[str, str] = dataclasses.field(default_factory=dict)
    beam: bool = False  # pass the job's Beam options after `--`
    always_run: bool = False  # no COMPLETED marker (e.g. sampling): run every time
    stdout_file: str | None = None  # keep the command's stdout in this file of the stage folder

    def argv(self, values: dict[str, str], beam_options: Sequence[str]) -> list[str]:
        args = [part.format(**values) for part in self.command]
        for gin_file in self.gin_files:
            args += ["--gin_file", gin_file.format(**values)]
        for name, value in self.bindings.items():
            args.append(f"--gin.{name}={value.format(**values)}")
        if self.beam and beam_options:
            args += ["--", *beam_options]
        return args


def _banner(text: str) -> None:
    line = "=" * max(60, len(text) + 4)
    print(f"\n{line}\n  {text}\n{line}", flush=True)


@gin.configurable("job")
def run_job(
    stages: Sequence[Stage] = gin.REQUIRED,
    output_dir: str = gin.REQUIRED,
    input: str | None = None,  # noqa: A002 - the gin macro is called INPUT
    beam_options: Sequence[str] = (),
    dry_run: bool = False,
) -> dict:
    """Run ``stages`` in order into ``output_dir``; returns the final report (also printed)."""
    from framework.data.builtin import write_builtin_warc

    out = paths.as_path(output_dir)
    values = {"output_dir": str(out)}
    if input is None:
        builtin = paths.as_path(BUILTIN_INPUT.format(**values))
        if not builtin.exists() and not dry_run:
            with tempfile.TemporaryDirectory(prefix="deepdive-builtin-") as staging:
                local = os.path.join(staging, builtin.name)
                pages = write_builtin_warc(local)
                builtin.parent.mkdir(parents=True, exist_ok=True)
                builtin.write_bytes(paths.as_path(local).read_bytes())
            print(f"built-in data: {pages} pages written to {builtin}", flush=True)
        values["input"] = str(builtin)
    else:
        values["input"] = input
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"job.stages: stage names must be unique, got {names}")
    timings: dict[str, float] = {}
    for index, stage in enumerate(stages, 1):
        stage_dir = out / stage.name
        values["stage_dir"] = str(stage_dir)
        argv = [sys.executable, "-m", "framework", *stage.argv(values, beam_options)]
        title = f"[{index}/{len(stages)}] {stage.name}: deepdive {' '.join(stage.command)}"
        if (stage_dir / "COMPLETED").exists() and not stage.always_run:
            _banner(f"{title} — already COMPLETED, skipped")
            continue
        _banner(title)
        print("$ deepdive " + " ".join(argv[3:]), flush=True)
        if dry_run:
            continue
        stage_dir.mkdir(parents=True, exist_ok=True)
        start = time.time()
        if stage.stdout_file:
            with tempfile.TemporaryFile("w+") as sink:
                result = subprocess.run(argv, stdout=sink)
                sink.seek(0)
                captured = sink.read()
            (stage_dir / stage.stdout_file).write_text(captured)
            print(captured[-3000:], flush=True)
        else:
            result = subprocess.run(argv)
        timings[stage.name] = time.time() - start
        if result.returncode != 0:
            raise StageFailed(stage.name, result.returncode, stage_dir)
    report = collect_report(out, timings)
    if not dry_run:
        (out / "report.json").write_text(json.dumps(report, indent=2))
        print_report(report)
    return report


class StageFailed(Exception):
    def __init__(self, name: str, code: int, stage_dir: Any):
        super().__init__(
            f"stage {name!r} failed (exit {code}); its output is in {stage_dir}; "
            f"fix it and rerun the same command to continue from this stage"
        )
        self.code = code


def _read_json(path: Any) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _last_metrics(path: Any) -> dict:
    """The newest value of every metric in ``metrics.jsonl`` (validation rows are sparse)."""
    last: dict = {}
    for row in read_metrics(path):
        last |= {key: value for key, value in row.items() if value is not None}
    return last


def collect_report(out: Any, timings: dict[str, float]) -> dict:
    """The end-of-job summary from each stage's own outputs."""
    report: dict = {"output_dir": str(out), "seconds": {k: round(v, 1) for k, v in timings.items()}}
    data = _read_json(out / "data" / "stats.json")
    if data:
        report["data"] = data
    dedup = _read_json(out / "dedup" / "stats.json")
    if dedup:
        report["dedup"] = dedup
    manifest = _read_json(out / "tokenize" / "manifest.json")
    if manifest:
        report["tokens"] = {
            split: info.get("tokens") for split, info in manifest.get("splits", {}).items()
        }
    metrics = _last_metrics(out / "train" / "metrics.jsonl")
    if metrics:
        report["train"] = {
            k: metrics[k] for k in ("step", "loss", "val_loss", "val_bpb") if k in metrics
        }
        plots = sorted(str(p) for p in paths.walk(out / "train") if p.name.endswith(".png"))
        report["train"]["plots"] = plots
    sample = out / "sample" / "sample.txt"
    if sample.exists():
        report["sample"] = sample.read_text()[-2000:]
    scores = _read_json(out / "score" / "score.json")
    if scores:
        report["skill"] = {"scores": scores, "examples": _skill_examples(out)}
    return report


def _skill_examples(out: Any, count: int = 3) -> list[dict]:
    """A few held-out prompts with the base and the fine-tuned model's answers, side by side."""
    files = {
        "prompt": out / "skill" / "heldout.jsonl",
        "base": out / "chat_base" / "answers.jsonl",
        "sft": out / "chat_sft" / "answers.jsonl",
    }
    if not all(f.exists() for f in files.values()):
        return []
    lines = {k: f.read_text().splitlines()[:count] for k, f in files.items()}
    examples = []
    for prompt, base, sft in zip(lines["prompt"], lines["base"], lines["sft"], strict=False):
        example = json.loads(prompt)
        examples.append({
            "question": example["messages"][-1]["content"], "answer": example["answer"],
            "base": json.loads(base).get("completion"), "sft": json.loads(sft).get("completion"),
        })  # fmt: skip
    return examples


def _summarise_stats(stats: dict) -> list[str]:
    lines = []
    for key in ("documents_in", "kept", "dropped", "errors"):
        if key in stats:
            lines.append(f"    {key}: {stats[key]}")
    for key in ("dropped_by", "dropped_by_reason", "removed"):
        if isinstance(stats.get(key), dict):
            for reason, count in stats[key].items():
                lines.append(f"    {key} {reason}: {count}")
    if not lines:
        lines = [f"    {json.dumps(stats)[:400]}"]
    return lines


def _fixed(value: Any, digits: int = 4) -> str:
    """A metric for people: 4 decimals for numbers, "n/a" when missing."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def print_report(report: dict) -> None:
    _banner("report")
    if "data" in report:
        print("  data:")
        print("\n".join(_summarise_stats(report["data"])))
    if "dedup" in report:
        print("  dedup:")
        print("\n".join(_summarise_stats(report["dedup"])))
    if "tokens" in report:
        print(f"  tokens: {report['tokens']}")
    if "train" in report:
        t = report["train"]
        print(
            f"  train: step {t.get('step')}, loss {_fixed(t.get('loss'))}, "
            f"validation loss {_fixed(t.get('val_loss'))}, "
            f"bits per byte {_fixed(t.get('val_bpb'))}"
        )
        for plot in t.get("plots", []):
            print(f"  plot: {plot}")
    if "sample" in report:
        print("  sample:\n" + "\n".join("    " + line for line in report["sample"].splitlines()))
    if "skill" in report:
        print("  fine-tuning on a synthetic skill (held-out prompts, exact match):")
        for name, score in report["skill"]["scores"].items():
            print(f"    {name}: {score['exact_match']:.1%} correct, "
                  f"{score['ended_with_end_of_turn']:.1%} ended their turn")  # fmt: skip
        for e in report["skill"]["examples"]:
            print(f"    {e['question']!r} -> base {e['base']!r}, sft {e['sft']!r} "
                  f"(expected {e['answer']!r})")  # fmt: skip
    print(f"  everything is under {report['output_dir']}", flush=True)
