"""The teacher interface: what a teacher returns, its counters, and the error that stops a run.

Every backend module imports from here, never from the package ``rfai/teachers/__init__.py``,
which only re-exports (so imports inside the package run one way: backends -> core -> base).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rfai.teachers.cache import TeacherCache
from scorers.task import Task


@dataclass(frozen=True)
class TeacherAnswer:
    task_id: str
    code: str | None  # None: the teacher has no answer for this task (it is skipped)
    error: str | None = None


@dataclass(frozen=True)
class WrittenTests:
    task_id: str
    tests: tuple[str, ...] | None  # None: no usable tests; the task keeps the ones it had
    error: str | None = None


class TeacherError(RuntimeError):
    """The teacher cannot work at all (key, URL or model wrong); the message says what to fix."""


class TeacherStats:
    """Counters since the teacher was built, for the trainer's metrics (thread-safe)."""

    FIELDS = (
        "requests",  # backend calls made (HTTP attempts, retries included; mlx: prompts)
        "retries",  # attempts repeated after a timeout, 429 or 5xx
        "failures",  # tasks answered None (after retries, budget refusals, no code)
        "budget_refusals",  # requests not made because the per-run budget was spent
        "prompt_tokens",
        "completion_tokens",
    )

    def __init__(self, cache: TeacherCache | None = None) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """``teacher_<counter>`` -> value, cache hits and misses included (0 without a cache)."""
        with self._lock:
            out = {f"teacher_{k}": v for k, v in self._counts.items()}
        cache = self.cache.stats if self.cache is not None else None
        out["teacher_cache_hits"] = cache.hits if cache else 0
        out["teacher_cache_misses"] = cache.misses if cache else 0
        return out


class Teacher(Protocol):
    name: str
    model: str
    stats: TeacherStats

    def check(self) -> None:
        """Raise `TeacherError` now if the teacher cannot answer at all (start-up)."""
        ...

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]: ...

    def write_tests(self, tasks: Sequence[Task]) -> list[WrittenTests]: ...


def add_teacher_tests(
    teacher: Teacher, tasks: Sequence[Task]
) -> tuple[list[Task], list[WrittenTests]]:
    """Ask `teacher` for tests for every task that has none (``teacher.write_tests``).

    Returns all tasks in order, those the teacher wrote tests for with them filled in, and one
    answer per task that was asked (its ``error`` says why a task got none). The tests are the
    teacher's claims; nothing here checks them against a solution.
    """
    asked = [t for t in tasks if not t.tests]
    answers = teacher.write_tests(asked) if asked else []
    written = {a.task_id: a.tests for a in answers if a.tests}
    return [
        replace(t, tests=written[t.task_id]) if t.task_id in written else t for t in tasks
    ], answers
