"""Correctness: the fraction of a task's tests a program passes, run in the sandbox.

One sandboxed run per program (after one cached compilation for C++ and Rust): the harness of
``scorers/harness.py`` runs every test snippet and reports one outcome per test. Outcomes
reported before a timeout or crash are kept; tests never reached count as failed. A program
that does not compile scores 0 with status ``compile_error``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rfai.tasks import Task
from scorers.harness import ERROR_CHARS, PYTHON_HARNESS
from scorers.languages import BINARY_NAME, Toolchain, compile_program
from scorers.sandbox import ProcessResult, SandboxLimits, python_argv, run_process

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
    cpu_seconds: float = 0.0
    compile_diagnostics: str = ""

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
        files=python_files(code, tests),
        limits=limits,
        report_channel=True,
    )
    return _result_from_events(process, len(tests))


def python_files(code: str, tests: Sequence[str]) -> dict[str, str]:
    return {
        "harness.py": PYTHON_HARNESS,
        "solution.py": code,
        "tests.json": json.dumps(list(tests)),
    }


def run_compiled_tests(
    toolchain: Toolchain, language: str, code: str, tests: Sequence[str], limits: SandboxLimits
) -> ExecutionResult:
    """Compile (cached) and run ``tests`` against C++ or Rust ``code``."""
    build = compile_program(toolchain, language, code, tests)
    if not build.ok:
        error = _first_error_line(build.diagnostics)
        return ExecutionResult(
            status="compile_error",
            tests=tuple(TestOutcome(i, False, error) for i in range(len(tests))),
            wall_seconds=0.0,
            stdout="",
            stderr=build.diagnostics[-4000:],
            compile_diagnostics=build.diagnostics,
        )
    if language == "rust":
        argv = [f"./{BINARY_NAME}", "--test-threads=1", "rfai_test_"]
        process = run_process(argv, files={BINARY_NAME: build.binary}, limits=limits)
        result = _result_from_libtest(process, len(tests))
    else:
        process = run_process(
            [f"./{BINARY_NAME}"], files={BINARY_NAME: build.binary}, limits=limits,
            report_channel=True,
        )  # fmt: skip
        result = _result_from_events(process, len(tests))
    return ExecutionResult(**{**result.__dict__, "compile_diagnostics": build.diagnostics})


def _first_error_line(diagnostics: str) -> str:
    for line in diagnostics.splitlines():
        if "error" in line:
            return line.strip()[:ERROR_CHARS]
    return (diagnostics.strip().splitlines() or ["compile error"])[0][:ERROR_CHARS]


_LIBTEST_LINE = re.compile(r"^test rfai_test_(\d{4}) \.\.\. (ok|FAILED)$", re.MULTILINE)
_LIBTEST_PANIC = re.compile(
    r"^---- rfai_test_(\d{4}) stdout ----\n+(?:thread [^\n]* panicked at [^\n]*\n)?([^\n]*)",
    re.MULTILINE,
)


def _result_from_libtest(process: ProcessResult, n_tests: int) -> ExecutionResult:
    """Outcomes from libtest's ``test NAME ... ok|FAILED`` lines (the first per test counts)."""
    report = process.stdout.split("\nfailures:\n", 1)[0]
    errors = {
        int(m.group(1)): m.group(2)[:ERROR_CHARS] for m in _LIBTEST_PANIC.finditer(process.stdout)
    }
    outcomes: dict[int, TestOutcome] = {}
    for match in _LIBTEST_LINE.finditer(report):
        index = int(match.group(1))
        if index < n_tests and index not in outcomes:
            passed = match.group(2) == "ok"
            outcomes[index] = TestOutcome(
                index, passed, None if passed else errors.get(index, "panicked")
            )
    done = "test result:" in process.stdout
    return _assemble(process, outcomes, n_tests, None, done, unreadable=False)


def _result_from_events(process: ProcessResult, n_tests: int) -> ExecutionResult:
    """Outcomes from the report channel's JSON lines (see ``scorers/harness.py``)."""
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
        elif kind == "test" and _is_outcome(event, n_tests):
            outcomes.setdefault(
                event["index"], TestOutcome(event["index"], event["passed"], event["error"])
            )
        elif kind == "done":
            done = True
    return _assemble(process, outcomes, n_tests, definition_event, done, unreadable)


def _assemble(
    process: ProcessResult,
    outcomes: dict[int, TestOutcome],
    n_tests: int,
    definition_event: dict | None,
    done: bool,
    unreadable: bool,
) -> ExecutionResult:
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
        outcomes.get(i, TestOutcome(i, False, failed_unreached)) for i in range(n_tests)
    )
    if status is None:
        status = "passed" if all(o.passed for o in all_outcomes) else "failed"
    return ExecutionResult(
        status=status,
        tests=all_outcomes,
        wall_seconds=process.wall_seconds,
        stdout=process.stdout,
        stderr=process.stderr,
        cpu_seconds=process.cpu_seconds,
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


def run_tests(
    task: Task, code: str, limits: SandboxLimits, toolchain: Toolchain
) -> ExecutionResult:
    """Run the task's tests against ``code`` in the task's language."""
    if task.language == "python":
        return run_python_tests(code, task.tests, limits)
    return run_compiled_tests(toolchain, task.language, code, task.tests, limits)


class CorrectnessScorer:
    """Score = fraction of the task's tests passed; None (not applicable) without tests."""

    name = "correctness"

    def __init__(self, limits: SandboxLimits, toolchain: Toolchain | None = None) -> None:
        self.limits = limits
        self.toolchain = toolchain or Toolchain.discover()

    def score(self, task: Task, code: str) -> tuple[float | None, ExecutionResult | None]:
        if not task.tests:
            return None, None
        if not code.strip():
            return 0.0, None  # nothing to run; an empty program passes nothing
        result = run_tests(task, code, self.limits, self.toolchain)
        return result.tests_passed / len(task.tests), result
