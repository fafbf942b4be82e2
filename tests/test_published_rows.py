"""What a published row may hold: a scrubbed error, never a secret; scorer bugs never crash.

1. `scorers.redact` against hand-written messages: ordinary ones survive (quotes elided),
   token-shaped strings do not.
2. Hostile programs in Python, C++ and Rust that read a secret file and try to get it into
   the row's `error` (exception message, stderr then crash, `#include`, `include!`,
   `include_str!`, `#[path]`), scored by the trainer's own `score_completion` and made a row
   by `sample_row` (`make_row`): the secret is nowhere in the row, the status and score are
   right.
   The secret's path is fixed so that compiled programs hit the compile cache between runs.
3. A suite whose `score` / `score_teacher` raise (a scorer bug) during a real training step
   on the tiny model: the step finishes, the samples are counted, logged once, written with
   status `scorer_error` and left out of the update.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from rfai.config_load import load_config
from rfai.dataset_schema import RowContext, read_rows, validate_folder
from rfai.dataset_writer import DatasetWriter
from rfai.rollout import Completion
from rfai.scored_rollout import sample_row, score_completion
from scorers.pool import ScoringPool
from scorers.redact import find_token, scrub_error, scrub_message
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.task import Task
from tests.helpers import SHORT_TASKS

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_Q3v9XkLm2PzR8tYwB4nJc7HdF1sGaE6uKo"
PEM_BODY = (
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    "QyNTUxOQAAACDx7Kq9fakeKeyMaterialZp4Wm2Rt8Yv3Nc6Bj1Hd5Lg0Ps9QAAAJhxyz",
)
SECRET = "\n".join(
    [
        TOKEN,
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        *PEM_BODY,
        "-----END OPENSSH PRIVATE KEY-----",
        "",
    ]
)
SECRET_PATH = Path("/var/tmp/rfai-published-rows-probe/secret.txt")
LIMITS = SandboxLimits(wall_seconds=10.0, cpu_seconds=5.0, memory_mb=512)


def _pieces(text: str, width: int = 8) -> set[str]:
    """Every `width`-character window of the secret's lines: none may reach a row."""
    return {
        line[i : i + width]
        for line in text.splitlines()
        for i in range(len(line) - width + 1)
        if len(line) >= width
    }


SECRET_PIECES = _pieces(SECRET)


def _leaks(text: str | None) -> list[str]:
    return sorted(p for p in SECRET_PIECES if text and p in text)


# -- 1. the scrubber -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "published"),
    [
        ("AssertionError", "AssertionError"),
        (
            "test 2: ZeroDivisionError: division by zero",
            "test 2: ZeroDivisionError: division by zero",
        ),
        (
            "compile_error: expected ';' before '}' token",
            "compile_error: expected … before … token",
        ),
        ("NameError: name 'foo' is not defined", "NameError: name … is not defined"),
        ("UnicodeDecodeError: can't decode byte", "UnicodeDecodeError: can't decode byte"),
        (
            "error[E0425]: cannot find value `x` in this scope",
            "error[E0425]: cannot find value … in this scope",
        ),
        # A compiler location names a file the program chose: dropped.
        (
            "/etc/x:1:1: error: ‘hf_Q3v9XkLm2PzR8tYwB4nJc7HdF1sGaE6uKo’ does not name a type",
            "error: … does not name a type",
        ),
        ("ValueError: " + SECRET, "ValueError: [redacted] [redacted]"),
        ("AssertionError: token=hunter2 and more", "AssertionError: token=[redacted] and more"),
        ("KeyError: sk-ant-api03-abcdefghijklmnop", "KeyError: [redacted]"),
        ("x ghp_abcdefghijklmnopqrstuvwxyz0123456789", "x [redacted]"),
        (
            "AWS AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS [redacted] / [redacted]",
        ),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl end", "jwt [redacted] end"),
        ("sha d41d8cd98f00b204e9800998ecf8427e", "sha [redacted]"),
        ("unterminated 'quote hides the rest", "unterminated …"),
        ("a\nmulti-line\n\tmessage", "a multi-line message"),
        (None, None),
    ],
)
def test_scrub_keeps_ordinary_messages_and_removes_secrets(raw, published):
    assert scrub_error(raw) == published
    if published is not None:
        assert scrub_error(published) == published  # idempotent
        assert find_token(published) is None


def test_scrub_cuts_long_messages_and_never_leaves_a_token():
    long = "IndexError: " + "list index out of range " * 20
    assert 90 <= len(scrub_message(long)) <= 100 and scrub_message(long).endswith("…")
    # Random mixed-case keys of 16+ characters are found wherever they sit in the text.
    import random

    rng = random.Random(0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for _ in range(300):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(24, 60)))
        text = f"test 1: RuntimeError: value {key} (line {rng.randint(1, 99)})"
        assert find_token(text) is not None, key
        assert key[:16] not in scrub_error(text) and find_token(scrub_error(text)) is None


# -- 2. hostile programs ---------------------------------------------------------------------

S = str(SECRET_PATH)
PROGRAMS = {
    # name: (language, tests, code, status)
    "py-exception-message": (
        "python",
        ("assert f() == 1",),
        f"def f():\n    raise AssertionError(open({S!r}).read())\n",
        "failed",
    ),
    "py-stderr-then-crash": (
        "python",
        ("assert f() == 1",),
        "import os, sys\n"
        "def f():\n"
        "    try:\n"
        f"        data = open({S!r}).read()\n"
        "    except OSError as exc:\n"
        "        data = repr(exc)\n"
        "    sys.stderr.write('ValueError: ' + data)\n"
        "    sys.stderr.flush()\n"
        "    os._exit(3)\n",
        "runtime_error",
    ),
    "py-import-time-exception": (
        "python",
        ("assert f() == 1",),
        f"raise ValueError(open({S!r}).read())\ndef f():\n    return 1\n",
        "runtime_error",
    ),
    "cpp-include": (
        "cpp",
        ("assert(f() == 1);",),
        f'#include "{S}"\nint f() {{ return 1; }}\n',
        "compile_error",
    ),
    "cpp-throw-contents": (
        "cpp",
        ("assert(f() == 1);",),
        "#include <fstream>\n#include <sstream>\n#include <stdexcept>\n"
        f'int f() {{ std::ifstream in("{S}"); std::stringstream s; s << in.rdbuf();\n'
        "  throw std::runtime_error(s.str()); }\n",
        None,  # the C++ harness's own verdict on an uncaught exception; not this test's
    ),
    "rust-include-str": (
        "rust",
        ("assert_eq!(f(), 1);",),
        f'compile_error!(include_str!("{S}"));\nfn f() -> i32 {{ 1 }}\n',
        "compile_error",
    ),
    "rust-include": (
        "rust",
        ("assert_eq!(f(), 1);",),
        f'fn f() -> i32 {{ include!("{S}") }}\n',
        "compile_error",
    ),
    "rust-path-module": (
        "rust",
        ("assert_eq!(f(), 1);",),
        f'#[path = "{S}"]\nmod m;\nfn f() -> i32 {{ 1 }}\n',
        "compile_error",
    ),
    "rust-panic-with-contents": (
        "rust",
        ("assert_eq!(f(), 1);",),
        f'fn f() -> i32 {{ panic!("{{}}", std::fs::read_to_string("{S}").unwrap_or_default()) }}\n',
        "failed",
    ),
}


@pytest.fixture(scope="module")
def secret_file():
    SECRET_PATH.parent.mkdir(parents=True, exist_ok=True)
    SECRET_PATH.write_text(SECRET)
    yield SECRET_PATH
    SECRET_PATH.unlink(missing_ok=True)
    SECRET_PATH.parent.rmdir()


@pytest.fixture(scope="module")
def hostile_rows(secret_file, tmp_path_factory):
    """Each program scored and made a row by the trainer's own code (no generation)."""
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    config = load_config(REPO / "configs" / "tiny.yaml")
    folder = tmp_path_factory.mktemp("hostile-rows")
    writer = DatasetWriter(folder)
    context = RowContext("train", 1, config.student.path, "reference:reference_solution", "run1")
    teacher_score: Future = Future()
    teacher_score.set_result(
        suite.score(_task("python", ("assert f() == 1",)), "def f(): return 1")
    )

    def one(item):
        i, (name, (language, tests, code, _)) = item
        task = _task(language, tests, name)
        fence = {"python": "python", "cpp": "cpp", "rust": "rust"}[language]
        completion = Completion(i, i, 0, (1, 2, 3), "stop", f"```{fence}\n{code}```")
        sample = score_completion(suite, config.scoring, task, teacher_score, completion)
        return name, (task, completion, sample)

    with ThreadPoolExecutor(4) as pool:  # compiles in parallel
        scored = dict(pool.map(one, enumerate(PROGRAMS.items())))
    for task, completion, sample in scored.values():
        writer.write("train", sample_row(context, task, "def f(): return 1", completion, sample))
    writer.close()
    samples = {name: sample for name, (_, _, sample) in scored.items()}
    rows = {row["task_id"]: row for row in read_rows(folder / "train.jsonl")}
    return folder, samples, rows


def _task(language: str, tests: tuple[str, ...], task_id: str = "t") -> Task:
    return Task(task_id, "Write f.", language, "f", tests, None, 1, "mem:1")


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_a_program_cannot_put_a_file_into_its_row(hostile_rows, name):
    _, samples, rows = hostile_rows
    _, _, _, status = PROGRAMS[name]
    sample, row = samples[name], rows[name]
    assert sample.student is not None and sample.skip_reason is None
    assert _leaks(sample.student.error) == [], sample.student.error
    assert _leaks(json.dumps(row)) == [], row["error"]
    if status is not None:
        assert (row["status"], row["student_score"], row["tests_passed"]) == (status, 0.0, 0)
    else:
        assert row["status"] != "passed" and row["student_score"] == 0.0
    assert row["error"] and len(row["error"]) <= 140 and find_token(row["error"]) is None


def test_the_rows_of_hostile_programs_pass_the_export_validator(hostile_rows):
    folder, _, _ = hostile_rows
    assert validate_folder(folder) == {"train": len(PROGRAMS)}
    assert _leaks((folder / "train.jsonl").read_text()) == []


# -- 3. scorer bugs --------------------------------------------------------------------------


class BuggySuite(ScoringSuite):
    """A real suite with two bugs: the teacher's scoring of the first task it sees raises,
    and the student's scoring of the first other task raises (each message holds a token)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.broken: dict[str, str] = {}

    def _broken(self, kind: str, task_id: str) -> bool:
        # Only the rollout's scoring pool calls these, first all teachers, then the students.
        if kind not in self.broken and task_id not in self.broken.values():
            self.broken[kind] = task_id
        return self.broken.get(kind) == task_id

    def score_teacher(self, task, code):
        if self._broken("teacher", task.task_id):
            raise ValueError(f"could not convert cost {TOKEN!r} to float")
        return super().score_teacher(task, code)

    def score(self, task, code, *, baseline=None):
        if self._broken("student", task.task_id):
            raise RuntimeError(f"malformed cost event from {TOKEN}")
        return super().score(task, code, baseline=baseline)


def test_a_scorer_bug_is_a_counted_skipped_sample_never_a_crash(tiny_model_dir, tmp_path, capsys):
    from rfai.run import build_run
    from rfai.trainer import run_step

    out = tmp_path / "run"
    config = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"training.output_dir={out}",
            f"huggingface.dataset_output_dir={tmp_path / 'datasets'}",
            "logging.rich=false",
            "scoring.workers=2",
            f"data.train_file={SHORT_TASKS}",
        ],
        model=str(tiny_model_dir),
    )
    run = build_run(config)
    buggy = BuggySuite.from_config(config.scoring)
    with ScoringPool(buggy, 1) as pool:  # one worker: teachers are scored before students
        metrics = run_step(run, 1, pool)
    run.logger.log(1, metrics)
    logged = capsys.readouterr().out
    # batch_size 4 x group_size 4: two tasks' groups (8 samples) raised; both groups dropped.
    assert metrics["scorer_errors"] == 8 and metrics["skipped_tasks"] == 2
    rows = read_rows(tmp_path / "datasets" / "train.jsonl")
    assert len(rows) == 16
    bad = [r for r in rows if r["status"] == "scorer_error"]
    assert {r["task_id"] for r in bad} == set(buggy.broken.values()) and len(bad) == 8
    by_kind = {kind: [r for r in bad if r["task_id"] == tid] for kind, tid in buggy.broken.items()}
    for row in by_kind["teacher"]:
        assert row["error"] == "scorer_error: ValueError: could not convert cost … to float"
        assert (row["student_score"], row["teacher_score"], row["reward"]) == (None, None, None)
    for row in by_kind["student"]:
        assert row["error"] == "scorer_error: RuntimeError: malformed cost event from [redacted]"
        assert row["student_score"] is None and row["reward"] is None
        assert row["teacher_score"] > 0 and row["teacher_tests_passed"] == row["tests_total"]
    assert all(r["reward"] is not None for r in rows if r["status"] != "scorer_error")
    assert TOKEN not in (tmp_path / "datasets" / "train.jsonl").read_text()
    # Logged with its traceback once per distinct reason, not once per sample.
    assert logged.count("Traceback (most recent call last)") == 2, logged
    assert logged.count("scoring raised on task") == 2  # 8 samples, 2 reasons
    assert "scorer errors 8" in logged  # the step's console line
    # The run goes on: the next step (suite fixed) trains, and the rows pass the export check.
    with run.scoring_pool() as pool:
        assert run_step(run, 2, pool)["scorer_errors"] == 0
    run.writer.close()
    assert validate_folder(tmp_path / "datasets") == {"train": 32}
