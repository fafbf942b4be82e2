"""The row schema: the trainer's real rows fit it, broken lines reported as file:line, dtypes."""

import json
from concurrent.futures import Future

import pandas as pd
import pytest

from rfai.config import ScoringConfig
from rfai.dataset_schema import (
    FIELD_NAMES,
    PANDAS_DTYPES,
    DatasetValidationError,
    RowContext,
    row_problems,
    validate_folder,
    validate_split,
)
from rfai.dataset_schema import make_row as make_trainer_row
from rfai.extract import ExtractedCode
from rfai.rollout import Completion
from rfai.scored_rollout import sample_row, score_completion
from scorers.suite import ScoringSuite
from scorers.task import Task
from tests.dataset_rows import make_dataset, make_row


class _RaisingSuite(ScoringSuite):
    """A real suite whose student scoring raises: a scorer bug."""

    def score(self, task, code, *, baseline=None):
        raise RuntimeError("malformed cost event")


def _trainer_row(suite: ScoringSuite, text: str) -> dict:
    """A row as the trainer makes it: a real completion scored by `score_completion`."""
    task = Task("py-add", "Write add(a, b).", "python", "add", ("assert add(1, 2) == 3",), None)
    config = ScoringConfig(weights={"correctness": 1.0})
    teacher: Future = Future()
    teacher.set_result(ScoringSuite.from_config(config).score_teacher(task, ADD))
    completion = Completion(5, 1, 1, (7, 8, 9), "stop", text)
    sample = score_completion(suite, config, task, teacher, completion)
    context = RowContext("validation", 3, "Org/student", "reference:reference_solution", "run9")
    return sample_row(context, task, ADD, completion, sample)


ADD = "def add(a, b):\n    return a + b\n"


def test_the_trainers_rows_have_exactly_the_schemas_fields_and_pass_it():
    suite = ScoringSuite.from_config(ScoringConfig(weights={"correctness": 1.0}))
    row = _trainer_row(suite, f"```python\n{ADD}```")
    assert tuple(row) == FIELD_NAMES and row_problems(row) == []
    assert (row["status"], row["student_score"], row["reward"], row["error"]) == (
        "passed",
        1.0,
        1.0,
        None,
    )
    assert (row["split"], row["step"], row["group_index"], row["sample_index"]) == (
        "validation",
        3,
        1,
        1,
    )
    assert (row["completion_tokens"], row["extraction"], row["run_id"]) == (3, "fenced", "run9")
    failing = _trainer_row(suite, "```python\ndef add(a, b):\n    return a - b\n```")
    assert row_problems(failing) == [] and failing["status"] == "failed"
    assert failing["reward"] == 0.0 and failing["error"].startswith("test 0: AssertionError")


def test_a_scorer_error_row_from_the_trainer_passes_the_schema():
    row = _trainer_row(_RaisingSuite.from_config(ScoringConfig()), f"```python\n{ADD}```")
    assert tuple(row) == FIELD_NAMES and row_problems(row) == []
    assert row["status"] == "scorer_error" and row["error"] == (
        "scorer_error: RuntimeError: malformed cost event"
    )
    assert (row["student_score"], row["reward"]) == (None, None)
    assert row["teacher_score"] == 1.0 and row["teacher_tests_passed"] == 1


def test_make_row_refuses_a_row_with_both_or_neither_of_score_and_scorer_error():
    task = Task("t", "p", "python", "f", (), None)
    completion = Completion(0, 0, 0, (1,), "stop", "x")
    context = RowContext("train", 1, "s", "t:m", "r")
    with pytest.raises(ValueError, match="either a student score or a scorer_error"):
        make_trainer_row(
            context, task, completion, teacher_code="", extracted=ExtractedCode("x", "no_fence"),
            student=None, teacher=None, reward=None,
        )  # fmt: skip


def test_broken_lines_are_reported_with_file_and_line(tmp_path):
    good = json.dumps(make_row(0, 1))
    missing = make_row(1, 1)
    del missing["reward"]
    wrong = make_row(2, 1) | {"student_score": "high"}
    text = "\n".join([good, "{not json", json.dumps(missing), json.dumps(wrong), good[:40]])
    path = tmp_path / "train.jsonl"
    path.write_text(text)
    rows, problems = validate_split(path)
    assert rows == 1
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (2, "not valid JSON"),
        (3, "missing field 'reward'"),
        (4, "field 'student_score' must be float, got 'high'"),
        (5, "incomplete last line"),
    ]
    with pytest.raises(DatasetValidationError) as err:
        validate_folder(tmp_path)
    assert f"{path}:2: not valid JSON" in str(err.value)
    assert f"{path}:4: field 'student_score'" in str(err.value)


def test_unknown_fields_and_booleans_for_numbers_are_errors(tmp_path):
    row = make_row(0, 1, "validation") | {"extra": 1, "tests_passed": True}
    misplaced = make_row(1, 1, "train")  # a train row in validation.jsonl
    (tmp_path / "validation.jsonl").write_text(
        json.dumps(row) + "\n" + json.dumps(misplaced) + "\n"
    )
    _, problems = validate_split(tmp_path / "validation.jsonl")
    messages = [(p.line, p.message) for p in problems]
    assert any(n == 1 and "unknown field(s) 'extra'" in m for n, m in messages)
    assert any(n == 1 and "'tests_passed' must be int" in m for n, m in messages)
    assert (2, "field 'split' is 'train' in validation.jsonl") in messages


def test_empty_folder_is_an_error_naming_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl"):
        validate_folder(tmp_path)


def test_pandas_reads_whole_number_scores_as_float_with_pandas_dtypes(tmp_path):
    # Regression: every score 0.0 or 1.0 (a typical early run) made pandas read int64.
    folder = make_dataset(tmp_path, {"train": 4})
    lines = (folder / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) | {"student_score": 0.0, "reward": 0.0} for line in lines]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = pd.read_json(folder / "train.jsonl", lines=True)
    assert plain["reward"].dtype == "int64"  # the pandas behaviour PANDAS_DTYPES exists for
    frame = pd.read_json(folder / "train.jsonl", lines=True, dtype=PANDAS_DTYPES)
    for name in ("student_score", "teacher_score", "reward"):
        assert frame[name].dtype == "float64", name
    for name in ("step", "tests_passed", "completion_tokens"):
        assert frame[name].dtype == "int64", name
    assert str(frame["timestamp"].dtype).startswith("datetime64")


def test_scorer_error_rows_have_null_scores_and_other_rows_do_not(tmp_path):
    # A sample whose scoring raised (rfai/scored_rollout.py) has no score and no reward.
    bug = make_row(0, 1) | {
        "status": "scorer_error",
        "student_score": None,
        "reward": None,
        "teacher_score": None,
        "error": "scorer_error: RuntimeError: malformed cost event",
    }
    null_reward = make_row(1, 1) | {"reward": None}  # status 'failed'
    half = make_row(2, 1) | {"status": "scorer_error", "student_score": None}  # reward kept
    free_text = make_row(3, 1) | {"status": "failed: see /etc/passwd"}
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (bug, null_reward, half, free_text)))
    rows, problems = validate_split(path)
    assert rows == 1
    assert [(p.line, p.message) for p in problems] == [
        (2, "field 'reward' is null but status is 'failed'"),
        (3, "a scorer_error row must have null 'student_score' and 'reward'"),
        (4, "field 'status' must be a lowercase word, got 'failed: see /etc/passwd'"),
    ]
    frame = pd.read_json(path, lines=True, dtype=PANDAS_DTYPES)
    assert frame["reward"].dtype == "float64" and frame["reward"].isna().tolist()[:2] == [
        True,
        True,
    ]


@pytest.mark.parametrize(
    "error",
    [
        "test 0: AssertionError: hf_Q3v9XkLm2PzR8tYwB4nJc7HdF1sGaE6uKo",
        "runtime_error: -----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5v",
        "compile_error: error: AKIAIOSFODNN7EXAMPLE not declared",
        "failed: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        "runtime_error: d41d8cd98f00b204e9800998ecf8427e",
    ],
)
def test_an_error_holding_a_token_is_refused_with_file_and_line(tmp_path, error):
    ok = make_row(0, 1)
    leaked = make_row(1, 1) | {"error": error}
    (tmp_path / "train.jsonl").write_text(json.dumps(ok) + "\n" + json.dumps(leaked) + "\n")
    with pytest.raises(DatasetValidationError) as err:
        validate_folder(tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'train.jsonl'}:2: field 'error' holds a token-shaped string" in message
    assert "scorers.redact.scrub_error" in message and error.split(": ")[-1] not in message
