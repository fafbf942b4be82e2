"""Every built-in task is sound: its reference passes all its tests, and its tests can fail.

All programs go through one ScoringPool (the sandbox runs them in subprocesses), once per
module, and each task gets its own parametrised result so a broken task is named.
"""

import pytest

from rfai.task_sources import load_task_source
from rfai.tasks import load_tasks
from scorers.pool import ScoringPool
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite

TASKS = load_tasks("builtin:python")


def stub_solution(entry_point: str) -> str:
    # Accepts any call and returns None: a task whose tests all pass against this is vacuous.
    return f"def {entry_point}(*args, **kwargs):\n    return None\n"


@pytest.fixture(scope="module")
def scores():
    suite = ScoringSuite({"correctness": 1.0}, SandboxLimits(wall_seconds=20))
    with ScoringPool(suite, workers=4) as pool:
        reference = {t.task_id: pool.submit(t, t.reference_solution) for t in TASKS}
        stub = {t.task_id: pool.submit(t, stub_solution(t.entry_point)) for t in TASKS}
        return (
            {k: f.result() for k, f in reference.items()},
            {k: f.result() for k, f in stub.items()},
        )


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.task_id)
def test_reference_solution_passes_every_test(scores, task):
    result = scores[0][task.task_id]
    assert result.status == "passed", result.error
    assert result.tests_passed == result.tests_total == len(task.tests)
    assert result.score == 1.0


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.task_id)
def test_stub_solution_fails_some_test(scores, task):
    result = scores[1][task.task_id]
    assert result.status == "failed"
    assert result.tests_passed < len(task.tests)


def test_regression_every_humaneval_canonical_solution_passes_the_hardened_harness():
    # The harness refuses frame introspection and compares builtin values only; at first it
    # refused all 21 HumanEval solutions that start `from typing import List` (typing calls
    # sys._getframe). The bundled HumanEval set is the widest body of honest Python we have.
    tasks = load_task_source("humaneval").tasks
    suite = ScoringSuite({"correctness": 1.0}, SandboxLimits(wall_seconds=20, cpu_seconds=20))
    with ScoringPool(suite, workers=2) as pool:
        futures = {t.task_id: pool.submit(t, t.reference_solution) for t in tasks}
        failed = {k: f.result().error for k, f in futures.items() if f.result().score != 1.0}
    assert len(tasks) == 164
    assert failed == {}
