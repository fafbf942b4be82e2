"""The dataset row schema: one place for the fields of `{train,validation,evaluation}.jsonl`.

`FIELDS` is read by the validator below (export refuses broken files), by the dataset card
(its field table) and by `PANDAS_DTYPES`. All three splits share it: a validation or
evaluation row is built exactly like a training row, with `split` naming its file and `step`
placing it in time (0 = a baseline evaluation before any update). `make_row` is the one
constructor of a row (the trainer's rows, scored or `scorer_error`, are all built by it);
tests/test_dataset_schema.py checks its rows against `FIELDS`.

What a row may hold from running a program: `status` (a word from the scorers' vocabulary,
`scorer_error` when scoring itself raised), the test counts, and `error`, a short scrubbed
error class and message (`scorers/redact.py`: no stderr, quoted spans elided, token-shaped
strings replaced). The validator refuses an `error` that still holds a token-shaped string
(`scorers.redact.find_token`), so a row written by an older rfai, or edited by hand, cannot
publish one. The code fields are not checked for tokens: they hold what the student model and
the teacher wrote (never program output), and hex constants or test vectors in code are
ordinary. A row with status `scorer_error` has null `student_score` and `reward` (and a null
`teacher_score` when the teacher's scoring raised); every other row has all three.

Why `PANDAS_DTYPES` exists: JSON has one number type, and `pd.read_json(..., lines=True)`
turns a float column whose values are all integral (every reward 0.0 early in a run) into
int64, whatever the file says (`0.0` is written with its decimal point). Nothing in the file
can prevent that, so the fix is at the reader: `pd.read_json(path, lines=True,
dtype=PANDAS_DTYPES)`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfai.dataset_writer import SPLITS
from scorers.redact import find_token, scrub_error

if TYPE_CHECKING:
    from rfai.extract import ExtractedCode
    from rfai.rollout import Completion
    from scorers import ProgramScore
    from scorers.task import Task

# The status of a row whose scoring raised (rfai/scored_rollout.py); its scores are null.
SCORER_ERROR = "scorer_error"
# Fields a scorer_error row leaves null; every other row must fill them.
SCORE_FIELDS = ("student_score", "teacher_score", "reward")
_STATUS = re.compile(r"[a-z_]{1,40}")

# How many problems a validation report lists per file; the count is always complete.
MAX_REPORTED = 20


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # one of _CHECKS
    description: str
    nullable: bool = False


FIELDS: tuple[Field, ...] = (
    Field("prompt", "string", "The task as the student saw it (the user turn)."),
    Field("language", "string", "Programming language of the task, e.g. `python`."),
    Field("student_code", "string", "Code extracted from the student's completion."),
    Field("teacher_code", "string", "The teacher's code for the same task."),
    Field(
        "student_score",
        "float",
        "Weighted score of the student's code, in [0, 1]; null when status is `scorer_error`.",
        nullable=True,
    ),
    Field(
        "teacher_score",
        "float",
        "Weighted score of the teacher's code, in [0, 1]; null when the teacher's scoring "
        "raised (status `scorer_error`).",
        nullable=True,
    ),
    Field(
        "reward",
        "float",
        "The reward given to the sample (`scoring.reward` rule); null when status is "
        "`scorer_error` (the sample was not trained on).",
        nullable=True,
    ),
    Field(
        "scoring_breakdown",
        "dict[str, float]",
        "Weight each criterion got, renormalised over the applicable ones (sums to 1).",
    ),
    Field("timestamp", "string", "When the sample was scored (ISO 8601, UTC)."),
    Field(
        "student_breakdown",
        "dict[str, float | null]",
        "Student's score per criterion; null = criterion not applicable.",
    ),
    Field(
        "teacher_breakdown",
        "dict[str, float | null]",
        "Teacher's score per criterion; null = criterion not applicable.",
    ),
    Field("task_id", "string", "Id of the task in its task file."),
    Field(
        "step",
        "int",
        "train: the optimizer step that sampled and trained on the row (1-based); "
        "validation/evaluation: optimizer steps completed before sampling (0 = baseline).",
    ),
    Field("group_index", "int", "Index of the task within its batch."),
    Field("sample_index", "int", "Index of the sample within its group of `group_size`."),
    Field("completion_tokens", "int", "Number of tokens the student generated."),
    Field("finish_reason", "string", "`stop` (end of sequence) or `length` (cut)."),
    Field("extraction", "string", "How the code was taken from the completion."),
    Field(
        "status",
        "string",
        "Outcome of running the student's tests, e.g. `passed`, `compile_error`; "
        "`scorer_error` when scoring itself failed (a bug; the sample was skipped).",
    ),
    Field("tests_passed", "int", "Tests the student's code passed."),
    Field("tests_total", "int", "Tests the task has."),
    Field("teacher_tests_passed", "int", "Tests the teacher's code passed."),
    Field(
        "error",
        "string",
        "First error of the student's program, if any: `[status: ][test N: ]Class: message`, "
        "at most 140 characters, quoted spans elided (`…`), token-shaped strings replaced by "
        "`[redacted]`; never stderr or file contents.",
        nullable=True,
    ),
    Field("student_model", "string", "The student model (Hub id or folder name)."),
    Field("teacher", "string", "Teacher backend and model, `backend:model`."),
    Field("run_id", "string", "Id of the training run that wrote the row."),
    Field("split", "string", "`train`, `validation` or `evaluation`: the file it is in."),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)


@dataclass(frozen=True)
class RowContext:
    """What every row of one pass shares: where it sits in the run and who wrote it."""

    split: str
    step: int
    student_model: str
    teacher: str  # `backend:model`
    run_id: str


def make_row(
    context: RowContext,
    task: Task,
    completion: Completion,
    *,
    teacher_code: str,
    extracted: ExtractedCode,
    student: ProgramScore | None,
    teacher: ProgramScore | None,
    reward: float | None,
    scorer_error: str | None = None,
) -> dict[str, Any]:
    """The one constructor of a dataset row, keys in `FIELD_NAMES` order.

    A scored sample passes `student`, `teacher` and `reward`. A sample whose scoring raised
    passes `scorer_error` (the scrubbed reason) and `student=None`, `reward=None` (and
    `teacher=None` when the teacher's scoring raised): its status is `scorer_error`.
    """
    if (scorer_error is None) == (student is None):
        raise ValueError("a row has either a student score or a scorer_error, not both")
    # Published: scrubbed again here whatever a scorer put in (scorers/redact.py).
    error = scorer_error if student is None else scrub_error(student.error)
    row = {
        "prompt": task.prompt,
        "language": task.language,
        "student_code": extracted.code,
        "teacher_code": teacher_code,
        "student_score": student.score if student else None,
        "teacher_score": teacher.score if teacher else None,
        "reward": reward if student else None,
        "scoring_breakdown": student.weights if student else {},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "student_breakdown": student.criteria if student else {},
        "teacher_breakdown": teacher.criteria if teacher else {},
        "task_id": task.task_id,
        "step": context.step,
        "group_index": completion.prompt_index,
        "sample_index": completion.sample_index,
        "completion_tokens": len(completion.tokens),
        "finish_reason": completion.finish_reason,
        "extraction": extracted.method,
        "status": student.status if student else SCORER_ERROR,
        "tests_passed": student.tests_passed if student else 0,
        "tests_total": len(task.tests),
        "teacher_tests_passed": teacher.tests_passed if teacher else 0,
        "error": error,
        "student_model": context.student_model,
        "teacher": context.teacher,
        "run_id": context.run_id,
        "split": context.split,
    }
    return row


PANDAS_DTYPES: dict[str, str] = {
    f.name: {"float": "float64", "int": "int64"}[f.type]
    for f in FIELDS
    if f.type in ("float", "int")
}


def _is_float(v: Any) -> bool:
    # JSON has one number type: an int where a float is expected is fine (1 == 1.0).
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_dict_of(v: Any, allow_null: bool) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and (_is_float(x) or (allow_null and x is None)) for k, x in v.items()
    )


_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "float": _is_float,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "dict[str, float]": lambda v: _is_dict_of(v, allow_null=False),
    "dict[str, float | null]": lambda v: _is_dict_of(v, allow_null=True),
}


def row_problems(row: Any) -> list[str]:
    """What is wrong with one decoded row (empty when it fits the schema)."""
    if not isinstance(row, dict):
        return [f"a row must be a JSON object, got {type(row).__name__}"]
    problems = [f"missing field {name!r}" for name in FIELD_NAMES if name not in row]
    unknown = sorted(set(row) - set(FIELD_NAMES))
    if unknown:
        problems.append(
            f"unknown field(s) {', '.join(map(repr, unknown))} (schema: rfai/dataset_schema.py)"
        )
    for f in FIELDS:
        if f.name not in row or (f.nullable and row[f.name] is None):
            continue
        if not _CHECKS[f.type](row[f.name]):
            problems.append(f"field {f.name!r} must be {f.type}, got {row[f.name]!r:.60}")
    return problems or _content_problems(row)


def _content_problems(row: dict[str, Any]) -> list[str]:
    """Checks across fields, and of what a program may have put into the row."""
    problems = []
    if not _STATUS.fullmatch(row["status"]):
        problems.append(f"field 'status' must be a lowercase word, got {row['status']!r:.60}")
    scorer_error = row["status"] == SCORER_ERROR
    for name in SCORE_FIELDS:
        if row[name] is None and not scorer_error:
            problems.append(f"field {name!r} is null but status is {row['status']!r}")
    if scorer_error and (row["student_score"] is not None or row["reward"] is not None):
        problems.append("a scorer_error row must have null 'student_score' and 'reward'")
    token = find_token(row["error"]) if row["error"] is not None else None
    if token is not None:
        problems.append(
            f"field 'error' holds a token-shaped string, possibly a secret a program printed: "
            f"{token}. Rows from this rfai are scrubbed when written; this one is older or "
            "was edited. Replace its error with scorers.redact.scrub_error(error) (or null), "
            "or delete the line"
        )
    return problems


@dataclass(frozen=True)
class LineProblem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class DatasetValidationError(ValueError):
    """Some lines of a dataset folder do not fit the schema; the message lists file:line."""

    def __init__(self, problems: list[LineProblem]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:MAX_REPORTED])
        more = (
            f"\n  ... and {len(problems) - MAX_REPORTED} more"
            if len(problems) > MAX_REPORTED
            else ""
        )
        super().__init__(
            f"{len(problems)} broken line(s) in the dataset:\n{shown}{more}\n"
            "Fix or delete those lines (each line is one JSON row) and run the export again."
        )


def validate_split(path: str | Path) -> tuple[int, list[LineProblem]]:
    """Check every line of one split file; returns (valid rows, problems with file:line)."""
    path = Path(path)
    problems: list[LineProblem] = []
    rows = 0
    # Split on b"\n" only: str.splitlines would also break inside strings at U+2028 etc.
    lines = path.read_bytes().split(b"\n")
    last = lines.pop()  # b"" when the file ends with a newline
    for n, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problems.append(LineProblem(path, n, f"not valid JSON ({exc})"))
            continue
        found = row_problems(row)
        if not found and path.stem in SPLITS and row["split"] != path.stem:
            found = [f"field 'split' is {row['split']!r} in {path.name}"]
        problems.extend(LineProblem(path, n, p) for p in found)
        rows += not found
    if last:
        problems.append(
            LineProblem(path, len(lines) + 1, "incomplete last line (no newline; cut by a crash?)")
        )
    return rows, problems


def split_files(folder: str | Path) -> dict[str, Path]:
    """The split files of `folder` that exist and hold at least one byte, in SPLITS order."""
    folder = Path(folder)
    found = {s: folder / f"{s}.jsonl" for s in SPLITS}
    return {s: p for s, p in found.items() if p.is_file() and p.stat().st_size > 0}


def validate_folder(folder: str | Path) -> dict[str, int]:
    """Validate every split of `folder`; returns rows per non-empty split.

    Raises `DatasetValidationError` listing file:line of each broken line, or
    FileNotFoundError when the folder holds no rows at all.
    """
    folder = Path(folder)
    files = split_files(folder)
    if not files:
        raise FileNotFoundError(
            f"{folder} holds no rows: expected {', '.join(s + '.jsonl' for s in SPLITS)} "
            "(written during training to huggingface.dataset_output_dir)"
        )
    sizes: dict[str, int] = {}
    problems: list[LineProblem] = []
    for split, path in files.items():
        sizes[split], found = validate_split(path)
        problems.extend(found)
    if problems:
        raise DatasetValidationError(problems)
    return sizes


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a (validated) split file."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().split("\n") if line]


def read_complete_lines(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file that may still be written to, or cut short by a
    crash: unreadable lines (the last one, half written) are left out; no file gives []."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def rows_of_run(path: str | Path, run_id: str | None) -> list[dict[str, Any]]:
    """`read_complete_lines` of a split file, only the rows of `run_id` (None: all)."""
    return [r for r in read_complete_lines(path) if run_id is None or r.get("run_id") == run_id]
