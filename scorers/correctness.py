"""Correctness: the fraction of a task's tests a program passes, run in the sandbox.

One sandboxed run per program (after one cached compilation for C++ and Rust): the language's
harness (``scorers/harness_python.py``, ``harness_cpp.py``, ``harness_rust.py``; protocol in
``scorers/harness.py``) runs every test snippet and reports one outcome per test. Each run has
a fresh key, handed to the harness on stdin; only report lines that start with it count.
Lines without it (a program writing to the report channel) are dropped and counted in
``ExecutionResult.rejected_lines``; a line with the key that cannot be read makes the run a
``runtime_error``. Nothing here raises on what a program wrote.

The status is decided from facts, never from which of two processes died first: a limit the
sandbox saw (``timeout``, ``output_exceeded``, ``memory_exceeded``), else the harness's
``done`` event AND its exit status 0 (``passed``/``failed``), else ``runtime_error``. The
outcomes kept are those the harness reported with the key before it ended. (A program that
kills its harness's parent: in the PID-namespace sandbox the harness is PID 1, so the Rust
harness's ``getppid()`` is 0 and ``kill(0, ...)`` reaches only its own process group, itself,
and a C++ test's parent is the harness: the kernel drops a SIGKILL sent to a namespace's init
from inside, every time, and the run is scored as usual: the honest result, never more.
Tested 80 times per language with every core busy.)
Outcomes reported before a timeout or crash of a single test are kept; tests never reached
count as failed. A program that does not compile, or uses a construct the harness refuses
(``scorers.harness.refused_constructs``), scores 0 with status ``compile_error``.
"""

from __future__ import annotations

import hmac
import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace

from scorers.harness import ERROR_CHARS, new_key, refused_binary, refused_constructs
from scorers.harness_python import PYTHON_HARNESS
from scorers.languages import BINARY_NAME, Toolchain, compile_program
from scorers.sandbox import ProcessResult, SandboxLimits, python_argv, run_process
from scorers.task import Task

_CPU_LIMIT_SIGNALS = (signal.SIGKILL, signal.SIGXCPU)

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
    """A program run against its tests. ``tests`` has one outcome per test, in order.

    ``rejected_lines``: report lines without the run's key (forged or garbage), dropped.
    ``events``: the authenticated events, in order (efficiency reads ``cost`` and pids).
    """

    status: str
    tests: tuple[TestOutcome, ...]
    wall_seconds: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0
    compile_diagnostics: str = ""
    rejected_lines: int = 0
    events: tuple[dict, ...] = ()

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


def run_python_tests(
    code: str, tests: Sequence[str], limits: SandboxLimits, *, profile: bool = False
) -> ExecutionResult:
    """Run ``tests`` against Python ``code`` in one sandboxed process.

    The tests and the run's key go to the harness on stdin, never into a file.
    """
    key = new_key()
    request = json.dumps({"key": key, "tests": list(tests), "profile": profile})
    process = run_process(
        python_argv("harness.py"),
        files=python_files(code),
        limits=limits,
        report_channel=True,
        stdin=request.encode(),
    )
    return result_from_events(process, len(tests), key)


def python_files(code: str) -> dict[str, str]:
    """The files of a Python run: the harness and the solution (the tests are not files)."""
    return {"harness.py": PYTHON_HARNESS, "solution.py": code}


def run_compiled_tests(
    toolchain: Toolchain,
    language: str,
    code: str,
    tests: Sequence[str],
    limits: SandboxLimits,
) -> ExecutionResult:
    """Compile (cached) and run ``tests`` against C++ or Rust ``code``."""
    refused = refused_constructs(language, code)
    if refused is not None:
        return _not_built(f"refused: {refused}", len(tests), refused)
    build = compile_program(toolchain, language, code, tests)
    if not build.ok:
        error = _first_error_line(build.diagnostics)
        return _not_built(error, len(tests), build.diagnostics)
    refused = refused_binary(language, build.binary)
    if refused is not None:
        return _not_built(f"refused: {refused}", len(tests), refused)
    key = new_key()
    process = run_process(
        [f"./{BINARY_NAME}"], files={BINARY_NAME: build.binary}, limits=limits,
        report_channel=True, stdin=key.encode(),
    )  # fmt: skip
    result = result_from_events(process, len(tests), key)
    return ExecutionResult(**{**result.__dict__, "compile_diagnostics": build.diagnostics})


def _not_built(error: str, n_tests: int, diagnostics: str) -> ExecutionResult:
    return ExecutionResult(
        status="compile_error",
        tests=tuple(TestOutcome(i, False, error[:ERROR_CHARS]) for i in range(n_tests)),
        wall_seconds=0.0,
        stdout="",
        stderr=diagnostics[-4000:],
        compile_diagnostics=diagnostics,
    )


def _first_error_line(diagnostics: str) -> str:
    for line in diagnostics.splitlines():
        if "error" in line:
            return line.strip()[:ERROR_CHARS]
    return (diagnostics.strip().splitlines() or ["compile error"])[0][:ERROR_CHARS]


def authenticated_events(report: str, key: str) -> tuple[list[dict | None], int]:
    """The report's events that carry ``key`` (None for one that cannot be read), in order,
    and the number of lines without the key. A line cut off by a kill is not an event."""
    events: list[dict | None] = []
    rejected = 0
    prefix = key + " "
    for line in report.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        if not hmac.compare_digest(line[: len(prefix)], prefix):
            rejected += 1
            continue
        events.append(_parse_event(line[len(prefix) :]))
    return events, rejected


def result_from_events(process: ProcessResult, n_tests: int, key: str) -> ExecutionResult:
    """Outcomes from the report channel's authenticated lines (see ``scorers/harness.py``)."""
    outcomes: dict[int, TestOutcome] = {}
    definition_event: dict | None = None
    done = False
    unreadable = False
    cpu_killed = False
    events, rejected = authenticated_events(process.report, key)
    for event in events:
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
            # A C++ test runs in its own forked child, which has its own RLIMIT_CPU (soft =
            # hard: SIGKILL). Nothing else in a run sends SIGKILL (the memory limit fails
            # allocations; the wall limit kills the whole run), so it names the CPU limit.
            cpu_killed = cpu_killed or event.get("signal") in _CPU_LIMIT_SIGNALS
        elif kind == "done":
            done = True
    if cpu_killed and process.limit is None:
        process = replace(process, limit="cpu", timed_out=True)
    result = _assemble(process, outcomes, n_tests, definition_event, done, unreadable)
    kept = tuple(e for e in events if e is not None)
    return ExecutionResult(**{**result.__dict__, "rejected_lines": rejected, "events": kept})


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
    elif not done or unreadable or process.returncode != 0:
        # The harness died mid-run (os._exit, a crash, a signal, its parent killed), exited
        # abnormally after its last report, or its report was corrupted.
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
