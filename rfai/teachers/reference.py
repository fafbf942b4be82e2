"""The `reference` teacher: each task's own reference solution. Free, exact, offline."""

from __future__ import annotations

from collections.abc import Sequence

from rfai.tasks import Task
from rfai.teachers import TeacherAnswer


class ReferenceTeacher:
    name = "reference"
    model = "reference_solution"

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]:
        return [
            TeacherAnswer(t.task_id, t.reference_solution)
            if t.reference_solution
            else TeacherAnswer(t.task_id, None, "task has no reference_solution")
            for t in tasks
        ]
