"""The run summary: `<output_dir>/summary.md`, and its short version for the console.

Written when a run finishes, and when it stops on Ctrl-C or SIGTERM (`rfai.interrupt`), from
the run folder's own files (`config.yaml`, `run.json`, `metrics.jsonl`, `plots/`) and the
dataset folder: what ran, how long, the evaluation before and after training (or, without an
evaluation file, the training reward over the first and the last steps), where the adapter,
checkpoints, rows and metrics are, and the exact commands that come next.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from rfai.card import reward_before_after
from rfai.dataset_schema import read_complete_lines, rows_of_run
from rfai.dataset_writer import SPLITS
from rfai.interrupt import resume_command

FILE = "summary.md"
# The evaluation pass's numbers the before/after table shows, with their labels.
COMPARED = (
    ("pass_rate", "pass rate"),
    ("reward", "reward"),
    ("student_score", "student score"),
    ("teacher_score", "teacher score"),
)


def before_after(metrics: list[dict[str, Any]]) -> list[tuple[str, float, float]] | None:
    """(label, before, after) of the first and the last evaluation pass, when there are two."""
    passes = [m for m in metrics if m.get("event") == "evaluation"]
    if len(passes) < 2:
        return None
    first, last = passes[0], passes[-1]
    rows = []
    for key, label in COMPARED:
        a, b = first.get(f"evaluation_{key}"), last.get(f"evaluation_{key}")
        if isinstance(a, int | float) and isinstance(b, int | float):
            rows.append((label, float(a), float(b)))
    return rows


def _row_counts(dataset_dir: Path, run_id: str | None) -> dict[str, int]:
    counts = {}
    for split in SPLITS:
        n = len(rows_of_run(dataset_dir / f"{split}.jsonl", run_id))
        if n:
            counts[split] = n
    return counts


def _header(run_dir: Path, config: dict, run_id: str | None, status: str, steps: list[dict],
            wall_seconds: float | None) -> list[str]:  # fmt: skip
    student, teacher = config.get("student") or {}, config.get("teacher") or {}
    rollout, training = config.get("rollout") or {}, config.get("training") or {}
    data = config.get("data") or {}
    step_time = sum(float(m.get("step_seconds") or 0) for m in steps)
    timing = f"{step_time / 60:.1f} min in training steps"
    if wall_seconds is not None:
        timing = f"{wall_seconds / 60:.1f} min in all, {timing}"
    fine_tune = (student.get("adapter") or {}).get("fine_tune_type", "lora")
    evaluation = data.get("evaluation_file")
    return [
        f"# rfai run {run_id or run_dir.name}",
        "",
        f"**{status}.**",
        "",
        f"- Student: `{student.get('path')}` ({fine_tune})",
        f"- Teacher: {teacher.get('backend')}"
        + (f" `{teacher['model']}`" if teacher.get("model") else ""),
        f"- Tasks: train `{data.get('train_file')}`"
        + (f", evaluation `{evaluation}`" if evaluation else ""),
        f"- Steps: {len(steps)} of {training.get('steps')}, {rollout.get('batch_size')} tasks x "
        f"{rollout.get('group_size')} samples each; {timing}",
    ]


def _comparison(run_dir: Path, metrics: list[dict]) -> tuple[list[str], list[str]]:
    """The before/after section, and its console lines."""
    lines = ["## Before and after", ""]
    compared = before_after(metrics)
    if compared:
        lines += ["| evaluation | before | after | change |", "|---|---|---|---|"]
        lines += [f"| {label} | {a:.3f} | {b:.3f} | {b - a:+.3f} |" for label, a, b in compared]
        return lines, [f"evaluation {label} {a:.3f} -> {b:.3f}" for label, a, b in compared[:2]]
    trend = reward_before_after(run_dir / "metrics.jsonl")
    if trend is None:
        return [*lines, "No step finished: nothing to compare."], []
    first, last, k = trend
    lines.append(
        f"No evaluation before and after (set `data.evaluation_file`). Training reward: "
        f"{first:.3f} over the first {k} step(s), {last:.3f} over the last {k}."
    )
    return lines, [f"training reward {first:.3f} -> {last:.3f} (first and last {k} steps)"]


def _commands(run_dir: Path, model: str, finished: bool, has_rows: bool,
              dataset_dir: Path, data: str) -> list[str]:  # fmt: skip
    q = shlex.quote
    adapter = q(str(run_dir / "adapters"))
    commands = [] if finished else [resume_command(run_dir)]
    if finished:
        commands += [
            f"mlx_lm.generate --model {q(model)} --adapter-path {adapter} "
            '--prompt "Write a Python function that reverses a string."',
            f"python -m rfai.evaluate --model {q(model)} --compare-adapter-path {adapter} "
            f"--data {q(data)} --samples 4",
            f"mlx_lm.server --model {q(model)} --adapter-path {adapter}",
            f"mlx_lm.fuse --model {q(model)} --adapter-path {adapter} "
            f"--save-path {q(str(run_dir / 'fused'))}",
            f"python -m rfai.upload_model --run_dir {q(str(run_dir))} --repo_id ORG/NAME-model",
        ]
    if has_rows:
        commands.append(
            f"python export_datasets.py --dataset_dir {q(str(dataset_dir))} --repo_id ORG/NAME"
        )
    return commands


def summary(
    run_dir: Path, dataset_dir: Path, status: str, wall_seconds: float | None = None
) -> tuple[str, list[str]]:
    """(summary.md text, the console's short version) of the run in `run_dir`."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    record_path = run_dir / "run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    run_id = record.get("run_id")
    finished = record.get("finished_step") is not None  # set once the final adapter is saved
    metrics = read_complete_lines(run_dir / "metrics.jsonl")
    steps = [m for m in metrics if "event" not in m]
    lines = _header(run_dir, config, run_id, status, steps, wall_seconds)
    compared, short = _comparison(run_dir, metrics)
    lines += ["", *compared]
    charts = sorted((run_dir / "plots").glob("*.png"))
    if charts:
        lines += ["", "## Charts", "", *(f"![{p.stem}](plots/{p.name})" for p in charts)]
    counts = _row_counts(dataset_dir, run_id)
    lines += ["", "## Where things are", ""]
    if finished:
        lines.append(f"- Adapter: `{run_dir / 'adapters'}`")
    if (run_dir / "checkpoints" / "latest").is_file():
        lines.append(f"- Last checkpoint: `{run_dir / 'checkpoints'}` (`latest`)")
    rows = ", ".join(f"{s} {n}" for s, n in counts.items()) or "none"
    lines.append(f"- Rows of this run in `{dataset_dir}`: {rows}")
    lines.append(f"- Metrics: `{run_dir / 'metrics.jsonl'}`")
    if (run_dir / "tensorboard").is_dir():
        lines.append(f"- TensorBoard: `tensorboard --logdir {run_dir / 'tensorboard'}`")
    model = str((config.get("student") or {}).get("path"))
    data = config.get("data") or {}
    held_out = str(data.get("evaluation_file") or data.get("train_file"))
    commands = _commands(run_dir, model, finished, bool(counts), dataset_dir, held_out)
    lines += ["", "## Next", "", "```bash", *commands, "```", ""]
    return "\n".join(lines), [*short, f"next: {commands[0]}"] if commands else short


def write_summary(
    run_dir: Path, dataset_dir: Path, status: str, wall_seconds: float | None = None
) -> tuple[Path, list[str]]:
    """Write `run_dir/summary.md`; returns its path and the console's short lines."""
    text, short = summary(run_dir, dataset_dir, status, wall_seconds)
    path = run_dir / FILE
    path.write_text(text)
    return path, short
