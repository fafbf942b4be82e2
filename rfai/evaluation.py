"""Validation and evaluation passes: sample and score held-out tasks, no update.

A pass goes through the same `RolloutRunner.run` as a training step (its rows are built
exactly like training rows, with `split` naming their file), `evaluation.samples_per_task`
samples per task at `evaluation.temperature`. When they run (`rfai.trainer.train`):
- `evaluation` at step 0, before any update, when `evaluation.baseline_evaluation` (and not
  on --resume), and again after the last step;
- `validation` every `evaluation.eval_steps` steps and after the last step.
Each pass's metrics go to `metrics.jsonl` as an event line and to the console.

The random stream of a pass is seeded from a range of its own (10**7 + ...), so evaluating
never shifts training's, and a pass at a given step samples the same way in every run.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from rfai.checkpoint import step_seed
from rfai.config import AdapterConfig, Config, StudentConfig
from rfai.dataset_writer import DatasetWriter
from rfai.metrics import MetricsLogger
from rfai.scored_rollout import RolloutRunner, ScoredSample
from rfai.student import ADAPTER_CONFIG, load_student, tasks_that_fit
from rfai.teachers import build_teacher
from scorers import ScoringPool, ScoringSuite
from scorers.task import Task


def evaluate(
    rollouts: RolloutRunner,
    pool: ScoringPool,
    config: Config,
    *,
    split: str,
    tasks: list[Task],
    step: int,
    write: Callable[[str, dict], None],
    on_progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Sample and score `tasks` without updating; each row goes to `write(split, row)`.

    `step` is the number of optimizer steps completed (0 before training); `on_progress`:
    `RolloutRunner.run`'s, for each batch.
    """
    ev = config.evaluation
    scored: list[ScoredSample] = []
    scorer_errors = 0
    size = config.rollout.batch_size
    for i in range(0, len(tasks), size):
        mx.random.seed(step_seed(config.training.seed, 10**7 + step * 1000 + i // size))
        rollout = rollouts.run(
            tasks[i : i + size],
            step,
            pool,
            split=split,
            group_size=ev.samples_per_task,
            temperature=ev.temperature,
            on_row=lambda row: write(split, row),
            on_progress=on_progress,
        )
        scored.extend(s for s in rollout.in_order() if s.student is not None)
        scorer_errors += rollout.scorer_errors
    return pass_metrics(split, scored, scorer_errors)


def pass_metrics(split: str, scored: list[ScoredSample], scorer_errors: int) -> dict[str, Any]:
    """Means over the scored samples of a pass, keys prefixed with the split's name."""
    return {
        f"{split}_reward": mean(s.reward for s in scored),
        f"{split}_student_score": mean(s.student.score for s in scored),
        f"{split}_teacher_score": mean(s.teacher.score for s in scored),
        f"{split}_pass_rate": mean(s.student.status == "passed" for s in scored),
        f"{split}_samples": len(scored),
        f"{split}_scorer_errors": scorer_errors,
    }


def validation_due(step: int, config: Config, repeats_evaluation: bool = False) -> bool:
    """Validation runs every `evaluation.eval_steps` steps and after the last one, except
    when its tasks are the evaluation's (`repeats_evaluation`): the final evaluation pass
    samples them at the last step with the same settings and seeds, so a validation pass
    there would only repeat it."""
    if step == config.training.steps:
        return not repeats_evaluation
    return step % config.evaluation.eval_steps == 0


def log_pass(logger: MetricsLogger, split: str, step: int, metrics: dict[str, Any]) -> None:
    logger.log_event(step, split, metrics)
    shown = "  ".join(
        f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and v is not None
    )
    logger.info(f"step {step}: {shown}")


def mean(values) -> float | None:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else None


# --- the evaluation command (`python -m rfai.evaluate`, rfai/cli.py) -----------------------

CRITERIA = ("correctness", "code_quality", "efficiency", "documentation")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of a task with `c` passing samples out of `n` (Chen et al. 2021):
    1 - C(n - c, k) / C(n, k), the chance that k samples drawn from the n include a pass."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def language_report(rows: list[dict[str, Any]], k: int) -> dict[str, dict[str, float]]:
    """Per language: tasks, samples, pass@1, pass@k (k > 1), reward and each criterion's
    mean student score. Rows whose scoring failed (`scorer_error`) count as samples and
    towards no mean."""
    by_language: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_language[row["language"]].append(row)
    report = {}
    for language, lrows in sorted(by_language.items()):
        tasks: dict[str, list[bool]] = defaultdict(list)
        for row in lrows:
            tasks[row["task_id"]].append(row["status"] == "passed")
        scored = [r for r in lrows if r["reward"] is not None]
        entry = {
            "tasks": float(len(tasks)),
            "samples": float(len(lrows)),
            "pass@1": float(np.mean([pass_at_k(len(t), sum(t), 1) for t in tasks.values()])),
        }
        if k > 1:
            passes = [pass_at_k(len(t), sum(t), k) for t in tasks.values() if len(t) >= k]
            entry[f"pass@{k}"] = float(np.mean(passes)) if passes else math.nan
        entry["reward"] = mean(r["reward"] for r in scored) if scored else math.nan
        for criterion in CRITERIA:
            values = [r["student_breakdown"][criterion] for r in scored
                      if criterion in (r.get("student_breakdown") or {})]  # fmt: skip
            entry[criterion] = mean(values) if values else math.nan
        report[language] = entry
    return report


def report_table(reports: dict[str, dict[str, dict[str, float]]]) -> str:
    """The reports of one or two models as a text table, per language; with two, a third
    line per language holds the difference (second - first)."""
    labels = list(reports)
    columns = next(iter(next(iter(reports.values())).values()), {}).keys()
    header = ["language", "model", *columns]
    lines = []
    for language in sorted({lang for r in reports.values() for lang in r}):
        entries = [reports[label].get(language) for label in labels]
        for label, entry in zip(labels, entries, strict=True):
            if entry is not None:
                lines.append([language, label, *(_cell(c, entry[c]) for c in columns)])
        if len(labels) == 2 and all(e is not None for e in entries):
            first, second = entries
            lines.append([language, "difference", *(
                "" if c in ("tasks", "samples") else f"{second[c] - first[c]:+.3f}"
                for c in columns
            )])  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-" * len(out[0]))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(out)


def _cell(column: str, value: float) -> str:
    if column in ("tasks", "samples"):
        return str(int(value))
    return "–" if math.isnan(value) else f"{value:.3f}"


def student_config(config: Config, model: str, adapter: str | None) -> StudentConfig:
    """`config.student` for `model`, with the adapter layout `adapter/adapter_config.json`
    records (rfai and mlx-lm write it), so the saved weights fit."""
    if adapter is None:
        return replace(config.student, path=model)
    path = Path(adapter) / ADAPTER_CONFIG
    try:
        saved = json.loads(path.read_text())
        lora = saved.get("lora_parameters") or {}
        keys = lora.get("keys")
        layout = AdapterConfig(
            fine_tune_type=saved["fine_tune_type"],
            rank=int(lora.get("rank", 16)),
            scale=float(lora.get("scale", 20.0)),
            num_layers=int(saved.get("num_layers", -1)),
            keys=tuple(keys) if keys else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not an adapter config rfai can read ({exc!r})") from None
    return replace(config.student, path=model, adapter=layout)


def evaluate_model(
    config: Config,
    tasks: list[Task],
    model: str,
    adapter: str | None,
    out_dir: Path,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Sample and score `tasks` with `model` (plus `adapter`), as training's evaluation
    pass does; rows stream to `out_dir/evaluation.jsonl` and are returned."""
    student = load_student(student_config(config, model, adapter), seed=config.training.seed)
    if adapter is not None:
        student.load_adapter(adapter)
    student.model.eval()
    tasks = tasks_that_fit(student, tasks, config.rollout.max_new_tokens, "evaluation", log)
    teacher = build_teacher(config.teacher)
    teacher.check()
    suite = ScoringSuite.from_config(config.scoring)
    log(suite.check_environment({t.language for t in tasks}))
    label = "base" if adapter is None else str(adapter)
    runner = RolloutRunner(config, student, teacher, f"evaluate:{label}", log)
    writer = DatasetWriter(out_dir)
    rows: list[dict[str, Any]] = []

    def write(split: str, row: dict[str, Any]) -> None:
        writer.write(split, row)
        rows.append(row)

    workers = config.scoring.workers or os.cpu_count() or 1
    try:
        with ScoringPool(suite, workers) as pool:
            evaluate(runner, pool, config, split="evaluation", tasks=tasks, step=0, write=write)
    finally:
        writer.close()
    return rows
