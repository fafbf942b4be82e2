"""The programs that run a task's tests around a candidate solution, one per language.

Every harness reports to the sandbox's report channel, one JSON line per event:
``{"event": "test", "index": i, "passed": bool, "error": str|null}``, then ``{"event": "done"}``;
a Python program that fails to compile or to define itself reports ``compile_error`` /
``runtime_error`` instead. Outcomes go to the report channel, not stdout, so what the program
prints cannot be mistaken for a result (a hostile program can still forge them: see
``scorers/sandbox.py``). Rust uses libtest's own runner, whose ``test NAME ... ok`` lines are
parsed from stdout instead (libtest captures what the tests print).

* Python: the source is exec'd into a fresh namespace (``__name__`` is ``"solution"``, so a
  ``if __name__ == "__main__":`` block does not run), then each snippet is exec'd in a
  shallow copy of it, catching exceptions per test. With ``--profile`` the harness counts
  the solution's executed lines (``sys.settrace``: line events plus one per call, only for
  code from ``solution.py``, its module body included) and reports ``{"event": "cost"}``.
* C++: the solution, with its own ``main`` renamed away by a macro, then one
  ``noinline`` function per snippet; ``main`` forks once per test so that a failed
  ``assert`` (abort) or a crash fails that test only.
* Rust: the solution followed by one ``#[test] fn`` per snippet, compiled with ``--test``
  (a solution's own ``fn main`` is then unused, not a conflict).
"""

from __future__ import annotations

from collections.abc import Sequence

from scorers.sandbox import REPORT_FD_ENV

ERROR_CHARS = 200
CPP_PRELUDE = """#undef NDEBUG
#include <cassert>
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>
#define main rfai_solution_main
"""
CPP_RUNNER = r"""
#undef main
#undef NDEBUG
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>
typedef void (*rfai_test_fn)();
static rfai_test_fn rfai_tests[] = {%(table)s};

static void rfai_emit(int fd, const char* line) {
    if (fd >= 0 && write(fd, line, strlen(line)) < 0) _exit(3);
}

int main() {
    const char* fd_text = getenv("%(fd_env)s");
    int fd = fd_text ? atoi(fd_text) : -1;
    unsetenv("%(fd_env)s");
    char line[256];
    for (int i = 0; i < %(count)d; i++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            if (fd >= 0) close(fd);
            rfai_tests[i]();
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            snprintf(line, sizeof line, "{\"event\": \"test\", \"index\": %%d, "
                     "\"passed\": true, \"error\": null}\n", i);
        } else {
            char what[64];
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)
                snprintf(what, sizeof what, "Aborted (assertion failed)");
            else if (WIFSIGNALED(status))
                snprintf(what, sizeof what, "killed by signal %%d", WTERMSIG(status));
            else
                snprintf(what, sizeof what, "exit status %%d", WEXITSTATUS(status));
            snprintf(line, sizeof line, "{\"event\": \"test\", \"index\": %%d, "
                     "\"passed\": false, \"error\": \"%%s\"}\n", i, what);
        }
        rfai_emit(fd, line);
    }
    rfai_emit(fd, "{\"event\": \"done\"}\n");
    return 0;
}
"""


def test_name(index: int) -> str:
    """The generated test function's name; zero-padded so libtest's sort keeps file order."""
    return f"rfai_test_{index:04d}"


def cpp_test_program(code: str, tests: Sequence[str]) -> tuple[str, int]:
    """The C++ translation unit, and the 1-based line where ``code`` starts in it."""
    parts = [CPP_PRELUDE, code, "\n#undef main\n"]
    for index, snippet in enumerate(tests):
        parts.append(f"__attribute__((noinline)) static void {test_name(index)}() {{\n")
        parts.append(f"{snippet}\n}}\n")
    table = ", ".join(test_name(i) for i in range(len(tests))) or "0"
    runner = CPP_RUNNER % {"table": table, "count": len(tests), "fd_env": REPORT_FD_ENV}
    parts.append(runner)
    return "".join(parts), CPP_PRELUDE.count("\n") + 1


def rust_test_program(code: str, tests: Sequence[str]) -> tuple[str, int]:
    """The Rust crate (built with ``--test``), and the line where ``code`` starts in it."""
    parts = [code, "\n"]
    for index, snippet in enumerate(tests):
        parts.append(f"#[test]\n#[inline(never)]\nfn {test_name(index)}() {{\n{snippet}\n}}\n")
    return "".join(parts), 1


PYTHON_HARNESS = (
    r'''
import json, os, sys

_report = os.fdopen(int(os.environ.pop("'''
    + REPORT_FD_ENV
    + r"""")), "w", buffering=1)


def _emit(**event):
    _report.write(json.dumps(event) + "\n")
    _report.flush()


def _short(exc):
    text = type(exc).__name__
    message = str(exc)
    if message:
        text += ": " + message
    return text[:"""
    + str(ERROR_CHARS)
    + r"""]


def _finish():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the program closed or broke its own stream; nothing to flush
    # Skip interpreter shutdown: threads or atexit hooks left by the program must not hang it.
    os._exit(0)


with open("solution.py", encoding="utf-8") as f:
    _source = f.read()
with open("tests.json", encoding="utf-8") as f:
    _tests = json.load(f)
try:
    _code = compile(_source, "solution.py", "exec")
except (SyntaxError, ValueError) as exc:
    _emit(event="compile_error", error=_short(exc))
    _finish()
_profile = sys.argv[1:] == ["--profile"]
_lines = [0]


def _trace(frame, event, arg):
    # Count only the solution's lines: the cost of the program, not of the test snippets.
    if frame.f_code.co_filename != "solution.py":
        return None
    _lines[0] += 1  # the "call" event: a function entry costs one
    return _local


def _local(frame, event, arg):
    if event == "line":
        _lines[0] += 1
    return _local


_namespace = {"__name__": "solution", "__builtins__": __builtins__}
if _profile:
    sys.settrace(_trace)
try:
    exec(_code, _namespace)
except BaseException as exc:
    sys.settrace(None)
    _emit(event="runtime_error", error=_short(exc))
    _finish()
sys.settrace(None)
for _index, _test in enumerate(_tests):
    _test_code = compile(_test, "test_%d" % _index, "exec")
    if _profile:
        sys.settrace(_trace)
    try:
        exec(_test_code, dict(_namespace))
    except BaseException as exc:
        sys.settrace(None)
        _emit(event="test", index=_index, passed=False, error=_short(exc))
    else:
        sys.settrace(None)
        _emit(event="test", index=_index, passed=True, error=None)
if _profile:
    _emit(event="cost", lines=_lines[0])
_emit(event="done")
_finish()
"""
)
