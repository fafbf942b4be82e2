"""Teachers: where the code a student is measured against comes from.

A teacher turns tasks into `TeacherAnswer`s. Backends live one per module behind this
small interface, so the trainer never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rfai.config import TeacherConfig
from rfai.tasks import Task


@dataclass(frozen=True)
class TeacherAnswer:
    task_id: str
    code: str | None  # None: the teacher has no answer for this task (it is skipped)
    error: str | None = None


class Teacher(Protocol):
    name: str
    model: str

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]: ...


def build_teacher(config: TeacherConfig) -> Teacher:
    if config.backend == "reference":
        from rfai.teachers.reference import ReferenceTeacher

        return ReferenceTeacher()
    raise ValueError(f"teacher.backend: unknown backend {config.backend!r}")
