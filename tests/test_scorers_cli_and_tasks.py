"""The scoring command, start-up task validation, bad input, and reward/sample matching."""

import json
import logging
import random
import subprocess
import sys
from concurrent.futures import as_completed

import pytest

from rfai.tasks import Task, load_tasks
from scorers.languages import Toolchain
from scorers.pool import ScoringPool
from scorers.reward import compute_reward
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.validation import validate_tasks
from tests.helpers import REPO

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


def test_cli_prints_one_json_object(tmp_path):
    code = tmp_path / "solution.py"
    code.write_text("def rle(s):\n    return ''\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scorers", "--tasks", "builtin:python", "--task-id",
         "py-run-length-encode", "--code", str(code)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "failed"
    assert set(out["scores"]) == set(ALL)
    assert out["scores"]["efficiency"] == 0.0  # fails, against a passing reference
    assert [t["passed"] for t in out["tests"]] == [False, True, False, False, False, False]
    assert 0.0 <= out["student_score"] < out["teacher_score"] <= 1.0


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
