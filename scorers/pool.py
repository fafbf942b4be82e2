"""Scores many programs at once on a thread pool.

Threads suffice: each score spends its time waiting on a sandboxed subprocess (or a
compiler), not in Python. Every ``submit`` returns a Future that carries the ProgramScore or
the exception raised while scoring; nothing is swallowed. Futures are matched to their
submissions by identity, so results stay with their samples whatever order workers finish in.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from scorers.suite import ProgramScore, ScoringSuite
from scorers.task import Task

T = TypeVar("T")


class ScoringPool:
    """``submit(task, code) -> Future[ProgramScore]`` over ``workers`` threads."""

    def __init__(self, suite: ScoringSuite, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.suite = suite
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rfai-score")

    def submit(
        self, task: Task, code: str, *, baseline: ProgramScore | None = None
    ) -> Future[ProgramScore]:
        """Score a student program (against the teacher's ``baseline`` for efficiency)."""
        return self._executor.submit(self.suite.score, task, code, baseline=baseline)

    def submit_teacher(self, task: Task, code: str) -> Future[ProgramScore]:
        """Score a teacher program: ``ScoringSuite.score_teacher`` on the pool."""
        return self._executor.submit(self.suite.score_teacher, task, code)

    def submit_job(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)` on the pool: for jobs that score and then record (the trainer's)."""
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Wait for submitted programs to finish, then release the threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
