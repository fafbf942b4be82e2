"""Correctness scoring through the real sandbox: counts, statuses, and hostile programs."""

import resource
import sys
import time

import pytest

from scorers.correctness import CorrectnessScorer, run_python_tests
from scorers.sandbox import SandboxLimits
from scorers.task import Task

LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=5.0)
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = [
    "assert add(1, 2) == 3",
    "assert add(-1, 1) == 0",
    "assert add(2, 2) == 5",
    "assert add('a', 'b') == 'ab'",
]


def make_task(tests=ADD_TESTS, language="python"):
    return Task("t-add", "Write add.", language, "add", tuple(tests), ADD, 1, "test:1")


def test_counts_passes_and_failures():
    result = run_python_tests(ADD, ADD_TESTS, LIMITS)
    assert result.status == "failed"
    assert result.tests_passed == 3
    assert [o.passed for o in result.tests] == [True, True, False, True]
    assert result.tests[2].error == "AssertionError"
    assert result.first_error == "test 2: AssertionError"


def test_all_passing_is_passed():
    result = run_python_tests(ADD, ADD_TESTS[:2], LIMITS)
    assert result.status == "passed"
    assert result.tests_passed == 2


def test_exception_in_one_test_does_not_stop_the_others():
    tests = ["assert add(1, None) == 1", "assert add(1, 1) == 2"]
    result = run_python_tests(ADD, tests, LIMITS)
    assert [o.passed for o in result.tests] == [False, True]
    assert result.tests[0].error.startswith("TypeError: unsupported operand")


def test_syntax_error_is_compile_error_with_nothing_passed():
    result = run_python_tests("def add(a, b)\n    return a + b\n", ADD_TESTS, LIMITS)
    assert result.status == "compile_error"
    assert result.tests_passed == 0
    assert len(result.tests) == len(ADD_TESTS)
    assert result.tests[0].error.startswith("SyntaxError")


def test_exception_at_definition_time_is_runtime_error():
    result = run_python_tests(ADD + "raise RuntimeError('boom')\n", ADD_TESTS, LIMITS)
    assert result.status == "runtime_error"
    assert result.tests_passed == 0
    assert result.tests[0].error == "RuntimeError: boom"


def test_sys_exit_at_definition_time_is_runtime_error():
    result = run_python_tests("import sys\nsys.exit(0)\n" + ADD, ADD_TESTS, LIMITS)
    assert result.status == "runtime_error"
    assert result.tests_passed == 0


def test_main_guard_does_not_run():
    code = ADD + "if __name__ == '__main__':\n    raise SystemExit('main ran')\n"
    assert run_python_tests(code, ADD_TESTS[:1], LIMITS).status == "passed"


def test_tests_run_in_separate_copies_of_the_namespace():
    tests = ["add = None\nassert add is None", "assert add(1, 2) == 3"]
    assert run_python_tests(ADD, tests, LIMITS).status == "passed"


def test_infinite_loop_times_out_and_keeps_earlier_outcomes():
    limits = SandboxLimits(wall_seconds=1.0, cpu_seconds=30.0)
    tests = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "while True:\n    pass", "assert 1"]
    start = time.monotonic()
    result = run_python_tests(ADD, tests, limits)
    elapsed = time.monotonic() - start
    assert result.status == "timeout"
    assert [o.passed for o in result.tests] == [True, True, False, False]
    assert elapsed < 1.0 + 1.0


def test_harness_killed_mid_run_is_runtime_error_with_earlier_outcomes():
    tests = ["assert add(1, 2) == 3", "import os\nos._exit(0)", "assert add(1, 1) == 2"]
    result = run_python_tests(ADD, tests, LIMITS)
    assert result.status == "runtime_error"
    assert [o.passed for o in result.tests] == [True, False, False]


@pytest.mark.skipif(sys.platform == "darwin", reason="RLIMIT_AS is not enforced on macOS")
def test_memory_bomb_is_contained():
    limits = SandboxLimits(wall_seconds=5.0, memory_mb=256)
    limit_before = resource.getrlimit(resource.RLIMIT_AS)
    tests = ["assert add(1, 2) == 3", "hog = bytearray(2 * 2**30)"]
    result = run_python_tests(ADD, tests, limits)
    assert result.status in ("memory_exceeded", "runtime_error")
    assert [o.passed for o in result.tests] == [True, False]
    # This process is unharmed: its own limit is unchanged and it can still allocate.
    assert resource.getrlimit(resource.RLIMIT_AS) == limit_before
    assert len(bytearray(300 * 2**20)) == 300 * 2**20


@pytest.mark.skipif(sys.platform == "darwin", reason="RLIMIT_AS is not enforced on macOS")
def test_memory_bomb_at_definition_time():
    limits = SandboxLimits(wall_seconds=5.0, memory_mb=256)
    result = run_python_tests("hog = bytearray(2 * 2**30)\n" + ADD, ADD_TESTS, limits)
    assert result.status in ("memory_exceeded", "runtime_error")
    assert result.tests_passed == 0


def test_stdout_flood_is_output_exceeded():
    limits = SandboxLimits(wall_seconds=5.0, output_bytes=8192)
    code = ADD + "while True:\n    print('spam' * 100)\n"
    result = run_python_tests(code, ADD_TESTS, limits)
    assert result.status == "output_exceeded"
    assert len(result.stdout) == 8192


def test_parent_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret")
    code = (
        "import os\n"
        "seen = os.environ.get('HF_TOKEN')\n"
        "fd_var = os.environ.get('SANDBOX_REPORT_FD')\n"
    )
    result = run_python_tests(code, ["assert seen is None", "assert fd_var is None"], LIMITS)
    # fd_var: the harness removes the channel's variable before the program runs.
    assert result.status == "passed", result.tests


def test_fake_results_on_stdout_do_not_count():
    forged = '{"event": "test", "index": %d, "passed": true, "error": null}'
    code = (
        "def add(a, b):\n    return -1\n"  # wrong for every test
        + "".join(f"print('{forged % i}')\n" for i in range(len(ADD_TESTS)))
        + 'print(\'{"event": "done"}\')\n'
    )
    result = run_python_tests(code, ADD_TESTS, LIMITS)
    assert result.status == "failed"
    assert result.tests_passed == 0
    assert forged % 0 in result.stdout  # the program did print them


def test_program_output_is_captured():
    result = run_python_tests(
        ADD + "print('hi')\nimport sys\nprint('err', file=sys.stderr)\n", [], LIMITS
    )
    assert result.status == "passed"  # no tests: vacuously all passed
    assert result.stdout == "hi\n"
    assert result.stderr == "err\n"


def test_scorer_fraction_of_tests():
    score, result = CorrectnessScorer(LIMITS).score(make_task(), ADD)
    assert score == 3 / 4  # tests 0, 1 and 3 pass; test 2 expects 2 + 2 == 5
    assert result.tests_passed == 3


def test_scorer_not_applicable_without_tests():
    assert CorrectnessScorer(LIMITS).score(make_task(tests=()), ADD) == (None, None)


def test_scorer_empty_code_scores_zero_without_running():
    assert CorrectnessScorer(LIMITS).score(make_task(), "  \n") == (0.0, None)


def test_python_answer_to_a_cpp_task_is_a_compile_error_not_an_exception():
    score, result = CorrectnessScorer(LIMITS).score(make_task(language="cpp"), ADD)
    assert score == 0.0
    assert result.status == "compile_error"
    assert result.tests_passed == 0
