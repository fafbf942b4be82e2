"""Realistic dataset rows in the documented schema, written with the real DatasetWriter."""

from __future__ import annotations

from pathlib import Path

from rfai.dataset_schema import FIELD_NAMES
from rfai.dataset_writer import DatasetWriter

LANGUAGES = ("python", "python", "cpp", "rust")  # python twice: the usual majority
# (student_score, status, tests_passed) cycled over the rows; tests_total is 4.
OUTCOMES = ((1.0, "passed", 4), (0.5, "failed", 2), (0.0, "compile_error", 0), (0.75, "failed", 3))


def make_row(
    i: int, step: int, split: str = "train", run_id: str = "run1", student_model: str = "Org/s"
) -> dict:
    score, status, passed = OUTCOMES[i % len(OUTCOMES)]
    teacher = 1.0 if i % 5 else 0.75
    language = LANGUAGES[i % len(LANGUAGES)]
    row = {
        "prompt": f"Write function f{i % 7}.",
        "language": language,
        "student_code": f"def f{i}():\n    return {i}\n",
        "teacher_code": f"def f{i}():\n    return {i}  # teacher\n",
        "student_score": score,
        "teacher_score": teacher,
        "reward": min(2.0, score / teacher),
        "scoring_breakdown": {"correctness": 1.0},
        "timestamp": f"2026-11-22T17:{i % 60:02d}:00.000+00:00",
        "student_breakdown": {"correctness": score},
        "teacher_breakdown": {"correctness": teacher},
        "task_id": f"{language}-task-{i % 7}",
        "step": step,
        "group_index": i % 2,
        "sample_index": i % 4,
        "completion_tokens": 20 + i,
        "finish_reason": "length" if i % 6 == 0 else "stop",
        "extraction": "fenced",
        "status": status,
        "tests_passed": passed,
        "tests_total": 4,
        "teacher_tests_passed": 4 if teacher == 1.0 else 3,
        "error": None if status == "passed" else f"{status}: test {passed} failed",
        "student_model": student_model,
        "teacher": "reference:reference_solution",
        "run_id": run_id,
        "split": split,
    }
    assert tuple(row) == FIELD_NAMES
    return row


def make_dataset(folder: Path, counts: dict[str, int], **kw) -> Path:
    """Write `counts[split]` rows per split; train rows span steps 1..4, evaluation 0 and 4."""
    writer = DatasetWriter(folder)
    for split, n in counts.items():
        for i in range(n):
            step = {"train": 1 + i * 4 // max(n, 1), "validation": 2}.get(
                split, 0 if i < n // 2 else 4
            )
            writer.write(split, make_row(i, step, split, **kw))
        writer.path(split).touch()  # an empty split still has its (empty) file
    writer.close()
    return folder
