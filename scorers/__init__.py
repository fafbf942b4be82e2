"""Scoring generated programs: the sandbox, the scorers, the weighted suite, the reward."""

from scorers.correctness import CorrectnessScorer, ExecutionResult, TestOutcome, run_python_tests
from scorers.efficiency import Cost, efficiency_score
from scorers.languages import Toolchain, ToolchainError
from scorers.pool import ScoringPool
from scorers.reward import REWARD_RULES, compute_reward
from scorers.sandbox import ProcessResult, SandboxLimits, run_process
from scorers.suite import KNOWN_SCORERS, ProgramScore, ScoringError, ScoringSuite
from scorers.validation import validate_tasks

__all__ = [
    "KNOWN_SCORERS",
    "REWARD_RULES",
    "CorrectnessScorer",
    "Cost",
    "ExecutionResult",
    "ProcessResult",
    "ProgramScore",
    "SandboxLimits",
    "ScoringError",
    "ScoringPool",
    "ScoringSuite",
    "TestOutcome",
    "Toolchain",
    "ToolchainError",
    "compute_reward",
    "efficiency_score",
    "run_process",
    "run_python_tests",
    "validate_tasks",
]
