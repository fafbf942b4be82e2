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

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

from rfai.checkpoint import step_seed
from rfai.config import Config
from rfai.metrics import MetricsLogger
from rfai.scored_rollout import RolloutRunner, ScoredSample
from scorers import ScoringPool
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
) -> dict[str, Any]:
    """Sample and score `tasks` without updating; each row goes to `write(split, row)`.

    `step` is the number of optimizer steps completed (0 before training).
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


def validation_due(step: int, config: Config) -> bool:
    """Validation runs every `evaluation.eval_steps` steps and after the last one."""
    return step % config.evaluation.eval_steps == 0 or step == config.training.steps


def log_pass(logger: MetricsLogger, split: str, step: int, metrics: dict[str, Any]) -> None:
    logger.log_event(step, split, metrics)
    shown = "  ".join(
        f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and v is not None
    )
    logger.info(f"step {step}: {shown}")


def mean(values) -> float | None:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else None
