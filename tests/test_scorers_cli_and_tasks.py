"""The scoring command, start-up task validation, bad input, and reward/sample matching."""

import gzip
import json
import logging
import random
import subprocess
import sys
from concurrent.futures import as_completed

import pytest

from rfai.tasks import load_tasks
from scorers.languages import Toolchain
from scorers.pool import ScoringPool
from scorers.reward import compute_reward
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.task import Task
from scorers.validation import validate_tasks
from tests.helpers import REPO, cli_env

LIMITS = SandboxLimits(wall_seconds=20.0)
ALL = {"correctness": 0.3, "code_quality": 0.3, "efficiency": 0.2, "documentation": 0.2}
COMPILED = load_tasks("builtin:cpp") + load_tasks("builtin:rust")
HAVE_COMPILERS = Toolchain.discover().cxx is not None and Toolchain.discover().rustc is not None


@pytest.mark.skipif(not HAVE_COMPILERS, reason="needs g++ and rustc")
def test_every_compiled_reference_passes_its_own_tests():
    # Parallel on the pool; compilations come from the on-disk cache after the first run.
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    good, problems = validate_tasks(COMPILED, suite, workers=4)
    assert problems == []
    assert len(good) == len(COMPILED)


def test_at_least_twenty_tasks_per_compiled_language():
    for language in ("cpp", "rust"):
        tasks = load_tasks(f"builtin:{language}")
        assert len(tasks) >= 20
        assert all(t.language == language and t.tests and t.reference_solution for t in tasks)


def test_broken_task_is_skipped_with_a_warning_naming_it(caplog):
    good_task = Task("t-ok", "p", "python", "f", ("assert f() == 1",), "def f():\n    return 1\n")
    broken = Task("t-broken", "p", "python", "f", ("assert f() == 2",), "def f():\n    return 1\n",
                  source="tasks.jsonl:7")  # fmt: skip
    unchecked = Task("t-no-ref", "p", "python", "f", ("assert f() == 2",), None)
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    with caplog.at_level(logging.WARNING, logger="rfai.scorers"):
        good, problems = validate_tasks([good_task, broken, unchecked], suite, workers=2)
    assert [t.task_id for t in good] == ["t-ok", "t-no-ref"]
    assert len(problems) == 1 and "'t-broken' (tasks.jsonl:7)" in problems[0]
    assert "t-broken" in caplog.text


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("", "not_run"),  # empty completion / no code block extracted
        ("def total(:\n", "compile_error"),  # does not parse
        ("Sure! Here is the answer.", "compile_error"),  # prose, no code block
    ],
)
def test_bad_input_gets_a_defined_zero_score(code, status):
    task = Task("t", "p", "python", "total", ("assert total(3) == 3",), None)
    suite = ScoringSuite(ALL, LIMITS)
    teacher = suite.score_teacher(task, "def total(n):\n    return n * (n - 1) // 2\n")
    result = suite.score(task, code, baseline=teacher)
    assert result.status == status
    assert result.criteria["correctness"] == 0.0
    assert result.criteria["code_quality"] == 0.0 and result.criteria["documentation"] == 0.0
    assert result.score == 0.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m scorers ARGS`` as a user runs it (offline: no dataset is fetched)."""
    return subprocess.run(
        [sys.executable, "-m", "scorers", *args],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_prints_one_json_object(tmp_path):
    code = tmp_path / "solution.py"
    code.write_text("def rle(s):\n    return ''\n")
    proc = run_cli("--tasks", "builtin:python", "--task-id", "py-run-length-encode",
                   "--code", str(code))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "failed"
    assert set(out["scores"]) == set(ALL)
    assert out["scores"]["efficiency"] == 0.0  # fails, against a passing reference
    assert [t["passed"] for t in out["tests"]] == [False, True, False, False, False, False]
    assert 0.0 <= out["student_score"] < out["teacher_score"] <= 1.0


HUMANEVAL_RECORDS = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n',
        "entry_point": "add",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n",
    },
    {
        "task_id": "HumanEval/1",
        "prompt": 'def neg(a: int) -> int:\n    """Minus a."""\n',
        "entry_point": "neg",
        "canonical_solution": "    return -a\n",
        "test": "def check(candidate):\n    assert candidate(2) == -2\n",
    },
]
RFAI_RECORD = {
    "task_id": "double",
    "prompt": "Write double(x).",
    "language": "py",
    "entry_point": "double",
    "tests": ["assert double(2) == 4", "assert double(0) == 0"],
    "reference_solution": "def double(x):\n    return 2 * x\n",
}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("source", ["rfai", "humaneval", "humaneval-gz", "config-train-file"])
def test_cli_takes_every_jsonl_source_training_takes(tmp_path, source):
    # rfai's own JSONL, a HumanEval-format file (as training reads it: the whole `check` is one
    # test), gzipped, and no --tasks at all: the config's data.train_file.
    if source == "rfai":
        tasks = write_jsonl(tmp_path / "t.jsonl", [RFAI_RECORD])
        task_id, code = "double", "def double(x):\n    return x + x\n"
    else:
        tasks = write_jsonl(tmp_path / "HumanEval.jsonl", HUMANEVAL_RECORDS)
        task_id, code = "HumanEval/0", "def add(a: int, b: int) -> int:\n    return a + b\n"
    if source == "humaneval-gz":
        gz = tmp_path / "HumanEval.jsonl.gz"
        gz.write_bytes(gzip.compress(tasks.read_bytes()))
        tasks = gz
    (tmp_path / "solution.py").write_text(code)
    args = ["--task-id", task_id, "--code", str(tmp_path / "solution.py")]
    if source == "config-train-file":
        config = tmp_path / "c.yaml"
        config.write_text(f"data:\n  train_file: {tasks}\n")
        args += ["--config", str(config)]
    else:
        args += ["--tasks", str(tasks)]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["task_id"], out["language"], out["status"]) == (task_id, "python", "passed")
    expected_tests = 2 if source == "rfai" else 1
    assert [t["passed"] for t in out["tests"]] == [True] * expected_tests
    assert out["scores"]["correctness"] == 1.0
    assert out["teacher_score"] is not None  # the reference (canonical) solution was scored


@pytest.mark.skipif(not HAVE_COMPILERS, reason="needs g++ and rustc")
@pytest.mark.parametrize("language", ["cpp", "rust"])
def test_cli_scores_a_builtin_compiled_task(tmp_path, language):
    task = load_tasks(f"builtin:{language}")[0]
    (tmp_path / "solution").write_text(task.reference_solution)
    proc = run_cli("--tasks", f"builtin:{language}", "--task-id", task.task_id,
                   "--code", str(tmp_path / "solution"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "passed" and out["scores"]["correctness"] == 1.0


def test_cli_scores_a_task_and_reports_skipped_malformed_records(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(RFAI_RECORD) + "\n{not json\n")
    (tmp_path / "s.py").write_text("def double(x):\n    return 2 * x\n")
    proc = run_cli("--tasks", str(tasks), "--task-id", "double", "--code", str(tmp_path / "s.py"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "passed"
    assert proc.stderr.splitlines() == [
        f"python -m scorers: warning: skipped {tasks}:2: invalid JSON at column 2 ('n'): "
        "Expecting property name enclosed in double quotes; each non-blank line must be one "
        "JSON object"
    ]


def user_error_case(tmp_path, case):
    """The arguments of one user error and a fragment its message must hold."""
    good_code = tmp_path / "ok.py"
    good_code.write_text("def double(x):\n    return 2 * x\n")
    tasks = write_jsonl(tmp_path / "tasks.jsonl", [RFAI_RECORD])
    malformed = tmp_path / "mal.jsonl"
    malformed.write_text(json.dumps(RFAI_RECORD) + '\n{"task_id": "b",\n')
    base = ["--tasks", str(tasks), "--task-id", "double", "--code", str(good_code)]

    def with_(**changes):
        args = list(base)
        for flag, value in changes.items():
            args[args.index(f"--{flag.replace('_', '-')}") + 1] = str(value)
        return args

    def config(text):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        return [*base, "--config", str(path)]

    if case == "missing-tasks-file":
        return with_(tasks=tmp_path / "nope.jsonl"), "task source '" + str(tmp_path / "nope.jsonl")
    if case == "unreadable-tasks-file":  # not gzip, though named so
        (tmp_path / "t.jsonl.gz").write_bytes(b"not gzip at all")
        return with_(tasks=tmp_path / "t.jsonl.gz"), "t.jsonl.gz: cannot read the task file"
    if case == "non-utf8-tasks-file":  # the line is skipped, so the task is not there
        (tmp_path / "latin.jsonl").write_bytes(b'{"task_id": "caf\xe9"}\n')
        return with_(tasks=tmp_path / "latin.jsonl"), "latin.jsonl:1: not UTF-8 text (byte 0xe9"
    if case == "unknown-builtin-set":
        return with_(tasks="builtin:cobol"), "no built-in task set 'builtin:cobol'"
    if case == "unknown-task-id":
        return with_(task_id="doubel"), "no task 'doubel' in " + str(tasks)
    if case == "malformed-line-holding-the-task":
        return with_(tasks=malformed, task_id="b"), f"{malformed}:2: invalid JSON"
    if case == "malformed-line-strict":
        return [*with_(tasks=malformed), "--strict"], f"{malformed}:2: invalid JSON"
    if case == "missing-code-file":
        return with_(code=tmp_path / "nope.py"), "--code " + str(tmp_path / "nope.py")
    if case == "code-is-a-directory":
        return with_(code=tmp_path), f"--code {tmp_path}: cannot read it: Is a directory"
    if case == "non-utf8-code":
        (tmp_path / "bin.py").write_bytes(b"\xff\xfe\x00")
        return with_(code=tmp_path / "bin.py"), "bin.py: not UTF-8 text"
    if case == "missing-config":
        return [*base, "--config", str(tmp_path / "no.yaml")], "no.yaml does not exist"
    if case == "invalid-yaml-config":
        return config("scoring: [1\n"), "config.yaml:2:1: not valid YAML"
    if case == "bad-config-value":
        return config("scoring:\n  memory_mb: 3\n"), "config.yaml:2: scoring.memory_mb"
    if case == "unknown-config-key":
        return config("scoring:\n  compile_cache: 5\n"), "unknown config key"
    if case == "missing-compiler":
        cpp = write_jsonl(tmp_path / "cpp.jsonl", [{**RFAI_RECORD, "language": "cpp"}])
        args = config("scoring:\n  cxx: no-such-g++-here\n")
        args[args.index("--tasks") + 1] = str(cpp)
        return args, "C++ tasks need g++"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing-tasks-file",
        "unreadable-tasks-file",
        "non-utf8-tasks-file",
        "unknown-builtin-set",
        "unknown-task-id",
        "malformed-line-holding-the-task",
        "malformed-line-strict",
        "missing-code-file",
        "code-is-a-directory",
        "non-utf8-code",
        "missing-config",
        "invalid-yaml-config",
        "bad-config-value",
        "unknown-config-key",
        "missing-compiler",
    ],
)
def test_cli_user_error_is_one_line_and_exit_status_2(tmp_path, case):
    args, fragment = user_error_case(tmp_path, case)
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("python -m scorers: error: ")
    assert fragment in lines[0]


def test_rewards_stay_matched_to_samples_when_completion_order_is_shuffled():
    # Regression: rewards must follow their samples whatever order the workers finish in.
    # Sample k passes k of 4 tests and sleeps a shuffled time first, so finishing order is
    # random; its reward is student/teacher = (k/4) / 1 with correctness-only weights.
    tests = ("assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3", "assert f(4) == 4")
    task = Task("t-f", "p", "python", "f", tests, None)
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    delays = [0.05 * d for d in random.Random(0).sample(range(8), 5)]
    programs = [
        f"import time\ntime.sleep({delays[k]})\ndef f(x):\n    return x if x <= {k} else -1\n"
        for k in range(5)
    ]
    finished = []
    with ScoringPool(suite, workers=5) as pool:
        teacher = pool.submit_teacher(task, "def f(x):\n    return x\n").result()
        futures = {pool.submit(task, code, baseline=teacher): k for k, code in enumerate(programs)}
        for future in as_completed(futures):
            finished.append(futures[future])
        rewards = [
            compute_reward(f.result().score, teacher.score)
            for f in sorted(futures, key=futures.get)
        ]
    assert rewards == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert finished != sorted(finished)  # the workers really finished out of order
