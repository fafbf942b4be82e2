"""A weighted suite of scorers: one program in, one ``ProgramScore`` out.

Each scorer returns a value in [0, 1] or None when it does not apply to the task (correctness
without tests, for example). The program's score is the weighted sum over the applicable
criteria, with their weights renormalised to sum to 1, so a missing criterion neither rewards
nor punishes. A task where no weighted criterion applies is a ``ScoringError``: there is no
default score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rfai.tasks import Task
from scorers.correctness import CorrectnessScorer, ExecutionResult
from scorers.sandbox import SandboxLimits

# The scorers of this slice; quality, efficiency and documentation come in later issues.
KNOWN_SCORERS = {"correctness": CorrectnessScorer}
STDERR_TAIL_CHARS = 300


@dataclass(frozen=True)
class ProgramScore:
    """One program's score and how it was made.

    ``criteria`` maps every weighted scorer to its value (None = not applicable); ``weights``
    holds the weights actually used, renormalised over the applicable criteria (sum 1).
    ``status`` is the correctness ExecutionResult's status, or ``"not_run"``.
    """

    score: float
    criteria: dict[str, float | None]
    weights: dict[str, float]
    status: str
    tests_passed: int
    tests_total: int
    error: str | None


class ScoringError(RuntimeError):
    """A program could not be scored (e.g. no applicable criterion); names the task."""


class ScoringSuite:
    """Runs the weighted scorers on a program. Thread-safe: it holds no mutable state."""

    def __init__(self, weights: Mapping[str, float], limits: SandboxLimits) -> None:
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
        self._scorers = {name: KNOWN_SCORERS[name](limits) for name in self.weights}

    def score(self, task: Task, code: str) -> ProgramScore:
        criteria: dict[str, float | None] = {}
        execution: ExecutionResult | None = None
        for name, scorer in self._scorers.items():
            value, result = scorer.score(task, code)
            criteria[name] = value
            if name == "correctness":
                execution = result
        applicable = {name: self.weights[name] for name, v in criteria.items() if v is not None}
        if not applicable:
            raise ScoringError(
                f"task {task.task_id!r} ({task.source}): no weighted criterion applies "
                f"(weights {self.weights}); e.g. correctness needs tests in the task"
            )
        total = sum(applicable.values())
        used = {name: weight / total for name, weight in applicable.items()}
        score = sum(used[name] * criteria[name] for name in used)
        return ProgramScore(
            score=min(max(score, 0.0), 1.0),  # guards float round-off only
            criteria=criteria,
            weights=used,
            status=execution.status if execution is not None else "not_run",
            tests_passed=execution.tests_passed if execution is not None else 0,
            tests_total=len(task.tests),
            error=_error_summary(execution, code),
        )


def _error_summary(execution: ExecutionResult | None, code: str) -> str | None:
    if execution is None:
        return "empty program" if not code.strip() else None
    if execution.status in ("passed", "failed"):
        return execution.first_error
    tail = execution.stderr.strip()[-STDERR_TAIL_CHARS:]
    return f"{execution.status}: {tail or execution.first_error}"
