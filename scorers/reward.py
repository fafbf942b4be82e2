"""The reward: how a student program's score compares with the teacher's on the same task.

Pure functions, no I/O. Scores are in [0, 1]; see ``scorers/suite.py`` for how they are made.

How the teacher reaches the advantage (``rfai.advantages``): every sample of a group shares the
teacher's score T. Under ``scale_rewards: group`` the ``ratio`` rule divides the group's rewards
by one constant max(T, teacher_floor) and ``difference`` subtracts one constant; centring and
dividing by the group's std remove both (up to ``advantage_eps``): student scores
[.2, .5, .6, .9] get advantages [-1.21, -0.17, 0.17, 1.21] whether T is 0.95 or 0.9. The
teacher acts only where students beat it by enough that ``soft_cap`` bends their ratio (above
cap / 2, i.e. above T under the default cap 2: T = 0.5 gives [-1.36, -0.01, 0.37, 1.00], gains
over the teacher count less), and through the efficiency scorer's teacher baseline.
Under ``batch`` the mean is still the group's but the std is the whole batch's: with
``ratio`` a group's advantages scale with 1 / max(T, teacher_floor), so a task whose teacher
scored low weighs more than one whose teacher scored high; with ``difference`` the teacher
cancels within the group, and the spread of teacher scores across tasks only enlarges the
shared std, shrinking every advantage of the batch alike. Under ``none`` there is no std:
``ratio`` advantages are the student's centred scores divided by max(T, teacher_floor);
``difference`` advantages are the centred student scores, teacher-free. ``absolute`` ignores
the teacher under every choice.
"""

from __future__ import annotations

import math

REWARD_RULES = ("ratio", "difference", "absolute")


def soft_cap(ratio: float, cap: float) -> float:
    """``ratio`` up to ``cap / 2``, then ``cap - cap**2 / (4 * ratio)``: below ``cap``, never equal.

    A hard ``min(ratio, cap)`` gave every student that beat a weak teacher by more than ``cap``
    the same reward: with teacher score 0.1 and cap 2, students scoring 0.2 ... 0.9 all got
    2.0, a zero-variance group, and no gradient. This bound is strictly increasing, so it keeps
    their order, and it is the identity on ``[0, cap / 2]``, so every ratio up to matching the
    teacher (1.0 under the default cap 2) is the plain ratio (0.85 / 0.92 stays 0.9239).
    Above the knee ``h = cap / 2`` the curve ``cap - h**2 / ratio`` meets the identity with the
    same value (h) and slope (1) and approaches ``cap`` like ``1 / ratio``. Not
    ``cap * tanh(ratio / cap)``: it bends small ratios too (0.9239 would become 0.864), and
    its ``1 - 2 exp(-2x)`` rounds to exactly 1.0 in float64 once x > 19.1, which ties students
    again (cap 2, teacher_floor 0.01, a teacher scoring 0: every student above 0.39).
    Cap 2: ratios 2, 3, 5, 9, 20 give 1.5, 1.667, 1.8, 1.889, 1.95.
    """
    knee = cap / 2.0
    if ratio <= knee:
        return ratio
    return cap - knee * knee / ratio


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

    * ``ratio`` (default): ``soft_cap(student_score / max(teacher_score, teacher_floor), cap)``.
      Matching the teacher gives 1.0; 0.85 against 0.92 gives 0.9239. The floor keeps the
      ratio finite when the teacher scores 0 (or nearly): then the ratio is
      ``student_score / teacher_floor``; a student that also scores 0 gets 0. ``soft_cap``
      (below) bounds how much beating a weak teacher can be worth while keeping every
      distinction between students.
    * ``difference``: ``student_score - teacher_score``, in [-1, 1].
    * ``absolute``: ``student_score``; the teacher is ignored (its score is still validated).

    Every rule is strictly increasing in ``student_score`` for a fixed teacher score, so two
    students of one task never get the same reward unless they scored the same.

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
        return soft_cap(student_score / max(teacher_score, teacher_floor), cap)
    if rule == "difference":
        return student_score - teacher_score
    if rule == "absolute":
        return float(student_score)
    raise ValueError(f"unknown reward rule {rule!r}; choose one of {', '.join(REWARD_RULES)}")
