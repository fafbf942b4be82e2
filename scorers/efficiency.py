"""Efficiency: a program's cost on the task's tests, relative to the teacher's on the same tests.

The cost is counted, not timed, so that scoring the same program twice gives the same number:

* Python: lines of the solution executed while it is defined and while the tests run (the
  harness's ``--profile`` mode, ``sys.settrace``; one more per function call). Lines of
  the test snippets themselves are not counted. Threads the program starts are not traced.
* C++ and Rust: instructions executed inside the test functions (and everything they call),
  counted by valgrind's callgrind with ``--toggle-collect`` on the generated test functions,
  so process start-up, the runtime and libtest are excluded. The build is unoptimised
  (``-O0`` / ``opt-level=0``): optimisation would fold a test's constant call into its answer.
* Without valgrind, compiled programs fall back to the CPU time of the whole run, the
  minimum over ``CPU_REPEATS`` runs (timer resolution and start-up make this noisy: the
  0.02 repeatability of the other measures is not guaranteed then).

Only programs that pass all their tests are measured (a wrong answer can be arbitrarily
cheap). The score maps the ratio of the two costs to [0, 1]:

    efficiency = min(1, sqrt(teacher_cost / student_cost))

Matching or beating the teacher gives 1; twice the teacher's cost 0.71; 4x 0.5; 100x 0.1.
The square root keeps a constant-factor difference from dominating the reward while an
asymptotically worse algorithm (whose ratio grows with the input) still loses clearly.
Efficiency is not applicable (None) when there is no teacher cost to compare with: the
teacher's program failed, or the caller passed no baseline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace

from rfai.tasks import Task
from scorers.correctness import python_files
from scorers.languages import BINARY_NAME, Toolchain, compile_program
from scorers.sandbox import SandboxLimits, python_argv, run_process

CPU_REPEATS = 3
# Counting slows a program down (tracing ~10x, callgrind ~50x): give it room.
PROFILE_SLOWDOWN = 10.0
_CALLGRIND_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Cost:
    """What one run of the tests cost. ``unit``: ``lines``, ``instructions`` or ``cpu_seconds``."""

    value: float
    unit: str


def efficiency_score(student: Cost, teacher: Cost) -> float:
    """``min(1, sqrt(teacher / student))``; a zero-cost student matches any teacher."""
    if student.unit != teacher.unit:
        raise ValueError(f"cannot compare costs in {student.unit} with {teacher.unit}")
    if student.value <= 0:
        return 1.0
    return min(1.0, math.sqrt(max(teacher.value, 0.0) / student.value))


def profile_limits(limits: SandboxLimits) -> SandboxLimits:
    return replace(
        limits,
        wall_seconds=limits.wall_seconds * PROFILE_SLOWDOWN,
        cpu_seconds=limits.cpu_seconds * PROFILE_SLOWDOWN,
        memory_mb=max(limits.memory_mb, 4096),  # valgrind reserves address space up front
        max_open_files=max(limits.max_open_files, 256),
    )


def measure_cost(task: Task, code: str, limits: SandboxLimits, toolchain: Toolchain) -> Cost | None:
    """The cost of running the task's tests against ``code``; None if the run failed."""
    limits = profile_limits(limits)
    if task.language == "python":
        process = run_process(
            [*python_argv("harness.py"), "--profile"],
            files=python_files(code, task.tests),
            limits=limits,
            report_channel=True,
        )
        for line in process.report.splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "cost" and not process.timed_out:
                return Cost(float(event["lines"]), "lines")
        return None
    build = compile_program(toolchain, task.language, code, task.tests, profile=True)
    if not build.ok:
        return None
    args = ["--test-threads=1", "rfai_test_"] if task.language == "rust" else []
    files = {BINARY_NAME: build.binary}
    if toolchain.valgrind is None:
        runs = [run_process([f"./{BINARY_NAME}", *args], files=files, limits=limits)]
        runs += [run_process([f"./{BINARY_NAME}", *args], files=files, limits=limits)]
        runs += [run_process([f"./{BINARY_NAME}", *args], files=files, limits=limits)]
        if any(r.returncode != 0 or r.timed_out for r in runs):
            return None
        return Cost(min(r.cpu_seconds for r in runs), "cpu_seconds")
    script = (
        'mkdir cg && "$@" >/dev/null 2>valgrind.log; status=$?; '
        'cat cg/* | grep -E "^(summary|totals):"; exit $status'
    )
    # Exactly the generated test functions: a nested match (Rust's test closure) would
    # toggle collection off again.
    pattern = "*::rfai_test_????" if task.language == "rust" else "rfai_test_????()"
    valgrind = [
        toolchain.valgrind, "--tool=callgrind", f"--toggle-collect={pattern}",
        "--callgrind-out-file=cg/out.%p", f"./{BINARY_NAME}", *args,
    ]  # fmt: skip
    process = run_process(["sh", "-c", script, "profile", *valgrind], files=files, limits=limits)
    if process.returncode != 0 or process.timed_out:
        return None
    # One file per process (C++ forks per test); "summary" and "totals" repeat the same sum.
    totals = [int(m.group(1)) for m in _CALLGRIND_TOTAL.finditer(process.stdout)]
    return Cost(sum(totals) / 2, "instructions") if totals else None
