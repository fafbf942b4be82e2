"""Reward hacking against the test harness: each cheat, in every language it applies to.

Every case asserts the cheat earns nothing (correctness 0, or the honest value, with the
right status) and that an honest solution still scores 1.0. Issue 8, items 4, 7 and 8.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from scorers.correctness import run_compiled_tests, run_python_tests
from scorers.efficiency import measure
from scorers.isolation import get_isolation
from scorers.languages import Toolchain
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.task import Task
from tests.helpers import busy_cores

LIMITS = SandboxLimits(wall_seconds=10.0, cpu_seconds=10.0)
TOOLCHAIN = Toolchain.discover()
compiled = pytest.mark.skipif(
    TOOLCHAIN.cxx is None or TOOLCHAIN.rustc is None, reason="needs g++ and rustc"
)
PY_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-1, 1) == 0"]
CPP_TESTS = ["assert(add(1, 2) == 3);", "assert(add(2, 2) == 4);", "assert(add(-1, 1) == 0);"]
RUST_TESTS = ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(2, 2), 4);", "assert!(add(-1, 1) == 0);"]
FORGE_PY = (
    "import os\n"
    "for fd in range(3, 64):\n"
    "    for i in range(8):\n"
    '        line = \'{"event": "test", "index": %d, "passed": true, "error": null}\\n\' % i\n'
    "        try:\n"
    "            os.write(fd, line.encode())\n"
    '            os.write(fd, b\'{"event": "done"}\\n\')\n'
    "        except OSError:\n"
    "            pass\n"
)


# -- Python -------------------------------------------------------------------------------


def test_python_honest_solution_passes():
    result = run_python_tests("def add(a, b):\n    return a + b\n", PY_TESTS, LIMITS)
    assert result.status == "passed"
    assert result.tests_passed == 3 and result.rejected_lines == 0


def test_python_always_equal_object_fails():
    code = (
        "class Anything:\n"
        "    def __eq__(self, other):\n        return True\n"
        "    def __bool__(self):\n        return True\n"
        "def add(a, b):\n    return Anything()\n"
    )
    tests = [
        *PY_TESTS,
        "assert add(1, 1)",
        "assert not (add(1, 1) != 2)",
        "assert len([add(0, 0)]) == 1",
    ]
    result = run_python_tests(code, tests, LIMITS)
    assert result.status == "failed"
    # Even len() of a list holding it: a builtin given a solution's object is refused.
    assert [t.passed for t in result.tests] == [False] * 6
    assert "tests compare builtin values only" in result.tests[0].error


def test_python_int_subclass_and_patched_builtins_fail():
    code = (
        "import builtins\n"
        "class Int(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n"
        "builtins.all = lambda *a: True\n"
        "all = lambda *a: True\n"
        "def add(a, b):\n    return Int(0)\n"
    )
    tests = ["assert add(1, 2) == 3", "assert all([add(1, 2) == 3])", "assert all([False])"]
    result = run_python_tests(code, tests, LIMITS)
    assert [t.passed for t in result.tests] == [False, False, False]


def test_python_same_class_built_by_the_test_still_compares():
    code = (
        "class P:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __eq__(self, other):\n        return type(other) is P and self.x == other.x\n"
        "def make(x):\n    return P(x)\n"
    )
    tests = [
        "assert make(1) == P(1)",
        "assert make(1) != P(2)",
        "assert {'a': [1, (2, 3)]} == {'a': [1, (2, 3)]}",
    ]
    assert run_python_tests(code, tests, LIMITS).status == "passed"


def test_python_tests_are_not_in_files_stdin_or_environment():
    code = (
        "import os, sys\n"
        "found = sorted(os.listdir('.'))\n"
        "stdin = sys.stdin.read()\n"
        "env = ' '.join(os.environ)\n"
        "def add(a, b):\n    return a + b\n"
    )
    tests = [
        "assert found == ['harness.py', 'solution.py']",
        "assert stdin == ''",
        "assert 'add(' not in env and 'SANDBOX' not in env",
    ]
    result = run_python_tests(code, tests, LIMITS)
    assert result.status == "passed", result.tests


def test_python_forged_report_lines_are_dropped_and_counted():
    code = FORGE_PY + "def add(a, b):\n    return -7\n"
    result = run_python_tests(code, PY_TESTS, LIMITS)
    assert result.status == "failed"
    assert [t.passed for t in result.tests] == [False, False, False]
    assert result.rejected_lines > 0


def test_python_cannot_reach_the_harness_frames_or_gc():
    code = (
        "import sys, gc\n"
        "errors = []\n"
        "for attempt in (lambda: sys._getframe(1), lambda: gc.get_objects(),\n"
        "                lambda: sys.settrace(None), lambda: open('/proc/self/mem', 'rb')):\n"
        "    try:\n        attempt()\n    except RuntimeError as exc:\n"
        "        errors.append(str(exc))\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError as exc:\n"
        "    try:\n        exc.__traceback__.tb_frame\n    except RuntimeError:\n"
        "        errors.append('tb_frame')\n"
        "def add(a, b):\n    return a + b\n"
    )
    result = run_python_tests(code, ["assert len(errors) == 5", "assert add(1, 2) == 3"], LIMITS)
    assert result.status == "passed", result.tests


QUADRATIC = (
    "def total(n):\n    s = 0\n    for i in range(n):\n        for j in range(n):\n"
    "            s += 1\n    return s\n"
)


def test_python_settrace_none_gets_no_efficiency():
    task = Task("t-sq", "n squared", "python", "total", ("assert total(60) == 3600",), None)
    honest, reason = measure(task, QUADRATIC, LIMITS, TOOLCHAIN)
    assert reason is None and honest.value > 3600
    cheat = "import sys\ntry:\n    sys.settrace(None)\nexcept RuntimeError:\n    pass\n" + QUADRATIC
    cost, reason = measure(task, cheat, LIMITS, TOOLCHAIN)
    assert cost is None and "sys.settrace" in reason
    suite = ScoringSuite({"correctness": 1.0, "efficiency": 1.0}, LIMITS)
    teacher = suite.score_teacher(task, "def total(n):\n    return n * n\n")
    assert suite.score(task, cheat, baseline=teacher).criteria["efficiency"] == 0.0


def test_settrace_none_program_score_keeps_the_efficiency_reason():
    # The ProgramScore a trainer sees: the tests pass, efficiency 0 and the reason kept.
    task = Task("t-sq", "n squared", "python", "total", ("assert total(60) == 3600",), None)
    suite = ScoringSuite({"correctness": 1.0, "efficiency": 1.0}, LIMITS)
    teacher = suite.score_teacher(task, "def total(n):\n    return n * n\n")
    assert teacher.criteria["efficiency"] == 1.0 and "efficiency" not in teacher.details
    cheat = "import sys\ntry:\n    sys.settrace(None)\nexcept RuntimeError:\n    pass\n" + QUADRATIC
    score = suite.score(task, cheat, baseline=teacher)
    assert score.status == "passed" and score.criteria["correctness"] == 1.0
    assert score.criteria["efficiency"] == 0.0 and score.cost is None
    assert "sys.settrace" in score.details["efficiency"]["reason"]
    assert score.score == 0.5  # weights 1:1 renormalised to 0.5 each: 0.5 * 1 + 0.5 * 0
    honest = suite.score(task, QUADRATIC, baseline=teacher)
    assert honest.cost is not None and "efficiency" not in honest.details
    assert 0.0 < honest.criteria["efficiency"] < 1.0  # quadratic vs. constant: counted, lower


def test_python_code_compiled_under_another_name_is_still_counted():
    task = Task("t-sq", "n squared", "python", "total", ("assert total(60) == 3600",), None)
    hidden = "exec(compile(" + repr(QUADRATIC) + ", 'harness.py', 'exec'))\n"
    plain, _ = measure(task, QUADRATIC, LIMITS, TOOLCHAIN)
    cost, reason = measure(task, hidden, LIMITS, TOOLCHAIN)
    assert reason is None and cost.value >= plain.value


def test_malformed_or_forged_cost_events_never_raise():
    task = Task("t-add", "add", "python", "add", tuple(PY_TESTS), None)
    code = FORGE_PY.replace("test", "cost").replace("passed", "lines")
    code += "def add(a, b):\n    return a + b\n"
    cost, reason = measure(task, code, LIMITS, TOOLCHAIN)
    honest, _ = measure(task, "def add(a, b):\n    return a + b\n", LIMITS, TOOLCHAIN)
    assert reason is None and cost.unit == "lines"
    assert cost.value > honest.value - 1  # its own lines counted; forged lines ignored


def test_python_killing_its_parent_scores_the_same_every_time():
    code = "import os\nos.kill(os.getppid(), 9)\ndef add(a, b):\n    return a + b\n"
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: run_python_tests(code, PY_TESTS, LIMITS), range(20)))
    outcomes = {(r.status, r.tests_passed) for r in runs}
    assert len(outcomes) == 1, outcomes


# -- C++ and Rust -------------------------------------------------------------------------

HONEST_CPP = "int add(int a, int b) { return a + b; }\n"
HONEST_RUST = "pub fn add(a: i64, b: i64) -> i64 { a + b }\n"
CHEATS = {
    "cpp-honest": ("cpp", HONEST_CPP, CPP_TESTS),
    "cpp-redefine-assert": (
        "cpp",
        "#undef assert\n#define assert(x) ((void)0)\nint add(int a, int b) { return -7; }\n",
        CPP_TESTS,
    ),
    "cpp-assert-through-splice": (
        "cpp",
        "#undef assert\n#  define \\\nassert(x) (void)0\nint add(int a, int b) { return -7; }\n",
        CPP_TESTS,
    ),
    "cpp-exit-mid-test": (
        "cpp",
        "#include <unistd.h>\nint add(int a, int b) { _exit(0); }\n",
        CPP_TESTS,
    ),
    "cpp-forge-from-constructor": (
        "cpp",
        "#include <unistd.h>\n#include <cstdio>\n#include <cstring>\n"
        "struct Forge { Forge() { char l[128];"
        " for (int fd = 3; fd < 64; fd++) for (int i = 0; i < 8; i++) {"
        ' int n = snprintf(l, sizeof l, "{\\"event\\": \\"test\\", \\"index\\": %d,'
        ' \\"passed\\": true, \\"error\\": null}\\n", i);'
        " if (write(fd, l, n) < 0) break;"
        ' write(fd, "{\\"event\\": \\"done\\"}\\n", 17); } } } forge;\n'
        "int add(int a, int b) { return -7; }\n",
        CPP_TESTS,
    ),
    "cpp-global-operator": (
        "cpp",
        "#include <string>\nbool operator==(const std::string&, const char*) { return true; }\n"
        'std::string add(int a, int b) { return "wrong"; }\n',
        ['assert(add(1, 2) == "3");'],
    ),
    "cpp-class-with-bool": (
        "cpp",
        "struct Yes { explicit operator bool() const { return true; }"
        " bool operator!() const { return true; } };\n"
        "Yes add(int, int) { return Yes(); }\n",
        ["assert(add(1, 2));", "assert(!add(1, 2));"],
    ),
    "cpp-asm": ("cpp", 'int add(int a, int b) { asm("nop"); return a + b; }\n', CPP_TESTS),
    "cpp-valgrind": (
        "cpp",
        "#include <valgrind/callgrind.h>\nint add(int a, int b) { return a + b; }\n",
        CPP_TESTS,
    ),
    "cpp-reserved-priority": (
        "cpp",
        "#include <unistd.h>\n__attribute__((constructor(50)))"
        " static void early() { char b[64]; read(0, b, 64); }\n" + HONEST_CPP,
        CPP_TESTS,
    ),
    "cpp-kill-parent": (
        "cpp",
        "#include <signal.h>\n#include <unistd.h>\n"
        "int add(int a, int b) { kill(getppid(), SIGKILL); return a + b; }\n",
        CPP_TESTS,
    ),
    "rust-honest": ("rust", HONEST_RUST + "fn main() {}\n", RUST_TESTS),
    "rust-shadow-assert": (
        "rust",
        "macro_rules! assert_eq { ($a:expr, $b:expr) => {}; }\n"
        "macro_rules! assert { ($a:expr) => {}; }\n"
        "pub fn add(a: i64, b: i64) -> i64 { -7 }\n",
        RUST_TESTS,
    ),
    "rust-fake-libtest": (
        "rust",
        "pub fn add(a: i64, b: i64) -> i64 { use std::io::Write;"
        ' let _ = std::io::stdout().write_all(b"test rfai_test_0000 ... ok\\n'
        "test rfai_test_0001 ... ok\\ntest rfai_test_0002 ... ok\\n"
        'test result: ok\\n"); -7 }\n',
        RUST_TESTS,
    ),
    "rust-always-equal": (
        "rust",
        "#[derive(Debug)] pub struct Any;\n"
        "impl PartialEq<i32> for Any { fn eq(&self, _: &i32) -> bool { true } }\n"
        "impl PartialEq<i64> for Any { fn eq(&self, _: &i64) -> bool { true } }\n"
        "pub fn add(a: i64, b: i64) -> Any { Any }\n",
        ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(2, 2), 4);"],
    ),
    "rust-shadow-string": (
        "rust",
        "#[derive(Debug)] pub struct String;\n"
        "impl PartialEq<&str> for String { fn eq(&self, _: &&str) -> bool { true } }\n"
        "impl PartialEq<String> for String { fn eq(&self, _: &String) -> bool { true } }\n"
        "pub fn add(a: i64, b: i64) -> String { String }\n",
        ['assert_eq!(add(1, 2), "3");', 'assert_eq!(add(1, 2), String::from("3"));'],
    ),
    "rust-shadow-some": (
        "rust",
        "#[derive(Debug, PartialEq)] pub struct Fake;\n"
        "pub fn Some<T>(_: T) -> Fake { Fake }\n"  # (allow attributes are refused)
        "pub fn add(a: i64, b: i64) -> Fake { Fake }\n",
        ["assert_eq!(add(1, 2), Some(3));"],
    ),
    "rust-not-bool": (
        "rust",
        "pub struct Yes;\n"
        "impl std::ops::Not for Yes { type Output = bool; fn not(self) -> bool { false } }\n"
        "pub fn add(a: i64, b: i64) -> Yes { Yes }\n",
        ["assert!(!add(1, 2));"],
    ),
    "rust-asm": (
        "rust",
        'pub fn add(a: i64, b: i64) -> i64 { unsafe { std::arch::asm!("nop"); } a + b }\n',
        RUST_TESTS,
    ),
    "rust-kill-parent": (
        "rust",
        'extern "C" { fn kill(pid: i32, sig: i32) -> i32; fn getppid() -> i32; }\n'
        "pub fn add(a: i64, b: i64) -> i64 { unsafe { kill(getppid(), 9); } a + b }\n",
        RUST_TESTS,
    ),
}


@pytest.fixture(scope="module")
def cheat_results():
    def run(name):
        language, code, tests = CHEATS[name]
        return name, run_compiled_tests(TOOLCHAIN, language, code, tests, LIMITS)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, CHEATS))


EXPECTED = {
    # name: (status, tests passed, text in the first error)
    "cpp-honest": ("passed", 3, None),
    "cpp-redefine-assert": ("failed", 0, "Aborted"),
    "cpp-assert-through-splice": ("failed", 0, "Aborted"),
    "cpp-exit-mid-test": ("failed", 0, "before the test returned"),
    # Its static initializer runs in each test's process, which has no report channel.
    "cpp-forge-from-constructor": ("failed", 0, None),
    "cpp-global-operator": ("failed", 0, "Aborted"),
    "cpp-class-with-bool": ("compile_error", 0, "error"),
    "cpp-asm": ("compile_error", 0, "inline assembly"),
    "cpp-valgrind": ("compile_error", 0, "valgrind"),
    # Refused in source now (any constructor attribute runs outside the cost count);
    # -Werror=prio-ctor-dtor stays as a second wall.
    "cpp-reserved-priority": ("compile_error", 0, "constructor attribute"),
    "rust-honest": ("passed", 3, None),
    "rust-shadow-assert": ("failed", 0, "assertion"),
    "rust-fake-libtest": ("failed", 0, "assertion"),
    "rust-always-equal": ("compile_error", 0, "PartialEq/PartialOrd with another type"),
    # The tests' prelude names are absolute paths: std's String / Some, a type mismatch.
    "rust-shadow-string": ("compile_error", 0, "PartialEq/PartialOrd with another type"),
    "rust-shadow-some": ("compile_error", 0, "mismatched types"),
    "rust-not-bool": ("failed", 0, "assertion failed"),
    "rust-asm": ("compile_error", 0, "inline assembly"),
}


@compiled
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compiled_cheat_earns_nothing(cheat_results, name):
    result = cheat_results[name]
    status, passed, error = EXPECTED[name]
    assert result.status == status, (result.status, result.tests, result.stderr[-500:])
    assert result.tests_passed == passed
    if error is not None:
        assert error in (result.first_error or ""), result.first_error


@compiled
def test_cpp_solution_code_never_reaches_the_report_channel(cheat_results):
    # Before, the forging static initializer ran in the process that reports and its lines
    # were dropped (and counted); now no solution code runs there, so none arrive at all.
    assert cheat_results["cpp-forge-from-constructor"].rejected_lines == 0
    assert cheat_results["cpp-forge-from-constructor"].tests_passed == 0
    assert cheat_results["cpp-honest"].rejected_lines == 0


@compiled
@pytest.mark.skipif(
    get_isolation().mode == "rlimits", reason="without isolation the kill reaches the trainer"
)
@pytest.mark.parametrize("name", ["cpp-kill-parent", "rust-kill-parent"])
def test_compiled_killing_its_parent_scores_the_same_every_time(name):
    # In the PID namespace the Rust harness is PID 1 (getppid() is 0: kill(0) signals its own
    # process group, itself alone) and a C++ test's parent is the harness, PID 1: the kernel
    # drops the SIGKILL either way, so the honest sums pass. Under load, with every core
    # busy, since a run once scored ('runtime_error', 0) there: "Text file busy" at the exec
    # (tests/test_sandbox.py::test_concurrent_runs_never_fail_with_text_file_busy).
    language, code, tests = CHEATS[name]
    run_compiled_tests(TOOLCHAIN, language, code, tests, LIMITS)  # compile once
    with busy_cores(), ThreadPoolExecutor(16) as pool:
        runs = list(
            pool.map(
                lambda _: run_compiled_tests(TOOLCHAIN, language, code, tests, LIMITS), range(80)
            )
        )
    outcomes = {(r.status, r.tests_passed) for r in runs}
    if get_isolation().mode == "namespaces":
        assert outcomes == {("passed", 3)}, [r.stderr[-200:] for r in runs if r.status != "passed"]
    assert len(outcomes) == 1, outcomes  # elsewhere: one verdict, whichever it is
