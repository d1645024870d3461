"""Status and results of a rendered sweep, read from each run directory.

Per run: ``metrics.jsonl`` (one JSON object per logged step: step, loss, lr, tokens_per_s,
val_loss, val_bpb, ...), ``COMPLETED`` (written by training when TRAIN_STEPS is reached) and
``launch.json`` (written by the launcher: pid, host, state, attempts). From those:

* state: ``completed`` | ``running`` | ``failed`` | ``interrupted`` (work on disk, no live process)
  | ``submitted`` (handed to a cloud) | ``pending`` (nothing yet);
* step: the last logged step (of ``train_steps``);
* final / best metric: the last and the best (``mode`` min or max) logged value of the sweep's
  metric, with the step of the best;
* tokens/s: the median of the logged ``tokens_per_s`` values, leaving out the first one (it
  includes compilation) when there are several.

Outputs: a Markdown table, a CSV file, a PNG of the compared metric across the grid and a PNG of
the loss curves.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from pathlib import Path
from typing import Any

from framework.launch import backend as backend_lib
from framework.launch.sweep import Run, Sweep, id_text
from framework.train.metrics import read_metrics

STATES = ("completed", "running", "failed", "interrupted", "submitted", "pending")


@dataclasses.dataclass
class RunStatus:
    run_id: str
    state: str
    step: int | None
    train_steps: int | None
    final: float | None
    best: float | None
    best_step: int | None
    loss: float | None
    tokens_per_s: float | None
    varied: dict[str, Any]
    model_dir: str
    detail: str = ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def metric_series(records: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of ``key`` sorted by step. A resumed run logs again the steps after its
    last checkpoint: for a step logged twice the later record wins."""
    by_step: dict[int, float] = {}
    for i, record in enumerate(records):
        value = _number(record.get(key))
        if value is not None:
            step = record.get("step", i)
            by_step[int(step) if isinstance(step, int | float) else i] = value
    return sorted(by_step.items())


def run_state(run_dir: Path, records: list[dict]) -> tuple[str, str]:
    """(state, detail) of one run directory; see the module docstring."""
    if (run_dir / "COMPLETED").exists():
        return "completed", ""
    launch = backend_lib.read_state(run_dir)
    recorded = launch.get("state")
    if recorded == "running":
        if backend_lib.process_alive(launch):
            return "running", f"pid {launch.get('pid')}"
        return "interrupted", "launcher gone"
    if recorded == "failed":
        return "failed", f"exit {launch.get('returncode')}, see {run_dir / 'train.log'}"
    if recorded == "submitted":
        return "submitted", str(launch.get("job", ""))
    if records or (run_dir / "checkpoints").exists():
        return "interrupted", ""
    return "pending", ""


def collect(sweep: Sweep, sweep_dir: str | Path) -> list[RunStatus]:
    """The status of every run of ``sweep`` rendered in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for run in sweep.runs:
        rows.append(run_status(sweep, run, sweep_dir / run.run_id))
    return rows


def run_status(sweep: Sweep, run: Run, run_dir: Path) -> RunStatus:
    records = read_metrics(run_dir / "metrics.jsonl")
    state, detail = run_state(run_dir, records)
    steps = [int(r["step"]) for r in records if isinstance(r.get("step"), int)]
    series = metric_series(records, sweep.metric)
    final = series[-1][1] if series else None
    best = best_step = None
    if series:
        pick = min if sweep.mode == "min" else max
        best_step, best = pick(series, key=lambda sv: sv[1])
    losses = metric_series(records, "loss")
    speeds = [v for _, v in metric_series(records, "tokens_per_s")]
    if len(speeds) > 1:
        speeds = speeds[1:]
    return RunStatus(
        run_id=run.run_id,
        state=state,
        step=max(steps) if steps else None,
        train_steps=run.train_steps,
        final=final,
        best=best,
        best_step=best_step,
        loss=losses[-1][1] if losses else None,
        tokens_per_s=statistics.median(speeds) if speeds else None,
        varied=run.varied,
        model_dir=str(run_dir),
        detail=detail,
    )


def best_run(sweep: Sweep, rows: list[RunStatus]) -> RunStatus | None:
    scored = [r for r in rows if r.best is not None]
    if not scored:
        return None
    pick = min if sweep.mode == "min" else max
    return pick(scored, key=lambda r: r.best)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return id_text(value)


def varied_names(sweep: Sweep) -> list[str]:
    return list(dict.fromkeys(k for run in sweep.runs for k in run.varied))


def table_rows(sweep: Sweep, rows: list[RunStatus]) -> tuple[list[str], list[list[Any]]]:
    names = varied_names(sweep)
    header = [
        "run", "state", "step", *names, f"final {sweep.metric}",
        f"best {sweep.metric} ({sweep.mode})", "best step", "loss", "tokens/s",
    ]  # fmt: skip
    body = []
    for r in rows:
        step = "" if r.step is None else (f"{r.step}/{r.train_steps}" if r.train_steps else r.step)
        body.append(
            [
                r.run_id,
                r.state,
                step,
                *[r.varied.get(n) for n in names],
                r.final,
                r.best,
                r.best_step,
                r.loss,
                r.tokens_per_s,
            ]  # fmt: skip
        )
    return header, body


def markdown(sweep: Sweep, rows: list[RunStatus]) -> str:
    """The results table as Markdown; the best run is marked with ★."""
    header, body = table_rows(sweep, rows)
    best = best_run(sweep, rows)
    lines = [
        f"# Sweep {sweep.name}",
        "",
        f"{sweep.description}".strip() or f"Runs of {sweep.source}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for r, cells in zip(rows, body, strict=True):
        text = [_fmt(c) for c in cells]
        if best is not None and r.run_id == best.run_id:
            text[0] = f"★ {text[0]}"
        lines.append("| " + " | ".join(text) + " |")
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "."]
    if best is not None:
        lines.append(
            f"Best {sweep.metric} ({sweep.mode}): {best.best:.4g} — run {best.run_id} "
            f"at step {best.best_step}."
        )
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision in the CSV
    return value if isinstance(value, str) else id_text(value)


def csv_text(sweep: Sweep, rows: list[RunStatus]) -> str:
    header, body = table_rows(sweep, rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for cells in body:
        writer.writerow([_csv_cell(c) for c in cells])
    return out.getvalue()


def terminal_table(sweep: Sweep, rows: list[RunStatus]) -> str:
    """A plain aligned table for the terminal (the live view of ``sweep launch``)."""
    header, body = table_rows(sweep, rows)
    cells = [header] + [[_fmt(c) for c in row] for row in body]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


# ---- plots ------------------------------------------------------------------------------------


def _numeric_axis(sweep: Sweep) -> str | None:
    for name, values in sweep.grid.items():
        if len(values) > 1 and all(_number(v) is not None for v in values):
            return name
    return None


def plot_metric(sweep: Sweep, rows: list[RunStatus], path: Path) -> Path:
    """The compared metric across the grid: one line per combination of the other varied values
    against the first numeric grid axis; a bar per run when there is no numeric axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    axis = _numeric_axis(sweep)
    label = f"{'best' if sweep.mode else ''} {sweep.metric} ({sweep.mode})".strip()
    if axis is not None:
        others = [n for n in varied_names(sweep) if n != axis]
        groups: dict[tuple, list[tuple[float, float]]] = {}
        for r in rows:
            if axis not in r.varied or r.best is None:
                continue
            key = tuple((n, r.varied.get(n)) for n in others)
            groups.setdefault(key, []).append((float(r.varied[axis]), r.best))
        for key, points in groups.items():
            points.sort()
            name = ", ".join(f"{n.rsplit('.', 1)[-1]}={id_text(v)}" for n, v in key) or sweep.metric
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        xs = [float(v) for v in sweep.grid[axis]]
        if min(xs) > 0 and max(xs) / min(xs) >= 3:
            ax.set_xscale("log")
        ax.set_xlabel(axis)
        if groups:
            ax.legend(fontsize="small")
    else:
        scored = [r for r in rows if r.best is not None]
        ax.bar(range(len(scored)), [r.best for r in scored])
        ax.set_xticks(range(len(scored)), [r.run_id for r in scored], rotation=30, ha="right")
    if not any(r.best is not None for r in rows):
        ax.text(0.5, 0.5, f"no {sweep.metric} logged yet", ha="center", transform=ax.transAxes)
    ax.set_ylabel(label)
    ax.set_title(f"sweep {sweep.name}: {label}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(sweep: Sweep, sweep_dir: Path, path: Path) -> Path:
    """Training loss (and the compared metric when it is another key) against step, every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["loss"] + ([sweep.metric] if sweep.metric != "loss" else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    for run in sweep.runs:
        records = read_metrics(Path(sweep_dir) / run.run_id / "metrics.jsonl")
        for ax, key in zip(axes[0], keys, strict=True):
            series = metric_series(records, key)
            if series:
                ax.plot([s for s, _ in series], [v for _, v in series], label=run.run_id,
                        marker="." if len(series) < 30 else None)  # fmt: skip
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{key} per run")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(f"sweep {sweep.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(sweep: Sweep, sweep_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write results.md, results.csv, <metric>.png and curves.png into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep, sweep_dir)
    written = {"markdown": sweep_dir / "results.md", "csv": sweep_dir / "results.csv"}
    written["markdown"].write_text(markdown(sweep, rows))
    written["csv"].write_text(csv_text(sweep, rows))
    if plots:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in sweep.metric)
        written["metric_plot"] = plot_metric(sweep, rows, sweep_dir / f"{safe}.png")
        written["curves_plot"] = plot_curves(sweep, sweep_dir, sweep_dir / "curves.png")
    return written
