"""The `reference` teacher: each task's own reference solution. Free, exact, offline."""

from __future__ import annotations

from collections.abc import Sequence

from rfai.teachers.base import TeacherAnswer, TeacherStats, WrittenTests
from scorers.task import Task


class ReferenceTeacher:
    name = "reference"
    model = "reference_solution"

    def __init__(self) -> None:
        self.stats = TeacherStats()

    def check(self) -> None:
        """Nothing to reach: the references are in the tasks."""

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]:
        answers = [
            TeacherAnswer(t.task_id, t.reference_solution)
            if t.reference_solution
            else TeacherAnswer(t.task_id, None, "task has no reference_solution")
            for t in tasks
        ]
        self.stats.add(failures=sum(a.code is None for a in answers))
        return answers

    def write_tests(self, tasks: Sequence[Task]) -> list[WrittenTests]:
        self.stats.add(failures=len(tasks))
        return [
            WrittenTests(t.task_id, None, "the reference teacher cannot write tests") for t in tasks
        ]
