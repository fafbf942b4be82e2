"""Validation and evaluation passes in process, on the tiny model and the real sandbox.

No subprocess and no training: `evaluate` samples and scores held-out tasks with the same
`RolloutRunner` as a training step, hands each row to the caller, and returns the pass's
means. The rows are checked against the schema and the metrics against the rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfai.config_load import load_config
from rfai.dataset_schema import row_problems
from rfai.evaluation import evaluate, validation_due
from rfai.scored_rollout import RolloutRunner
from rfai.student import load_student
from rfai.tasks import load_tasks
from rfai.teachers import build_teacher
from scorers import ScoringPool, ScoringSuite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    config = load_config(
        REPO / "configs" / "tiny.yaml",
        ["rollout.batch_size=2", "evaluation.samples_per_task=2", "logging.rich=false"],
        model=str(tiny_model_dir),
    )
    student = load_student(config.student, seed=0)
    student.model.eval()
    log: list[str] = []
    runner = RolloutRunner(config, student, build_teacher(config.teacher), "run-e", log.append)
    suite = ScoringSuite.from_config(config.scoring)
    tasks = load_tasks("builtin:python")[:3]
    return config, runner, suite, tasks, log


def _pass(setup, suite, step):
    config, runner, _, tasks, _ = setup
    rows: list[tuple[str, dict]] = []
    with ScoringPool(suite, 2) as pool:
        metrics = evaluate(
            runner,
            pool,
            config,
            split="validation",
            tasks=tasks,
            step=step,
            write=lambda split, row: rows.append((split, row)),
        )
    return metrics, rows


def test_a_pass_writes_one_valid_row_per_sample_and_its_metrics_match_them(setup):
    _, _, suite, tasks, _ = setup
    metrics, rows = _pass(setup, suite, step=5)
    # 3 tasks x samples_per_task 2, in two batches of batch_size 2 (2 tasks, then 1).
    assert len(rows) == 6 and {split for split, _ in rows} == {"validation"}
    rows = [row for _, row in rows]
    assert all(row_problems(r) == [] for r in rows), [row_problems(r) for r in rows]
    assert {(r["split"], r["step"], r["run_id"]) for r in rows} == {("validation", 5, "run-e")}
    assert sorted((r["task_id"], r["sample_index"]) for r in rows) == sorted(
        (t.task_id, s) for t in tasks for s in (0, 1)
    )
    assert metrics["validation_samples"] == 6 and metrics["validation_scorer_errors"] == 0
    assert metrics["validation_reward"] == pytest.approx(np.mean([r["reward"] for r in rows]))
    assert metrics["validation_teacher_score"] == pytest.approx(
        np.mean([r["teacher_score"] for r in rows])
    )
    passed = np.mean([r["status"] == "passed" for r in rows])
    assert metrics["validation_pass_rate"] == pytest.approx(passed)


def test_a_pass_at_the_same_step_samples_the_same_completions(setup):
    _, _, suite, _, _ = setup
    _, first = _pass(setup, suite, step=7)
    _, again = _pass(setup, suite, step=7)

    def codes(rows):
        return {(r["task_id"], r["sample_index"]): r["student_code"] for _, r in rows}

    assert codes(first) == codes(again)


class _RaisingSuite(ScoringSuite):
    def score(self, task, code, *, baseline=None):
        raise RuntimeError("broken criterion")


def test_a_scorer_bug_in_a_pass_is_counted_and_written_not_averaged(setup):
    config, _, _, _, log = setup
    metrics, rows = _pass(setup, _RaisingSuite.from_config(config.scoring), step=1)
    assert metrics["validation_scorer_errors"] == 6 and metrics["validation_samples"] == 0
    assert metrics["validation_reward"] is None and metrics["validation_pass_rate"] is None
    assert [r["status"] for _, r in rows] == ["scorer_error"] * 6
    assert all(r["error"] == "scorer_error: RuntimeError: broken criterion" for _, r in rows)
    assert sum("scoring raised on task" in line for line in log) == 1  # once per reason


@pytest.mark.parametrize(
    ("eval_steps", "steps", "due"),
    [(2, 5, [2, 4, 5]), (3, 6, [3, 6]), (10, 4, [4]), (1, 3, [1, 2, 3])],
)
def test_validation_runs_every_eval_steps_and_after_the_last_step(eval_steps, steps, due):
    config = load_config(
        REPO / "configs" / "tiny.yaml",
        [f"evaluation.eval_steps={eval_steps}", f"training.steps={steps}"],
    )
    assert [s for s in range(1, steps + 1) if validation_due(s, config)] == due
    # Validating the evaluation's own tasks: the last step is the final evaluation's.
    assert [s for s in range(1, steps + 1) if validation_due(s, config, True)] == [
        s for s in due if s != steps
    ]
