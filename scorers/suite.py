"""A weighted suite of scorers: one program in, one ``ProgramScore`` out.

Criteria: ``correctness`` (tests in the sandbox), ``code_quality``, ``efficiency`` and
``documentation`` (see their modules for the formulas). Each gives a value in [0, 1] or None
when it does not apply to the task (correctness without tests; efficiency without a teacher
baseline). The program's score is the weighted sum over the applicable criteria, with their
weights renormalised to sum to 1, so a missing criterion neither rewards nor punishes. A task
where no weighted criterion applies is a ``ScoringError``: there is no default score.

Efficiency compares with the teacher, so the teacher is scored first:

    teacher = suite.score_teacher(task, teacher_code)      # measures teacher.cost
    student = suite.score(task, student_code, baseline=teacher)

Against a baseline that passed its tests, a student that passes gets
``efficiency_score(student.cost, teacher.cost)`` and one that does not pass gets 0 (a wrong
program has no efficiency worth rewarding); without a usable baseline efficiency is None.
A passing student whose cost could not be had or trusted (tracing switched off, a refused
call, a malformed or forged count) also gets 0, with the reason in
``details["efficiency"]["reason"]``.
``score_teacher`` gives the teacher 1.0 (its cost against itself) when it passes.

Quality and documentation are credited in proportion to the fraction of tests passed (when
the task has tests): code that compiles but passes nothing gets 0 for them, like code that
does not compile, so tidy code that does nothing earns no reward.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scorers.correctness import CorrectnessScorer, ExecutionResult, TestOutcome
from scorers.documentation import DocumentationScorer
from scorers.efficiency import Cost, efficiency_score
from scorers.efficiency import measure as measure_cost_and_reason
from scorers.isolation import get_isolation
from scorers.languages import Toolchain, ToolchainError
from scorers.quality import QualityScorer
from scorers.redact import scrub_message
from scorers.sandbox import PYTHON, SandboxLimits
from scorers.task import Task

log = logging.getLogger("rfai.scorers")

# Static scorers, built with (limits, toolchain); correctness and efficiency are run by the
# suite itself because the others' results feed them.
KNOWN_SCORERS = {
    "correctness": CorrectnessScorer,
    "code_quality": QualityScorer,
    "documentation": DocumentationScorer,
    "efficiency": None,
}
# Only the tail of stderr is searched for an error line (``_stderr_error_line``).
STDERR_TAIL_CHARS = 2000
_ERROR_LINE = re.compile(
    r"\b\w*(?:Error|Exception)\b|panicked|fatal runtime error|terminate called|what\(\)|"
    r"Segmentation fault|Aborted|Killed|overflow"
)


@dataclass(frozen=True)
class ProgramScore:
    """One program's score and how it was made.

    ``criteria`` maps every weighted scorer to its value (None = not applicable); ``weights``
    holds the weights actually used, renormalised over the applicable criteria (sum 1).
    ``status`` is the correctness ExecutionResult's status, or ``"not_run"``.
    ``tests`` holds one outcome per test; ``cost``/``cost_unit`` the measured cost of a
    passing program (``scorers/efficiency.py``), the baseline for students' efficiency;
    ``details`` each criterion's parts and findings, for debugging a score.
    ``error`` is short and scrubbed (``scorers/redact.py``), fit for a published row; the
    raw messages stay in ``tests`` (for the CLI and debugging, never written to a row).
    """

    score: float
    criteria: dict[str, float | None]
    weights: dict[str, float]
    status: str
    tests_passed: int
    tests_total: int
    error: str | None
    tests: tuple[TestOutcome, ...] = ()
    cost: float | None = None
    cost_unit: str | None = None
    wall_seconds: float = 0.0
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain values, for the CLI and dataset rows."""
        return {
            "status": self.status,
            "student_score": self.score,
            "scores": self.criteria,
            "weights": self.weights,
            "tests_passed": self.tests_passed,
            "tests_total": self.tests_total,
            "tests": [{"index": t.index, "passed": t.passed, "error": t.error} for t in self.tests],
            "error": self.error,
            "cost": self.cost,
            "cost_unit": self.cost_unit,
            "wall_seconds": self.wall_seconds,
            "details": self.details,
        }


class ScoringError(RuntimeError):
    """A program could not be scored (e.g. no applicable criterion); names the task."""


class ScoringSuite:
    """Runs the weighted scorers on a program. Thread-safe: it holds no mutable state."""

    def __init__(
        self,
        weights: Mapping[str, float],
        limits: SandboxLimits,
        toolchain: Toolchain | None = None,
    ) -> None:
        unknown = sorted(set(weights) - set(KNOWN_SCORERS))
        if unknown:
            raise ValueError(
                f"unknown scorer(s) {', '.join(map(repr, unknown))} in weights; "
                f"known scorers: {', '.join(KNOWN_SCORERS)}"
            )
        for name, weight in weights.items():
            if not weight >= 0:
                raise ValueError(f"weight for scorer {name!r} must be >= 0, got {weight!r}")
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"at least one scorer weight must be > 0, got {dict(weights)}")
        self.weights = {name: float(w) for name, w in weights.items() if w > 0}
        self.limits = limits
        self.toolchain = toolchain or Toolchain.discover()
        self._correctness = CorrectnessScorer(limits, self.toolchain)
        self._static = {
            name: KNOWN_SCORERS[name](limits, self.toolchain)
            for name in self.weights
            if name not in ("correctness", "efficiency")
        }

    @classmethod
    def from_config(cls, scoring: Any) -> ScoringSuite:
        """The suite an ``rfai.config.ScoringConfig`` describes (trainer and CLI alike)."""
        limits = SandboxLimits(
            wall_seconds=scoring.wall_seconds,
            cpu_seconds=scoring.cpu_seconds,
            memory_mb=scoring.memory_mb,
        )
        toolchain = Toolchain.discover(
            cxx=scoring.cxx,
            cxx_flags=scoring.cxx_flags,
            rustc=scoring.rustc,
            rust_flags=scoring.rust_flags,
            cache_dir=scoring.cache_dir or None,
            cache_mb=scoring.compile_cache_mb,
        )
        return cls(scoring.weights, limits, toolchain)

    def check_environment(self, languages: Iterable[str]) -> str:
        """Fail now, naming what to install, if a compiler the tasks need is missing, or if
        the sandbox would hide it (or the interpreter) from its runs (installed under /tmp).

        Also sets up (and logs) the sandbox's isolation. Returns a one-line description of
        it. Raises ``scorers.languages.ToolchainError``.
        """
        languages = sorted(set(languages))
        self.toolchain.check(languages)
        compiled = [lang for lang in languages if lang != "python"]
        _check_visible_in_runs(self._executables(languages, compiled))
        if "efficiency" in self.weights and compiled and self.toolchain.valgrind is None:
            log.warning(
                "valgrind not found: efficiency of %s programs falls back to CPU time, "
                "which is noisy; install valgrind for instruction counts",
                "/".join(compiled),
            )
        return get_isolation().describe()

    def _executables(self, languages: list[str], compiled: list[str]) -> dict[str, str]:
        """What sandboxed runs will execute for ``languages``, by the config key that sets it."""
        found = {"the Python interpreter (sys.executable)": PYTHON} if "python" in languages else {}
        if "cpp" in languages and self.toolchain.cxx:
            found["scoring.cxx"] = self.toolchain.cxx
        if "rust" in languages and self.toolchain.rustc:
            found["scoring.rustc"] = self.toolchain.rustc
        if "efficiency" in self.weights and compiled and self.toolchain.valgrind:
            found["valgrind"] = self.toolchain.valgrind
        return found

    def score(self, task: Task, code: str, *, baseline: ProgramScore | None = None) -> ProgramScore:
        """Score ``code``; ``baseline`` is the teacher's ProgramScore (for efficiency)."""
        usable = baseline is not None and baseline.cost is not None
        return self._score(task, code, baseline, measure=usable)

    def _score(
        self,
        task: Task,
        code: str,
        baseline: ProgramScore | None,
        *,
        measure: bool,
        teacher: bool = False,
    ) -> ProgramScore:
        """`teacher`: the program is the baseline itself, so a passing one with a measured
        cost gets efficiency 1.0 (its cost against itself)."""
        criteria: dict[str, float | None] = {}
        details: dict[str, object] = {}
        execution: ExecutionResult | None = None
        if task.tests and ("correctness" in self.weights or "efficiency" in self.weights):
            value, execution = self._correctness.score(task, code)
            if "correctness" in self.weights:
                criteria["correctness"] = value
        elif "correctness" in self.weights:
            criteria["correctness"] = None
        for name, scorer in self._static.items():
            criteria[name], details[name] = scorer.score(task, code)
        if not code.strip() or (execution is not None and execution.status == "compile_error"):
            # A program that does not compile (or parse) has no quality or documentation to
            # credit; otherwise comment-shaped noise would earn reward on its own.
            for name in self._static:
                if criteria[name] is not None:
                    criteria[name] = 0.0
                    details[name] = {"reason": "program does not compile"}
        elif execution is not None and execution.tests_passed < len(task.tests):
            # Quality and documentation count in proportion to the tests passed: a program that
            # compiles but passes nothing (a bare name, a docstring) has none worth rewarding,
            # or a student would learn to write tidy code that does nothing.
            passed = execution.tests_passed / len(task.tests)
            for name in self._static:
                if criteria[name] is not None:
                    own = details.get(name) or {}
                    details[name] = {"ungated_value": criteria[name], **own}
                    details[name]["tests_passed_fraction"] = passed
                    criteria[name] = criteria[name] * passed
        cost: Cost | None = None
        if "efficiency" in self.weights:
            passed = execution is not None and execution.status == "passed"
            reason = None
            if passed and measure:
                cost, reason = measure_cost_and_reason(task, code, self.limits, self.toolchain)
            if teacher:
                criteria["efficiency"] = 1.0 if passed and cost is not None else None
            else:
                criteria["efficiency"] = _efficiency(cost, passed, baseline)
            if reason is not None:
                # Why the count was not had or not trusted (a program may steer an audit
                # event's name into it, hence scrubbed like any message it controls).
                details["efficiency"] = {"reason": scrub_message(reason)}
        return self._combine(task, code, criteria, details, execution, cost)

    def score_teacher(self, task: Task, code: str) -> ProgramScore:
        """Score the teacher's program; its efficiency is 1.0 against itself when it passes
        and its cost was measured (so `{efficiency: 1}` alone is a usable weighting)."""
        return self._score(task, code, None, measure=True, teacher=True)

    def _weighted(
        self, task: Task, criteria: dict[str, float | None]
    ) -> tuple[float, dict[str, float]]:
        applicable = {name: self.weights[name] for name, v in criteria.items() if v is not None}
        if not applicable:
            raise ScoringError(
                f"task {task.task_id!r} ({task.source}): no weighted criterion applies "
                f"(weights {self.weights}); e.g. correctness needs tests in the task"
            )
        total = sum(applicable.values())
        used = {name: weight / total for name, weight in applicable.items()}
        score = sum(used[name] * criteria[name] for name in used)
        return min(max(score, 0.0), 1.0), used  # the clamp guards float round-off only

    def _combine(
        self,
        task: Task,
        code: str,
        criteria: dict[str, float | None],
        details: dict[str, object],
        execution: ExecutionResult | None,
        cost: Cost | None,
    ) -> ProgramScore:
        score, used = self._weighted(task, criteria)
        return ProgramScore(
            score=score,
            criteria=criteria,
            weights=used,
            status=execution.status if execution is not None else "not_run",
            tests_passed=execution.tests_passed if execution is not None else 0,
            tests_total=len(task.tests),
            error=_error_summary(execution, code),
            tests=execution.tests if execution is not None else (),
            cost=cost.value if cost is not None else None,
            cost_unit=cost.unit if cost is not None else None,
            wall_seconds=execution.wall_seconds if execution is not None else 0.0,
            details=details,
        )


def _check_visible_in_runs(executables: Mapping[str, str]) -> None:
    """Raise ToolchainError for a program the sandbox would hide from its own runs."""
    isolation = get_isolation()
    for what, path in executables.items():
        hidden = isolation.hides(path)
        if hidden is not None:
            raise ToolchainError(
                f"{what} is {os.path.realpath(path)}, under {hidden}, which every sandboxed "
                f"run sees replaced by a private directory, so the run could not execute it; "
                "install it (or point the setting at a copy) outside /tmp, /var/tmp, /run "
                "and /dev/shm"
            )


def _efficiency(cost: Cost | None, passed: bool, baseline: ProgramScore | None) -> float | None:
    if baseline is None or baseline.cost is None or baseline.status != "passed":
        return None  # nothing to compare with
    if not passed or cost is None:
        return 0.0  # wrong, or no trusted count (the reason is in details["efficiency"])
    if cost.unit != baseline.cost_unit:
        return None
    return efficiency_score(cost, Cost(baseline.cost, baseline.cost_unit))


def _error_summary(execution: ExecutionResult | None, code: str) -> str | None:
    """A short, scrubbed ``"[status: ]Class: message"`` for the dataset row: never stderr.

    A program controls its exception messages, its stderr and (through ``#include`` or
    ``include!``) what its compiler's diagnostics quote, so everything taken from them goes
    through ``scorers.redact.scrub_message``; the prefixes are the scorer's own words.
    """
    if execution is None:
        return "empty program" if not code.strip() else None
    if execution.status in ("passed", "failed"):
        return _test_error(execution)
    if execution.status == "compile_error":
        diagnostic = next((o.error for o in execution.tests if o.error), None)
        return f"compile_error: {scrub_message(diagnostic) or 'no diagnostics'}"
    reached = _test_error(execution)
    if reached is None or reached.endswith(": not run"):
        line = _stderr_error_line(execution.stderr)
        reached = scrub_message(line) if line else reached
    return f"{execution.status}: {reached}" if reached else execution.status


def _test_error(execution: ExecutionResult) -> str | None:
    for outcome in execution.tests:
        if not outcome.passed:
            return f"test {outcome.index}: {scrub_message(outcome.error) or 'failed'}"
    return None


def _stderr_error_line(stderr: str) -> str | None:
    """The last line of stderr that names an error (a class, a panic, an abort), if any."""
    for line in reversed(stderr[-STDERR_TAIL_CHARS:].splitlines()):
        if _ERROR_LINE.search(line):
            return line
    return None
