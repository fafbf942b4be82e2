"""The reward: how a student program's score compares with the teacher's on the same task.

Pure functions, no I/O. Scores are in [0, 1]; see ``scorers/suite.py`` for how they are made.
"""

from __future__ import annotations

import math

REWARD_RULES = ("ratio", "difference", "absolute")


def compute_reward(
    student_score: float,
    teacher_score: float,
    *,
    rule: str = "ratio",
    teacher_floor: float = 0.05,
    cap: float = 2.0,
) -> float:
    """Reward for one student program against the teacher's program for the same task.

    Rules:

    * ``ratio`` (default): ``min(student_score / max(teacher_score, teacher_floor), cap)``.
      Matching the teacher gives 1.0; 0.85 against 0.92 gives 0.9239. The floor keeps the
      ratio finite when the teacher scores 0 (or nearly): then the reward is
      ``student_score / teacher_floor``, capped at ``cap``; a student that also scores 0
      gets 0. The cap bounds how much beating a weak teacher can be worth.
    * ``difference``: ``student_score - teacher_score``, in [-1, 1].
    * ``absolute``: ``student_score``; the teacher is ignored (its score is still validated).

    Raises ValueError naming the offending value if a score is outside [0, 1], the floor is
    outside (0, 1], the cap is not positive, or the rule is unknown.
    """
    for name, value in (("student_score", student_score), ("teacher_score", teacher_score)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 < teacher_floor <= 1.0:
        raise ValueError(f"teacher_floor must be in (0, 1], got {teacher_floor!r}")
    if not cap > 0.0:
        raise ValueError(f"cap must be > 0, got {cap!r}")
    if rule == "ratio":
        return min(student_score / max(teacher_score, teacher_floor), cap)
    if rule == "difference":
        return student_score - teacher_score
    if rule == "absolute":
        return float(student_score)
    raise ValueError(f"unknown reward rule {rule!r}; choose one of {', '.join(REWARD_RULES)}")
