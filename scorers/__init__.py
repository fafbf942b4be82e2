"""Scoring generated programs: the sandbox, the scorers, the weighted suite, the reward."""

from scorers.correctness import CorrectnessScorer, ExecutionResult, TestOutcome, run_python_tests
from scorers.pool import ScoringPool
from scorers.reward import REWARD_RULES, compute_reward
from scorers.sandbox import ProcessResult, SandboxLimits, run_process
from scorers.suite import KNOWN_SCORERS, ProgramScore, ScoringError, ScoringSuite

__all__ = [
    "KNOWN_SCORERS",
    "REWARD_RULES",
    "CorrectnessScorer",
    "ExecutionResult",
    "ProcessResult",
    "ProgramScore",
    "SandboxLimits",
    "ScoringError",
    "ScoringPool",
    "ScoringSuite",
    "TestOutcome",
    "compute_reward",
    "run_process",
    "run_python_tests",
]
