"""Efficiency: a program's cost on the task's tests, relative to the teacher's on the same tests.

The cost is counted, not timed, so that scoring the same program twice gives the same number:

* Python: lines executed while the solution is defined and while the tests run (the
  harness's profile mode, ``sys.settrace``; one more per function call), in every frame
  that is not the harness's or a test snippet's (code objects, not file names, decide, so
  code the solution compiles under another name counts). The harness's audit hook refuses
  ``sys.settrace``/``setprofile``; a run where the count cannot be trusted (a refused call
  tried, a fork, threads left running) gets no cost, hence efficiency 0, with the reason.
* C++ and Rust: instructions executed inside the test functions (and everything they call),
  counted by valgrind's callgrind with ``--toggle-collect`` on the generated test functions,
  so process start-up and the harness are excluded. C++ runs each test in a process of its
  own that starts the program (``scorers/harness_cpp.py``), so each test also counts the
  solution's static initialization (``_GLOBAL__sub_I_*``, from the harness's
  ``count_start()`` on: namespace-scope objects, ``inline`` and template variables); a
  table filled there costs what it costs in a function-local static. ``<iostream>``'s
  initialization is the harness's, before the count, for every program alike; a
  ``constructor`` attribute is refused. Rust runs no code of the program's before ``main``
  (``#[link_section]`` is refused). Work in a thread other than the tests' is not collected
  by callgrind: a run that starts one gets no cost. Client requests (inline asm, valgrind
  headers) are refused at build time; only the dump files of the processes the harness
  reported (with the run's key) are read, and any other, missing or altered file gives no
  cost. Native code can still rewrite a dump file in place before it is read (not covered).
  The build is unoptimised (``-O0`` / ``opt-level=0``): optimisation would fold a test's
  constant call into its answer.
* Without valgrind, compiled programs fall back to the CPU time of the whole run, the
  minimum over ``CPU_REPEATS`` runs (timer resolution and start-up make this noisy: the
  0.02 repeatability of the other measures is not guaranteed then).

Parsing never raises: anything malformed in a run is a missing cost with a reason
(``measure``; the suite puts it in ``ProgramScore.details["efficiency"]``). Only programs that
pass all their tests are measured (a wrong answer can be arbitrarily cheap). The score maps
the ratio of the two costs to [0, 1]:

    efficiency = min(1, sqrt(teacher_cost / student_cost))

Matching or beating the teacher gives 1; twice the teacher's cost 0.71; 4x 0.5; 100x 0.1.
The square root keeps a constant-factor difference from dominating the reward while an
asymptotically worse algorithm (whose ratio grows with the input) still loses clearly.
Efficiency is not applicable (None) when there is no teacher cost to compare with: the
teacher's program failed, or the caller passed no baseline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from scorers.correctness import result_from_events, run_python_tests
from scorers.harness import new_key, refused_binary, refused_constructs
from scorers.harness_cpp import cpp_count_start
from scorers.languages import BINARY_NAME, Toolchain, compile_program
from scorers.sandbox import SandboxLimits, run_process
from scorers.task import Task

CPU_REPEATS = 3
# Counting slows a program down (tracing ~10x, callgrind ~50x): give it room.
PROFILE_SLOWDOWN = 10.0
_CALLGRIND_TOTAL = re.compile(r"^(summary|totals): (\d+)$")


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


def measure(
    task: Task, code: str, limits: SandboxLimits, toolchain: Toolchain
) -> tuple[Cost | None, str | None]:
    """``(cost, None)``, or ``(None, reason)`` when the cost could not be (trusted to be) had."""
    limits = profile_limits(limits)
    if task.language == "python":
        result = run_python_tests(code, task.tests, limits, profile=True)
        if result.status != "passed":
            return None, f"the profiled run did not pass: {result.status}"
        costs = [e for e in result.events if e.get("event") == "cost"]
        if len(costs) != 1:
            return None, "the profiled run reported no cost"
        lines, trusted = costs[0].get("lines"), costs[0].get("trusted")
        if type(lines) is not int or lines < 0 or trusted is not True:
            return None, f"untrusted count: {str(costs[0].get('reason'))[:200]}"
        return Cost(float(lines), "lines"), None
    refused = refused_constructs(task.language, code)
    if refused is not None:
        return None, f"refused: {refused}"
    build = compile_program(toolchain, task.language, code, task.tests, profile=True)
    if not build.ok:
        return None, "the profile build failed"
    refused = refused_binary(task.language, build.binary)
    if refused is not None:
        return None, f"refused: {refused}"
    files = {BINARY_NAME: build.binary}
    if toolchain.valgrind is None:
        argv = [f"./{BINARY_NAME}"]
        runs = [_keyed_run(argv, files, limits, len(task.tests)) for _ in range(CPU_REPEATS)]
        if any(r.status != "passed" for r in runs):
            return None, "the profiled run did not pass"
        return Cost(min(r.cpu_seconds for r in runs), "cpu_seconds"), None
    return _callgrind_cost(task, code, files, limits, toolchain.valgrind)


def _keyed_run(argv: list[str], files: dict, limits: SandboxLimits, n_tests: int):
    key = new_key()
    process = run_process(argv, files=files, limits=limits, report_channel=True, stdin=key.encode())
    return result_from_events(process, n_tests, key)


def _callgrind_cost(
    task: Task, code: str, files: dict, limits: SandboxLimits, valgrind: str
) -> tuple[Cost | None, str | None]:
    # Callgrind writes one file per thread of each process (C++ forks per test) into cg/, a
    # directory the program could also write. Only the files of the processes the harness
    # reported (with the run's key) are read, each must be there exactly once with one
    # total, and no other file may appear: a program that forks, or writes or deletes files
    # there, gets None; one that starts a thread (whose work callgrind does not collect)
    # gets None with that reason.
    script = (
        'mkdir cg && "$@" >/dev/null 2>valgrind.log; status=$?; '
        'for f in cg/*; do echo "file $f"; grep -E "^(summary|totals):" "$f"; done; exit $status'
    )
    if task.language == "rust":
        collect = ["--toggle-collect=*::rfai_test_????"]
    else:  # the solution's static initialization, from the harness's mark on, and each test
        collect = [
            "--toggle-collect=*rfai_test_????()",
            "--toggle-collect=_GLOBAL__sub_I_*",
            f"--zero-before={cpp_count_start(code)}",
        ]
    argv = [
        "sh", "-c", script, "profile", valgrind, "--tool=callgrind", *collect,
        "--separate-threads=yes", "--callgrind-out-file=cg/out.%p", f"./{BINARY_NAME}",
    ]  # fmt: skip
    result = _keyed_run(argv, files, limits, len(task.tests))
    if result.status != "passed":
        return None, f"the profiled run did not pass: {result.status}"
    pids = {e.get("pid") for e in result.events if e.get("event") in ("test", "done")}
    if task.language == "rust":
        pids = {e.get("pid") for e in result.events if e.get("event") == "done"}
    pids = {pid for pid in pids if type(pid) is int}
    counts: dict[str, list[tuple[str, int]]] = {}
    current = None
    for line in result.stdout.splitlines():
        if line.startswith("file "):
            current = line[5:]
            counts[current] = []
            continue
        match = _CALLGRIND_TOTAL.match(line)
        if match and current is not None:
            counts[current].append((match.group(1), int(match.group(2))))
    return _main_thread_total(counts, pids)


def _main_thread_total(
    counts: dict[str, list[tuple[str, int]]], pids: set[int]
) -> tuple[Cost | None, str | None]:
    """The cost from callgrind's files (name -> its ``summary:`` and ``totals:`` lines) for
    the reported ``pids``.

    With ``--separate-threads=yes`` each process has ``out.<pid>-01`` for its first thread
    (the one that runs the tests), ``-02``... for any thread it started, and an empty
    ``out.<pid>``. The count is the summary (callgrind's event counter). ``totals`` (the sum
    of the cost lines) equals it, or exceeds it by what ``--zero-before`` leaves in blocks
    that ran both before and after it (168 instructions a test for a solution using
    std::istringstream): anything else is an altered file.
    """
    names = set(counts)
    threads = {f"cg/out.{pid}-{n:02d}" for pid in pids for n in range(2, 100)}
    if pids and names & threads:
        return None, "the program started a thread: callgrind counts only the tests' thread"
    counted = {f"cg/out.{pid}-01" for pid in pids}
    empty = {f"cg/out.{pid}" for pid in pids}
    if not pids or not counted <= names or not names <= counted | empty:
        return None, "callgrind output does not match the processes the harness ran"
    if any(counts[name] for name in names & empty):
        return None, "callgrind output was altered"
    summaries = []
    for name in counted:
        lines = counts[name]
        if [label for label, _ in lines] != ["summary", "totals"] or lines[1][1] < lines[0][1]:
            return None, "callgrind output was altered"
        summaries.append(lines[0][1])
    return Cost(float(sum(summaries)), "instructions"), None
