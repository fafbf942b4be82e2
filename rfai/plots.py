"""PNG charts of a run, drawn with matplotlib into `<output_dir>/plots/`.

    python -m rfai.plots RUN_DIR [--dataset-dir DIR]

Works on any run folder, finished or not (the trainer also calls it at the end of a run):
the charts are drawn from `metrics.jsonl` and, for the per-criterion and per-language
charts, from the run's rows in the dataset folder its `config.yaml` names (`--dataset-dir`
overrides it; rows of other runs in that folder are left out by `run_id`).

- reward.png: training reward (mean and ± std) and pass rate per step, with the validation
  and evaluation passes as points;
- scores.png: student and teacher score per criterion, mean over each step's rows;
- loss.png: loss, KL, gradient and update norms;
- speed.png: generated tokens/s, and each step's time split (generation, scoring wait,
  update);
- languages.png: reward and pass rate per language, when the rows hold several.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never a window, whatever the machine has
import matplotlib.pyplot as plt
import yaml

from rfai.dataset_schema import rows_of_run

FOLDER = "plots"
SPLIT_MARKERS = {"validation": "s", "evaluation": "D"}


class PlotError(ValueError):
    """A run folder that cannot be plotted; the message names the file."""


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training step lines, event lines) of `run_dir/metrics.jsonl`."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{path} does not exist: is {run_dir} an rfai run folder?")
    steps, events = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PlotError(f"{path}:{number}: not JSON ({exc.msg})") from None
        (events if record.get("event") else steps).append(record)
    if not steps and not events:
        raise PlotError(f"{path} holds no metric line yet: nothing to plot")
    return steps, events


def run_rows(run_dir: Path, dataset_dir: Path | None) -> list[dict]:
    """The run's training rows (its `run_id` only); [] when the dataset folder is unknown."""
    config_path = run_dir / "config.yaml"
    record_path = run_dir / "run.json"
    if dataset_dir is None and config_path.is_file():
        hf = (yaml.safe_load(config_path.read_text()) or {}).get("huggingface") or {}
        # As rfai.run.RunPaths: the run folder's own datasets/ when rows are not kept
        # locally; a relative dataset_output_dir is relative to where the run was started.
        if not hf.get("save_datasets_locally", True):
            dataset_dir = run_dir / "datasets"
        elif hf.get("dataset_output_dir"):
            dataset_dir = Path(hf["dataset_output_dir"])
    rows_path = dataset_dir / "train.jsonl" if dataset_dir is not None else None
    if rows_path is None or not rows_path.is_file():
        return []
    run_id = json.loads(record_path.read_text()).get("run_id") if record_path.is_file() else None
    return rows_of_run(rows_path, run_id)


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
    return [s for s, _ in points], [float(v) for _, v in points]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _save_reward_and_pass_rate(fig, top, bottom, path: Path) -> Path:
    """Label, grid and save a figure of a reward panel above a pass-rate panel."""
    top.set_ylabel("reward")
    bottom.set_ylabel("pass rate")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_reward(steps: list[dict], events: list[dict], path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    x, reward = _series(steps, "reward")
    top.plot(x, reward, label="train reward", color="C0")
    _, std = _series([s for s in steps if s.get("reward") is not None], "reward_std")
    if len(std) == len(reward):
        top.fill_between(x, [r - s for r, s in zip(reward, std, strict=True)],
                         [r + s for r, s in zip(reward, std, strict=True)],
                         color="C0", alpha=0.2)  # fmt: skip
    x, passed = _series(steps, "pass_rate")
    bottom.plot(x, passed, label="train pass rate", color="C1")
    for split, marker in SPLIT_MARKERS.items():
        lines = [e for e in events if e.get("event") == split]
        sx, sy = _series(lines, f"{split}_reward")
        if sx:
            top.scatter(sx, sy, marker=marker, label=f"{split} reward", zorder=3)
        sx, sy = _series(lines, f"{split}_pass_rate")
        if sx:
            bottom.scatter(sx, sy, marker=marker, label=f"{split} pass rate", zorder=3)
    return _save_reward_and_pass_rate(fig, top, bottom, path)


def plot_scores(steps: list[dict], rows: list[dict], path: Path) -> Path:
    by_step: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for who in ("student", "teacher"):
            for criterion, value in (row.get(f"{who}_breakdown") or {}).items():
                if isinstance(value, int | float):
                    by_step[f"{who} {criterion}"][row["step"]].append(float(value))
    criteria = sorted({name.split(" ", 1)[1] for name in by_step})
    panels = max(len(criteria), 1)
    fig, axes = plt.subplots(panels + 1, 1, figsize=(8, 2.2 * (panels + 1)), sharex=True)
    x, student = _series(steps, "student_score")
    axes[0].plot(x, student, label="student score")
    x, teacher = _series(steps, "teacher_score")
    axes[0].plot(x, teacher, "--", label="teacher score")
    axes[0].set_ylabel("weighted score")
    for ax, criterion in zip(axes[1:], criteria, strict=False):
        for who, style in (("student", "-"), ("teacher", "--")):
            points = sorted(by_step.get(f"{who} {criterion}", {}).items())
            ax.plot([s for s, _ in points], [sum(v) / len(v) for _, v in points], style,
                    label=who)  # fmt: skip
        ax.set_ylabel(criterion)
    if not criteria:
        axes[1].text(0.5, 0.5, "no rows of this run found: per-criterion scores need them",
                     ha="center", va="center", transform=axes[1].transAxes)  # fmt: skip
    axes[-1].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_loss(steps: list[dict], path: Path) -> Path:
    keys = ("loss", "kl", "grad_norm", "update_norm")
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 7), sharex=True)
    for ax, key in zip(axes, keys, strict=True):
        ax.plot(*_series(steps, key))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def plot_speed(steps: list[dict], path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(*_series(steps, "generation_tps"))
    top.set_ylabel("generated tokens/s")
    parts = ("generation_seconds", "scoring_wait_seconds", "update_seconds")
    usable = [s for s in steps if all(isinstance(s.get(k), int | float) for k in parts)]
    x = [s["step"] for s in usable]
    base = [0.0] * len(usable)
    for key in parts:
        values = [float(s[key]) for s in usable]
        bottom.bar(x, values, bottom=base, label=key.removesuffix("_seconds").replace("_", " "))
        base = [b + v for b, v in zip(base, values, strict=True)]
    bottom.set_ylabel("seconds per step")
    bottom.set_xlabel("step")
    bottom.legend(loc="best", fontsize="small")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_languages(rows: list[dict], path: Path) -> Path:
    by_language: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_language[row["language"]][row["step"]].append(row)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for language, by_step in sorted(by_language.items()):
        points = sorted(by_step.items())
        x = [s for s, _ in points]
        rewards = [[r["reward"] for r in rs if r.get("reward") is not None] for _, rs in points]
        top.plot(x, [sum(v) / len(v) if v else float("nan") for v in rewards], label=language)
        passed = [sum(r.get("status") == "passed" for r in rs) / len(rs) for _, rs in points]
        bottom.plot(x, passed, label=language)
    return _save_reward_and_pass_rate(fig, top, bottom, path)


def plot_run(run_dir: str | Path, dataset_dir: str | Path | None = None) -> list[Path]:
    """Draw every chart the run's files allow into `run_dir/plots/`; returns their paths."""
    run_dir = Path(run_dir)
    steps, events = read_metrics(run_dir)
    rows = run_rows(run_dir, Path(dataset_dir) if dataset_dir is not None else None)
    out = run_dir / FOLDER
    out.mkdir(exist_ok=True)
    written = [
        plot_reward(steps, events, out / "reward.png"),
        plot_scores(steps, rows, out / "scores.png"),
        plot_loss(steps, out / "loss.png"),
        plot_speed(steps, out / "speed.png"),
    ]
    if len({r["language"] for r in rows}) > 1:
        written.append(plot_languages(rows, out / "languages.png"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rfai.plots", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_dir", help="a run folder (training.output_dir)")
    parser.add_argument("--dataset-dir", help="its dataset folder (default: from config.yaml)")
    args = parser.parse_args(argv)
    try:
        written = plot_run(args.run_dir, args.dataset_dir)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
