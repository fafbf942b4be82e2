"""The C++ infinite-loop verdict under load: it must be ``timeout`` every time (issue 8, item 8).

Runs the ``cpp-loop`` case of ``tests/test_sandbox_adversarial.py`` (same program, same
limits) N times in a row while a busy loop runs on every core, and prints passes/N. Before
the fix the verdict came from rusage racing the CPU limit and read ``failed`` in most runs on
a loaded machine. Now the CPU limit kills with SIGKILL (soft = hard RLIMIT_CPU) and the
C++ harness reports its per-test child "killed by signal 9"; the status is ``timeout`` once
``scorers/correctness.py`` reads that as the CPU limit. A script, not a test: about N x 1.5 s.

    python bench/stress_timeout.py --runs 50
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorers.correctness import run_compiled_tests
from scorers.languages import Toolchain, compile_program
from scorers.sandbox import SandboxLimits

# As in tests/test_sandbox_adversarial.py (SHORT and PROGRAMS["cpp-loop"]).
SHORT = SandboxLimits(wall_seconds=1.5, cpu_seconds=1.0, memory_mb=512, max_processes=64)
CODE = "void attack() { volatile int x = 0; for (;;) ++x; }"
TESTS = ["attack();"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    toolchain = Toolchain.discover()
    build = compile_program(toolchain, "cpp", CODE, TESTS)
    if not build.ok:
        sys.exit(f"stress_timeout: the C++ program did not compile:\n{build.diagnostics[-2000:]}")
    burner = [sys.executable, "-c", "while True: pass"]
    load = [subprocess.Popen(burner) for _ in range(os.cpu_count() or 1)]
    statuses: collections.Counter[str] = collections.Counter()
    killed = 0  # runs whose test child the kernel killed at the CPU limit (SIGKILL, soft = hard)
    by_limit = 0  # runs that ended by a limit, whether or not the status says so yet
    start = time.monotonic()
    try:
        for i in range(args.runs):
            result = run_compiled_tests(toolchain, "cpp", CODE, TESTS, SHORT)
            statuses[result.status] += 1
            child_killed = any(t.error == "killed by signal 9" for t in result.tests)
            killed += child_killed
            by_limit += result.status == "timeout" or child_killed
            if result.status != "timeout":
                errors = [t.error for t in result.tests]
                print(f"run {i}: {result.status} (tests: {errors}, cpu {result.cpu_seconds:.3f}s)")
    finally:
        for process in load:
            process.kill()
            process.wait()
    print(f"{len(load)} busy loops; {time.monotonic() - start:.0f}s; statuses {dict(statuses)}")
    print(f"test child killed at the CPU limit: {killed}/{args.runs}")
    print(f"ended by a limit (CPU kill of the test child, or a timeout): {by_limit}/{args.runs}")
    print(f"passes: {statuses['timeout']}/{args.runs}")


if __name__ == "__main__":
    main()
