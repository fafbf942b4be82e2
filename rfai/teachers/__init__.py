"""Teachers: where the code a student is measured against comes from.

A teacher turns tasks into `TeacherAnswer`s (and, when asked, tasks without tests into
`WrittenTests`s). Backends live one per module behind this small interface, so the trainer
never knows which one it has:

    reference   reference.py     the task's own reference solution
    openai      openai_api.py    any OpenAI-compatible chat-completions endpoint
    anthropic   anthropic_api.py Anthropic's Messages API
    mlx         mlx_local.py     a second local model via mlx_lm

The generating backends share core.py (disk cache, counters, budget), api.py (retries,
concurrency) and prompts.py (what is asked, how answers are read). A task the teacher cannot
answer gets ``code=None`` with an ``error``: the trainer skips it for that step and counts it;
no answer is ever invented. A `TeacherError` is a problem of the whole teacher (a wrong key,
URL or model) and stops the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from rfai.config import TeacherConfig
from rfai.tasks import Task

if TYPE_CHECKING:
    from rfai.teachers.core import TeacherStats


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


class Teacher(Protocol):
    name: str
    model: str
    stats: TeacherStats

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]: ...

    def write_tests(self, tasks: Sequence[Task]) -> list[WrittenTests]: ...


def build_teacher(config: TeacherConfig) -> Teacher:
    """The teacher ``teacher.backend`` names. Reads the API key from the environment now,
    so a missing key fails before training starts; no request is made here."""
    if config.backend == "reference":
        from rfai.teachers.reference import ReferenceTeacher

        return ReferenceTeacher()
    if config.backend == "openai":
        from rfai.teachers.openai_api import build_openai_teacher

        return build_openai_teacher(config)
    if config.backend == "anthropic":
        from rfai.teachers.anthropic_api import build_anthropic_teacher

        return build_anthropic_teacher(config)
    if config.backend == "mlx":
        from rfai.teachers.mlx_local import build_mlx_teacher

        return build_mlx_teacher(config)
    raise ValueError(f"teacher.backend: unknown backend {config.backend!r}")


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
