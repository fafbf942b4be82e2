"""Correctness: the fraction of a task's tests a program passes, run in the sandbox.

One sandboxed process per program. A harness script execs the candidate source into a fresh
namespace (``__name__`` is ``"solution"``, so a ``if __name__ == "__main__":`` block does not
run), then execs each test snippet in a shallow copy of that namespace, catching exceptions per
test. Outcomes go as JSON lines to the sandbox's report channel, not stdout, so whatever the
program prints cannot be mistaken for a result (though a hostile program can still forge them:
see ``scorers/sandbox.py``). Outcomes reported before a timeout or crash are kept; tests never
reached count as failed.

Only Python is scored in this slice; C++ and Rust come with their compile recipes later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rfai.tasks import Task
from scorers.sandbox import REPORT_FD_ENV, SandboxLimits, python_argv, run_process

ERROR_CHARS = 200

_HARNESS = (
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
_namespace = {"__name__": "solution", "__builtins__": __builtins__}
try:
    exec(_code, _namespace)
except BaseException as exc:
    _emit(event="runtime_error", error=_short(exc))
    _finish()
for _index, _test in enumerate(_tests):
    try:
        exec(compile(_test, "test_%d" % _index, "exec"), dict(_namespace))
    except BaseException as exc:
        _emit(event="test", index=_index, passed=False, error=_short(exc))
    else:
        _emit(event="test", index=_index, passed=True, error=None)
_emit(event="done")
_finish()
"""
)

STATUSES = (
    "passed",
    "failed",
    "compile_error",
    "runtime_error",
    "timeout",
    "memory_exceeded",
    "output_exceeded",
)


@dataclass(frozen=True)
class TestOutcome:
    """One test snippet's result; ``error`` is ``"Type: message"``, truncated."""

    __test__ = False  # not a pytest test class, despite the name

    index: int
    passed: bool
    error: str | None


@dataclass(frozen=True)
class ExecutionResult:
    """A program run against its tests. ``tests`` has one outcome per test, in order."""

    status: str
    tests: tuple[TestOutcome, ...]
    wall_seconds: float
    stdout: str
    stderr: str

    @property
    def tests_passed(self) -> int:
        return sum(outcome.passed for outcome in self.tests)

    @property
    def first_error(self) -> str | None:
        """The first failing test's error, prefixed with its index, for tracing."""
        for outcome in self.tests:
            if not outcome.passed:
                return f"test {outcome.index}: {outcome.error}"
        return None


def run_python_tests(code: str, tests: Sequence[str], limits: SandboxLimits) -> ExecutionResult:
    """Run ``tests`` against Python ``code`` in one sandboxed process."""
    process = run_process(
        python_argv("harness.py"),
        files={
            "harness.py": _HARNESS,
            "solution.py": code,
            "tests.json": json.dumps(list(tests)),
        },
        limits=limits,
        report_channel=True,
    )
    outcomes: dict[int, TestOutcome] = {}
    definition_event: dict | None = None
    done = False
    unreadable = False
    # A line without its newline was cut off by a kill or the cap: ignore it.
    for line in process.report.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        event = _parse_event(line)
        if event is None:
            unreadable = True
            continue
        kind = event.get("event")
        if kind in ("compile_error", "runtime_error") and definition_event is None:
            definition_event = event
        elif kind == "test" and _is_outcome(event, len(tests)):
            outcomes.setdefault(
                event["index"], TestOutcome(event["index"], event["passed"], event["error"])
            )
        elif kind == "done":
            done = True

    failed_unreached = "not run"
    status = None
    if definition_event is not None:
        status = definition_event["event"]
        failed_unreached = str(definition_event.get("error"))[:ERROR_CHARS]
        outcomes.clear()  # nothing ran; a forged test line after this is ignored
        if "MemoryError" in failed_unreached:
            status = "memory_exceeded"
    elif process.timed_out:
        status = "timeout"
    elif process.output_exceeded:
        status = "output_exceeded"
    elif process.memory_exceeded or any(
        (o.error or "").startswith("MemoryError") for o in outcomes.values()
    ):
        status = "memory_exceeded"
    elif not done or unreadable:
        # The harness died mid-run (os._exit, a crash, a signal) or its report was corrupted.
        status = "runtime_error"
    all_outcomes = tuple(
        outcomes.get(i, TestOutcome(i, False, failed_unreached)) for i in range(len(tests))
    )
    if status is None:
        status = "passed" if all(o.passed for o in all_outcomes) else "failed"
    return ExecutionResult(
        status=status,
        tests=all_outcomes,
        wall_seconds=process.wall_seconds,
        stdout=process.stdout,
        stderr=process.stderr,
    )


def _parse_event(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _is_outcome(event: dict, n_tests: int) -> bool:
    index = event.get("index")
    return (
        isinstance(index, int)
        and 0 <= index < n_tests
        and isinstance(event.get("passed"), bool)
        and (event.get("error") is None or isinstance(event.get("error"), str))
    )


class CorrectnessScorer:
    """Score = fraction of the task's tests passed; None (not applicable) without tests."""

    name = "correctness"

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits

    def score(self, task: Task, code: str) -> tuple[float | None, ExecutionResult | None]:
        if task.language != "python":
            raise ValueError(
                f"task {task.task_id!r} ({task.source}): correctness scoring supports only "
                f"python in this version, not {task.language!r}"
            )
        if not task.tests:
            return None, None
        if not code.strip():
            return 0.0, None  # nothing to run; an empty program passes nothing
        result = run_python_tests(code, task.tests, self.limits)
        return result.tests_passed / len(task.tests), result
