"""Generic cheats a student could find without seeing tests or outputs, and their closures.

Each cheat passes every test whatever the expected value (an always-true comparison, a
rewritten report line) or hides its work from the cost count. Before the fix each scored
correctness 1.0 (or a trusted, tiny cost); now each earns nothing, and honest solutions of
the same shape still score 1.0. Issue 8, item 7.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from scorers.correctness import run_compiled_tests, run_python_tests
from scorers.efficiency import measure
from scorers.languages import Toolchain
from scorers.sandbox import SandboxLimits
from scorers.task import Task

LIMITS = SandboxLimits(wall_seconds=10.0, cpu_seconds=10.0)
TOOLCHAIN = Toolchain.discover()
compiled = pytest.mark.skipif(
    TOOLCHAIN.cxx is None or TOOLCHAIN.rustc is None, reason="needs g++ and rustc"
)
PY_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert not (add(1, 1) != 2)"]
EVIL_PY = (
    "class Evil(dict):\n"
    "    def __eq__(self, other):\n        return True\n"
    "    def __ne__(self, other):\n        return False\n"
)


# -- Python: C wrappers that hand a comparison to the object inside ------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        "import weakref\nkeep = []\ndef add(a, b):\n    keep.append(Evil())\n"
        "    return weakref.proxy(keep[-1])\n",
        "import types\ndef add(a, b):\n    return types.MappingProxyType(Evil())\n",
    ],
    ids=["weakref-proxy", "mappingproxy"],
)
def test_python_delegating_wrapper_fails(wrap):
    result = run_python_tests(EVIL_PY + wrap, PY_TESTS, LIMITS)
    assert result.status == "failed"
    assert [t.passed for t in result.tests] == [False, False, False]
    assert "tests compare builtin values only" in result.tests[0].error


def test_python_builtin_values_still_compare():
    code = (
        "from collections import OrderedDict, deque\n"
        "def add(a, b):\n    return a + b\n"
        "def shapes():\n"
        "    return [{'k': (1, 2.5, 'x', b'y', None)}, {1, 2}, frozenset(), range(3),"
        " OrderedDict(a=1), deque([1])]\n"
    )
    tests = [
        *PY_TESTS,
        "assert shapes() == [{'k': (1, 2.5, 'x', b'y', None)}, {1, 2}, frozenset(), range(3),"
        " {'a': 1}, deque([1])]",
        "assert type(add(1, 2)) == int and {'a': 1}.keys() == {'a'}",
    ]
    result = run_python_tests(code, tests, LIMITS)
    assert result.status == "passed", result.tests


# -- Python: sys._getframe from the standard library's module-name readers ----------------

STDLIB_FRAME_READERS = (
    "from typing import List, NamedTuple, TypeVar\n"
    "from collections import namedtuple\n"
    "from enum import Enum\n"
    "T = TypeVar('T')\n"
    "Pair = namedtuple('Pair', 'a b')\n"
    "Color = Enum('Color', 'RED GREEN')\n"
    "class Point(NamedTuple):\n    x: int\n    y: int\n"
    "def add(a: int, b: int) -> int:\n"
    "    return Pair(a, b).a + Point(0, b).y + Color.RED.value - 1\n"
)


def test_regression_typing_import_is_not_refused_as_frame_access():
    # Every HumanEval solution starting `from typing import List` failed: typing, namedtuple
    # and the Enum functional API call sys._getframe to learn their caller's module name.
    result = run_python_tests(STDLIB_FRAME_READERS, PY_TESTS, LIMITS)
    assert result.status == "passed", result.tests


@pytest.mark.parametrize(
    "reader",
    [
        "import sys\nF = sys._getframe\n",
        # A function of the solution's own, named and filed like typing's reader.
        "import typing\n"
        "src = 'import sys\\ndef _caller(depth=1):\\n    return sys._getframe(depth)'\n"
        "ns = {}\nexec(compile(src, typing.__file__, 'exec'), ns)\nF = ns['_caller']\n",
    ],
    ids=["direct", "spoofed-typing-caller"],
)
def test_python_frame_reader_other_than_the_stdlib_ones_is_refused(reader):
    # With a frame the solution could read the test's expected constants (f_back.f_code).
    code = reader + "def add(a, b):\n    return F(1).f_code.co_consts[-1]\n"
    result = run_python_tests(code, PY_TESTS, LIMITS)
    assert result.status == "failed"
    assert result.tests_passed == 0
    assert "sys._getframe is not allowed" in result.tests[0].error


# -- Python efficiency: work in a child process ---------------------------------------------

SQUARE = Task("t-sq", "n squared", "python", "total", ("assert total(60) == 3600",), None)
FORK_EXEC = (
    "import _posixsubprocess, os, sys\n"
    "r, w = os.pipe()\n"
    "pid = _posixsubprocess.fork_exec([sys.executable, '-c', "
    "'print(sum(1 for i in range(60) for j in range(60)))'], [sys.executable.encode()],"
    " True, (w,), None, None, -1, -1, -1, w, -1, -1, r, w, True, False, -1, None, None,"
    " None, -1, None, False)\n"
    "os.close(w)\nV = int(os.read(r, 100))\nos.waitpid(pid, 0)\n"
    "def total(n):\n    return V\n"
)


FORK_CHILD = (
    "import os\n"
    "r, w = os.pipe()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.write(w, str(sum(1 for i in range(60) for j in range(60))).encode())\n"
    "    os._exit(0)\n"
    "os.close(w)\nV = int(os.read(r, 100))\nos.waitpid(pid, 0)\n"
    "def total(n):\n    return V\n"
)


def test_python_program_start_without_an_audit_event_is_refused():
    # _posixsubprocess.fork_exec starts a program (a compiler, say) without raising the
    # "subprocess.Popen" or "os.exec" audit events: importing it is refused.
    result = run_python_tests(FORK_EXEC, SQUARE.tests, LIMITS)
    assert result.status == "runtime_error"
    assert result.tests_passed == 0
    assert "import is not allowed" in result.tests[0].error
    cost, reason = measure(SQUARE, FORK_EXEC, LIMITS, TOOLCHAIN)
    assert cost is None and "did not pass" in reason


def test_python_work_in_a_forked_child_gets_no_cost():
    # The child's lines are counted in the child's memory, never reported.
    assert run_python_tests(FORK_CHILD, SQUARE.tests, LIMITS).status == "passed"
    cost, reason = measure(SQUARE, FORK_CHILD, LIMITS, TOOLCHAIN)
    assert cost is None and "forked" in reason
    honest, reason = measure(
        SQUARE, "def total(n):\n    return sum(1 for i in range(n) for j in range(n))\n",
        LIMITS, TOOLCHAIN,
    )  # fmt: skip
    assert reason is None and honest.value > 3600


# -- C++ and Rust ---------------------------------------------------------------------------

CPP_TESTS = ["assert(add(1, 2) == 3);", "assert(add(2, 2) == 4);"]
CHEATS = {
    # Defined after <unistd.h> declared it, `write` gets C linkage without extern "C" and
    # replaces libc's for the harness: it turns every "passed": false into true.
    "cpp-redefine-write": (
        "cpp",
        "#include <unistd.h>\n#include <sys/syscall.h>\n#include <string>\n"
        "ssize_t write(int fd, const void* buf, size_t n) {\n"
        "    std::string s((const char*)buf, n);\n"
        '    size_t p = s.find("\\"passed\\": false");\n'
        '    if (p != std::string::npos) s.replace(p, 15, "\\"passed\\": true");\n'
        "    long r = syscall(SYS_write, fd, s.data(), s.size());\n"
        "    return r < 0 ? r : (ssize_t)n;\n}\n"
        "int add(int a, int b) { return -7; }\n",
        CPP_TESTS,
    ),
    # memcmp answering 0 makes every std::string comparison equal.
    "cpp-redefine-memcmp": (
        "cpp",
        "#include <cstring>\n#include <string>\n"
        "int memcmp(const void*, const void*, size_t) noexcept { return 0; }\n"
        "std::string rle(std::string s) { return std::string(s.size() + 2, '?'); }\n",
        ['assert(rle("aaabcc") == "a3b1c2");'],
    ),
    "cpp-ifunc": (
        "cpp",
        "static int impl() { return 0; }\nstatic int (*pick())() { return impl; }\n"
        'int f() __attribute__((ifunc("_ZL4pickv")));\n'
        "int add(int a, int b) { return a + b; }\n",
        CPP_TESTS,
    ),
    "cpp-member-operator": (
        "cpp",
        "struct Any { template <class T> bool operator==(T) const { return true; } };\n"
        "Any add(int, int) { return Any(); }\n",
        CPP_TESTS,
    ),
    "cpp-free-template-operator": (
        "cpp",
        "#include <string>\nstruct Any {};\n"
        "template <class T> bool operator==(Any, T) { return true; }\n"
        "Any rle(std::string) { return Any(); }\n",
        ['assert(rle("aaabcc") == "a3b1c2");', 'assert(rle("") == std::string(""));'],
    ),
    "cpp-honest-classes": (
        "cpp",
        "#include <string>\n#include <vector>\n"
        "struct P { int x; bool operator==(const P& o) const { return x == o.x; }\n"
        "  bool operator<(const P& o) const { return x < o.x; } };\n"
        "P make(int x) { return P{x}; }\n"
        'std::string rle(std::string s) { return s + "1"; }\n'
        'std::vector<std::string> words() { return {"a", "b"}; }\n'
        "long add(int a, int b) { return a + b; }\n",
        [
            *CPP_TESTS,
            "assert(make(1) == P{1});",
            "assert(make(1) < make(2));",
            'assert(rle("x") == "x1");',
            'assert(words() == std::vector<std::string>({"a", "b"}));',
            'assert(words()[1] != "a" && !words().empty());',
            "assert(add(2, 2) >= 4u);",
        ],
    ),
    "rust-partial-eq-other-type": (
        "rust",
        "#[derive(Debug)] pub struct Any;\n"
        "impl PartialEq<i64> for Any { fn eq(&self, _: &i64) -> bool { true } }\n"
        "pub fn add(a: i64, b: i64) -> Any { Any }\n",
        ["assert!(add(1, 2) == 3);"],
    ),
    "rust-partial-eq-from-macro": (
        "rust",
        "#[derive(Debug)] pub struct Any;\n"
        "macro_rules! eq { ($t:ident) => { impl $t<i64> for Any"
        " { fn eq(&self, _: &i64) -> bool { true } } }; }\neq!(PartialEq);\n"
        "pub fn add(a: i64, b: i64) -> Any { Any }\n",
        ["assert!(add(1, 2) == 3);"],
    ),
    "rust-honest-derive": (
        "rust",
        "#[derive(Debug, PartialEq, Clone, Copy)] pub struct P { pub x: i64 }\n"
        "pub fn make(x: i64) -> P { P { x } }\n"
        "pub fn add(a: i64, b: i64) -> i64 { a + b }\n",
        ["assert!(add(1, 2) == 3);", "assert_eq!(make(2), P { x: 2 });"],
    ),
}
EXPECTED = {
    # name: (status, tests passed, text in the first error)
    "cpp-redefine-write": ("compile_error", 0, "defines C library functions (write)"),
    "cpp-redefine-memcmp": ("compile_error", 0, "defines C library functions (memcmp)"),
    "cpp-ifunc": ("compile_error", 0, "ifunc"),
    "cpp-member-operator": ("compile_error", 0, "static assertion failed"),
    "cpp-free-template-operator": ("compile_error", 0, "static assertion failed"),
    "cpp-honest-classes": ("passed", 8, None),
    "rust-partial-eq-other-type": ("compile_error", 0, "PartialEq/PartialOrd"),
    "rust-partial-eq-from-macro": ("compile_error", 0, "a trait a macro names"),
    "rust-honest-derive": ("passed", 2, None),
}


@pytest.fixture(scope="module")
def cheat_results():
    def run(name):
        language, code, tests = CHEATS[name]
        return name, run_compiled_tests(TOOLCHAIN, language, code, tests, LIMITS)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, CHEATS))


@compiled
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compiled_generic_cheat_earns_nothing(cheat_results, name):
    result = cheat_results[name]
    status, passed, error = EXPECTED[name]
    assert result.status == status, (result.status, result.tests, result.stderr[-500:])
    assert result.tests_passed == passed
    if error is not None:
        assert error in (result.first_error or "") + result.stderr, result.first_error


@compiled
def test_cpp_redefined_libc_function_gets_no_cost():
    task = Task("t-add", "add", "cpp", "add", tuple(CPP_TESTS), None)
    cost, reason = measure(task, CHEATS["cpp-redefine-write"][1], LIMITS, TOOLCHAIN)
    assert cost is None and "C library functions" in reason
