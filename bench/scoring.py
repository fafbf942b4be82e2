"""Scoring throughput: the pool against one-at-a-time, and the sandbox's per-program overhead.

1. A batch of Python, C++ and Rust programs (the built-in reference solutions, each made
   unique with a comment so every C++/Rust sample is really compiled, as a student's would
   be) is scored with the full suite (all four criteria, against the teacher baseline),
   first one at a time, then on a ScoringPool with one worker per core. Printed: programs
   per second for both and the ratio pool / sequential (target on 2 cores: >= 1.7x).
2. The sandbox's overhead: median wall time of ``python -c pass`` through ``run_process``
   against the same command run bare with subprocess (target: under 10 ms extra on the
   non-root path). As root, rows follow for the non-root path (no pids cgroup) and for the
   portable init used where no C compiler exists (``scorers/sandbox_init.py``).

    python bench/scoring.py --per-language 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table
from rfai.tasks import load_tasks
from scorers.isolation import get_isolation
from scorers.languages import Toolchain
from scorers.pool import ScoringPool
from scorers.sandbox import SandboxLimits, run_process
from scorers.suite import ScoringSuite

WEIGHTS = {"correctness": 0.3, "code_quality": 0.3, "efficiency": 0.2, "documentation": 0.2}
COMMENT = {"python": "#", "cpp": "//", "rust": "//"}


def batch(per_language: int, tag: str) -> list[tuple]:
    samples = []
    for language in ("python", "cpp", "rust"):
        tasks = load_tasks(f"builtin:{language}")[:per_language]
        for i, task in enumerate(tasks):
            code = f"{task.reference_solution}\n{COMMENT[language]} sample {tag} {i}\n"
            samples.append((task, code))
    return samples


def baselines(suite: ScoringSuite, samples: list[tuple]) -> dict:
    return {t.task_id: suite.score_teacher(t, t.reference_solution) for t, _ in samples}


def sequential(suite: ScoringSuite, samples: list[tuple], teachers: dict) -> float:
    start = time.perf_counter()
    for task, code in samples:
        suite.score(task, code, baseline=teachers[task.task_id])
    return time.perf_counter() - start


def pooled(suite: ScoringSuite, samples: list[tuple], teachers: dict, workers: int) -> float:
    start = time.perf_counter()
    with ScoringPool(suite, workers) as pool:
        futures = [pool.submit(t, c, baseline=teachers[t.task_id]) for t, c in samples]
        for future in futures:
            future.result()
    return time.perf_counter() - start


def overhead(repeats: int) -> tuple[float, float]:
    argv = [sys.executable, "-I", "-S", "-c", "pass"]
    limits = SandboxLimits()
    bare, boxed = [], []
    for _ in range(repeats):  # alternate so drift hits both
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_process(argv, files={}, limits=limits)
        boxed.append(time.perf_counter() - start)
    return statistics.median(bare), statistics.median(boxed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-language", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    print(get_isolation().describe())
    with tempfile.TemporaryDirectory() as cache:
        suite = ScoringSuite(WEIGHTS, SandboxLimits(), Toolchain.discover(cache_dir=cache))
        suite.check_environment(["python", "cpp", "rust"])
        stamp = str(time.time_ns())
        teachers = baselines(suite, batch(args.per_language, "warm"))
        one = batch(args.per_language, stamp + "a")
        many = batch(args.per_language, stamp + "b")
        t_seq = sequential(suite, one, teachers)
        t_pool = pooled(suite, many, teachers, args.workers)
    n = len(one)
    rows = []
    bare, boxed = overhead(args.repeats)
    isolation = get_isolation()
    label = "this process" + (" (root: per-run pids cgroup)" if isolation.cgroup_root else "")
    rows.append([label, f"{bare * 1e3:.1f}", f"{boxed * 1e3:.1f}", f"{(boxed - bare) * 1e3:.1f}"])
    if isolation.cgroup_root is not None:
        # As root the kernel ignores RLIMIT_NPROC, so each run gets its own pids cgroup; a
        # non-root user (the usual case) gets the process limit from prlimit instead.
        isolation.cgroup_root = None
        bare, boxed = overhead(args.repeats)
        extra = (boxed - bare) * 1e3
        rows.append(
            ["non-root path (no cgroup)", f"{bare * 1e3:.1f}", f"{boxed * 1e3:.1f}", f"{extra:.1f}"]
        )
    if isolation.init is not None:
        # Without a C compiler the run's init is sh + mount + setsid + setpriv (5 execs).
        isolation.init, isolation.cgroup_root = None, None
        bare, boxed = overhead(args.repeats)
        extra = (boxed - bare) * 1e3
        label = "non-root, no C compiler (portable init)"
        rows.append([label, f"{bare * 1e3:.1f}", f"{boxed * 1e3:.1f}", f"{extra:.1f}"])
    print_table(
        f"scoring {n} programs ({args.per_language} each of Python, C++, Rust; full suite)",
        ["mode", "seconds", "programs/s"],
        [
            ["one at a time", f"{t_seq:.2f}", f"{n / t_seq:.2f}"],
            [f"pool ({args.workers} workers)", f"{t_pool:.2f}", f"{n / t_pool:.2f}"],
        ],
    )
    print(f"pool / one-at-a-time: {t_seq / t_pool:.2f}x  (target on 2 cores: >= 1.7x)")
    print_table(
        "per-program sandbox overhead (median of python -c pass)",
        ["launch path", "bare ms", "sandboxed ms", "extra ms"],
        rows,
    )
    print("target: under 10 ms extra")


if __name__ == "__main__":
    main()
