"""Generic cheats a student could find without seeing tests or outputs, and their closures.

Each cheat passes every test whatever the expected value (an always-true comparison, a
rewritten report line) or hides its work from the cost count. Before the fix each scored
correctness 1.0 (or a trusted, tiny cost); now each earns nothing, and honest solutions of
the same shape still score 1.0. Issue 8, item 7.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from scorers.correctness import run_compiled_tests, run_python_tests
from scorers.efficiency import efficiency_score, measure
from scorers.harness import refused_constructs
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
    # A C++-linkage overload is a better match than libc's for the harness's own calls
    # (report lines were formatted and written after the solution's code in the same
    # translation unit): it turned every "passed": false into true.
    "cpp-overload-snprintf": (
        "cpp",
        "#include <cstdio>\n#include <cstring>\n#include <string>\n"
        "template <class... A> int snprintf(char* out, unsigned long n, const char* f, A... a) {\n"
        "    std::snprintf(out, n, f, a...);\n"
        "    std::string s(out);\n"
        '    size_t p = s.find("\\"passed\\": false");\n'
        '    if (p != std::string::npos) s.replace(p, 15, "\\"passed\\": true");\n'
        "    std::strncpy(out, s.c_str(), n);\n"
        "    return (int)s.size();\n}\n"
        "int add(int a, int b) { return -7; }\n",
        CPP_TESTS,
    ),
    "cpp-overload-write": (
        "cpp",
        "#include <unistd.h>\n#include <sys/syscall.h>\n#include <string>\n"
        "long write(int fd, char* buf, unsigned long n) {\n"
        "    std::string s(buf, n);\n"
        '    size_t p = s.find("\\"passed\\": false");\n'
        '    if (p != std::string::npos) s.replace(p, 15, "\\"passed\\": true");\n'
        "    return syscall(SYS_write, fd, s.data(), s.size()) < 0 ? -1 : (long)n;\n}\n"
        "int add(int a, int b) { return -7; }\n",
        CPP_TESTS,
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
    "cpp-overload-snprintf": ("failed", 0, "Aborted"),
    "cpp-overload-write": ("failed", 0, "Aborted"),
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


# -- C++ and Rust efficiency: work outside the counted test functions -----------------------

# The task: the sum of 0..n-1. The honest loop does n steps per test; a cheat fills a table of
# every answer up to 1000 (~500,000 steps) somewhere the count does not look, then looks up.
SUM_TESTS = (
    "assert(total(300) == 44850);",
    "assert(total(200) == 19900);",
    "assert(total(1000) == 499500);",
)
SUM_TASK = Task("t-sum", "the sum of 0..n-1", "cpp", "total", SUM_TESTS, None)
HONEST_SUM = "long total(long n) { long s = 0; for (long i = 0; i < n; i++) s += i; return s; }\n"
BUILD = (
    "#include <vector>\n"
    "std::vector<long> build() {\n"
    "    std::vector<long> t(1001);\n"
    "    for (long n = 0; n <= 1000; n++) {\n"
    "        long s = 0;\n"
    "        for (long i = 0; i < n; i++) s += i;\n"
    "        t[n] = s;\n"
    "    }\n"
    "    return t;\n"
    "}\n"
)
LOOKUP = "long total(long n) { return table[n]; }\n"
PRECOMPUTED = {
    # Work before main, in the static initialization of the solution's translation unit.
    "namespace-object": BUILD
    + "struct Table { std::vector<long> t; Table() : t(build()) {} } tables;\n"
    + "long total(long n) { return tables.t[n]; }\n",
    "static-const-auto": BUILD + "static const auto table = build();\n" + LOOKUP,
    "inline-variable": BUILD + "inline const std::vector<long> table = build();\n" + LOOKUP,
    "lambda-initialised": BUILD
    + "const std::vector<long> table = [] { return build(); }();\n"
    + LOOKUP,
    "template-static-member": BUILD
    + "template <class T> struct Holder { static const std::vector<T> table; };\n"
    + "template <class T> const std::vector<T> Holder<T>::table = build();\n"
    + "long total(long n) { return Holder<long>::table[n]; }\n",
    # Work inside the first call, in each test's process: counted before the fix as well.
    "function-local-static": BUILD
    + "long total(long n) { static const std::vector<long> t = build(); return t[n]; }\n",
}


@pytest.fixture(scope="module")
def sum_costs():
    codes = {"honest": HONEST_SUM, **PRECOMPUTED}
    codes["honest-iostream"] = "#include <iostream>\n" + HONEST_SUM
    codes["honest-bits-stdc"] = "#include <bits/stdc++.h>\nusing namespace std;\n" + HONEST_SUM

    def run(name):
        return name, measure(SUM_TASK, codes[name], LIMITS, TOOLCHAIN)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, codes))


needs_valgrind = pytest.mark.skipif(
    TOOLCHAIN.cxx is None or TOOLCHAIN.valgrind is None, reason="needs g++ and valgrind"
)


@needs_valgrind
@pytest.mark.parametrize("name", sorted(PRECOMPUTED))
def test_cpp_work_in_a_static_initializer_is_counted(sum_costs, name):
    # Before the fix callgrind collected only inside the test functions: a table filled by a
    # namespace-scope object's constructor cost 246 instructions for the three tests, the
    # honest loop 9,213. Now each test's process counts the solution's static
    # initialization too: 9,116,046 against 9,252, what the same table costs in a
    # function-local static (9,120,633), built once in each test's process.
    honest, _ = sum_costs["honest"]
    cost, reason = sum_costs[name]
    assert reason is None and cost.unit == "instructions"
    assert cost.value > 50 * honest.value  # ~500,000 loop steps against 1,500
    assert efficiency_score(cost, honest) < 0.15
    local, _ = sum_costs["function-local-static"]
    assert abs(cost.value - local.value) < 0.01 * local.value


@needs_valgrind
@pytest.mark.parametrize("header", ["honest-iostream", "honest-bits-stdc"])
def test_cpp_iostream_include_costs_nothing_more(sum_costs, header):
    # <iostream> adds std::ios_base::Init to the static initialization (~100,000
    # instructions); the harness includes it first and the count starts after it, so an
    # honest solution that includes it costs exactly what one without it does.
    honest, _ = sum_costs["honest"]
    cost, reason = sum_costs[header]
    assert reason is None and cost.value == honest.value
    # ~6 instructions a loop step at -O0, 1,500 steps, plus the call and the assert: the
    # harness's own start-up (std::ios_base::Init alone is ~100,000) is not in it.
    assert honest.value < 10_000


def test_regression_using_namespace_std_is_not_refused():
    # The check against adding to namespace std refused every `using namespace std;`.
    assert refused_constructs("cpp", "using namespace std;\nint f() { return 1; }\n") is None
    assert refused_constructs("cpp", "using  namespace\n std::chrono;\n") is None
    assert "namespace std" in refused_constructs("cpp", "namespace std { int x; }\n")
    assert "namespace std" in refused_constructs("cpp", "using namespace std;\nnamespace std {}")


CONSTRUCTOR_ATTRIBUTES = [
    "__attribute__((constructor))",
    "__attribute__((__constructor__))",
    "[[gnu::constructor]]",
    "#define EARLY __attribute__((constructor))\nEARLY",
]


@compiled
@pytest.mark.parametrize("attribute", CONSTRUCTOR_ATTRIBUTES)
def test_cpp_constructor_attribute_is_refused(attribute):
    # A function in .init_array of its own runs before main, outside any counted function.
    code = BUILD + "static std::vector<long> table;\n"
    code += f"{attribute} static void fill() {{ table = build(); }}\n" + LOOKUP
    result = run_compiled_tests(TOOLCHAIN, "cpp", code, SUM_TESTS, LIMITS)
    assert result.status == "compile_error" and result.tests_passed == 0
    assert "constructor attribute" in result.first_error, result.first_error
    cost, reason = measure(SUM_TASK, code, LIMITS, TOOLCHAIN)
    assert cost is None and "constructor attribute" in reason


THREADED = {
    "cpp": (
        SUM_TASK,
        "#include <thread>\nlong total(long n) {\n    long s = 0;\n"
        "    std::thread worker([&] { for (long i = 0; i < n; i++) s += i; });\n"
        "    worker.join();\n    return s;\n}\n",
    ),
    "rust": (
        Task("t-sum-rs", "the sum of 0..n-1", "rust", "total",
             ("assert_eq!(total(300), 44850);", "assert_eq!(total(1000), 499500);"), None),
        "pub fn total(n: i64) -> i64 {\n"
        "    std::thread::spawn(move || (0..n).sum::<i64>()).join().unwrap()\n}\n",
    ),
}  # fmt: skip


@needs_valgrind
@pytest.mark.parametrize("language", sorted(THREADED))
def test_work_in_another_thread_gets_no_cost(language):
    # Callgrind collects in the thread that runs the test function only: a thread started
    # there was not counted (each C++ test cost the same ~7,700 instructions of thread
    # start-up whatever n; Rust 11,241 for both tests against 89,994 for the honest sum).
    task, code = THREADED[language]
    assert run_compiled_tests(TOOLCHAIN, language, code, task.tests, LIMITS).status == "passed"
    cost, reason = measure(task, code, LIMITS, TOOLCHAIN)
    assert cost is None and "thread" in reason


@compiled
def test_rust_init_array_entry_is_refused():
    # Rust runs no code of the program's before main, except a function placed in
    # .init_array by hand: #[link_section] is refused.
    task = THREADED["rust"][0]
    code = (
        "static mut TABLE: [i64; 1001] = [0; 1001];\n"
        'extern "C" fn fill() { unsafe { for n in 0..1001 { TABLE[n] = (0..n as i64).sum(); } } }\n'
        '#[used]\n#[link_section = ".init_array"]\nstatic FILL: extern "C" fn() = fill;\n'
        "pub fn total(n: i64) -> i64 { unsafe { TABLE[n as usize] } }\n"
    )
    result = run_compiled_tests(TOOLCHAIN, "rust", code, task.tests, LIMITS)
    assert result.status == "compile_error" and "#[link_section]" in result.first_error
    cost, reason = measure(task, code, LIMITS, TOOLCHAIN)
    assert cost is None and "#[link_section]" in reason
