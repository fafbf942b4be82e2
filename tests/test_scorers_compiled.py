"""C++ and Rust correctness for real (compiled and run in the sandbox), and the compile cache."""

import threading
import time

import pytest

from scorers.correctness import run_compiled_tests
from scorers.languages import Toolchain, ToolchainError, compile_program
from scorers.sandbox import SandboxLimits
from scorers.task import Task

LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=5.0)
TOOLCHAIN = Toolchain.discover()
CPP_TESTS = [
    "assert(add(1, 2) == 3);",
    "assert(add(2, 2) == 5);",
    "int* p = nullptr; *p = add(1, 1);",
]
RUST_TESTS = ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(2, 2), 5);", "assert_eq!(add(0, 0), 0);"]
pytestmark = pytest.mark.skipif(
    TOOLCHAIN.cxx is None or TOOLCHAIN.rustc is None, reason="needs g++ and rustc"
)


def test_cpp_outcomes_per_test_even_after_abort_and_segfault():
    code = "int add(int a, int b) { return a + b; }\nint main() { return 7; }\n"
    result = run_compiled_tests(TOOLCHAIN, "cpp", code, CPP_TESTS, LIMITS)
    # Test 1's assert aborts its forked child and test 2 segfaults; test 0 still passes and
    # the solution's own main() is renamed away rather than clashing with the harness's.
    assert result.status == "failed"
    assert [t.passed for t in result.tests] == [True, False, False]
    assert result.tests[1].error == "Aborted (assertion failed)"
    assert result.tests[2].error == "killed by signal 11"


def test_rust_outcomes_and_panic_message():
    code = "pub fn add(a: i64, b: i64) -> i64 { a + b }\nfn main() {}\n"
    result = run_compiled_tests(TOOLCHAIN, "rust", code, RUST_TESTS, LIMITS)
    assert [t.passed for t in result.tests] == [True, False, True]
    assert result.tests[1].error == "assertion `left == right` failed"


@pytest.mark.parametrize(
    ("language", "code"),
    [("cpp", "int add(int a, int b) { return a + }"), ("rust", "pub fn add(a: i64) -> i64 {")],
)
def test_compile_error_scores_nothing(language, code):
    tests = CPP_TESTS if language == "cpp" else RUST_TESTS
    result = run_compiled_tests(TOOLCHAIN, language, code, tests, LIMITS)
    assert result.status == "compile_error"
    assert result.tests_passed == 0
    assert "error" in result.tests[0].error


def test_compile_cache_is_hit_and_shared_across_threads(tmp_path):
    toolchain = Toolchain.discover(cache_dir=tmp_path)
    code = f"int add(int a, int b) {{ return a + b; }} // {time.time_ns()}\n"
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(compile_program(toolchain, "cpp", code, CPP_TESTS))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.ok for r in results)
    assert len({r.binary for r in results}) == 1
    assert len(list(tmp_path.glob("*/*.bin"))) == 1  # compiled once, not three times
    start = time.monotonic()
    assert compile_program(toolchain, "cpp", code, CPP_TESTS).ok
    assert time.monotonic() - start < 0.1  # from the disk cache


def test_solution_warnings_only_from_the_solution_lines():
    code = "int add(int a, int b) {\n    int unused = 0;\n    return a + b;\n}\n"
    build = compile_program(TOOLCHAIN, "cpp", code, ["int spare = 1;"])
    # The snippet's own unused variable is in generated code, not the solution's fault.
    assert build.warnings == ("line 2: unused variable ‘unused’ [-Wunused-variable]",)


def test_missing_compiler_is_a_clear_error_naming_what_to_install(tmp_path):
    toolchain = Toolchain.discover(cxx="rfai-no-such-g++", rustc="rfai-no-such-rustc")
    with pytest.raises(ToolchainError, match=r"C\+\+ tasks need g\+\+.*Rust tasks need rustc"):
        toolchain.check(["python", "cpp", "rust"])
    toolchain.check(["python"])  # Python needs no compiler
    task = Task("t-cpp", "p", "cpp", "add", tuple(CPP_TESTS), None)
    with pytest.raises(ToolchainError):
        compile_program(toolchain, "cpp", "int add(int a, int b);", task.tests)
