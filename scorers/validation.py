"""Start-up checks of a task set: a task whose reference solution fails its own tests is broken.

Such a task would teach nothing (the teacher's score is the broken tests', not the
program's), so it is reported and skipped before training, not discovered as odd rewards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from scorers.correctness import CorrectnessScorer
from scorers.pool import ScoringPool
from scorers.suite import ScoringSuite
from scorers.task import Task

log = logging.getLogger("rfai.scorers")


def validate_tasks(
    tasks: Sequence[Task], suite: ScoringSuite, workers: int = 1
) -> tuple[list[Task], list[str]]:
    """Run each task's reference solution against its tests, ``workers`` at a time.

    Returns ``(good, problems)``: ``good`` keeps the input order and holds every task whose
    reference passes all its tests, plus tasks that cannot be checked (no tests or no
    reference solution: an API teacher may still solve them). ``problems`` holds one message
    per dropped task, naming its id and ``file:line`` and the first failure; each is also
    logged as a warning. Never raises for a broken task: only for a broken environment (a
    missing compiler, see ``ScoringSuite.check_environment``).
    """
    checker = CorrectnessScorer(suite.limits, suite.toolchain)
    checkable = [t for t in tasks if t.tests and t.reference_solution]
    with ScoringPool(suite, workers) as pool:
        futures = {
            t.task_id: pool.submit_job(checker.score, t, t.reference_solution) for t in checkable
        }
        results = {task_id: future.result() for task_id, future in futures.items()}
    good, problems = [], []
    for task in tasks:
        if task.task_id not in results:
            good.append(task)
            continue
        _, execution = results[task.task_id]
        if execution is not None and execution.status == "passed":
            good.append(task)
            continue
        reason = execution.first_error if execution is not None else "empty reference"
        message = (
            f"skipping task {task.task_id!r} ({task.source}): its reference solution fails its "
            f"own tests ({execution.status if execution else 'not_run'}: {reason}); fix the "
            "tests or the reference"
        )
        log.warning(message)
        problems.append(message)
    return good, problems
