"""compute_reward against hand-computed values; each expected number derived in a comment."""

import itertools
import math

import mlx.core as mx
import pytest

from rfai.advantages import group_advantages
from scorers.reward import REWARD_RULES, compute_reward, soft_cap


def test_ratio_documented_example():
    # 0.85 / max(0.92, 0.05) = 0.85 / 0.92 = 0.9239130..., the README's 0.924.
    assert compute_reward(0.85, 0.92) == pytest.approx(0.9239, abs=1e-4)
    assert round(compute_reward(0.85, 0.92), 3) == 0.924


def test_ratio_matching_the_teacher_is_one():
    # 0.6 / 0.6 = 1.0
    assert compute_reward(0.6, 0.6) == pytest.approx(1.0)


def test_ratio_zero_teacher_uses_the_floor():
    # Teacher 0 -> denominator max(0, 0.05) = 0.05; 0.04 / 0.05 = 0.8, below the knee cap/2 = 1.
    assert compute_reward(0.04, 0.0) == pytest.approx(0.8)
    # Teacher 0.01 is under the floor too: 0.04 / 0.05 = 0.8 again.
    assert compute_reward(0.04, 0.01) == pytest.approx(0.8)
    # Both zero: 0 / 0.05 = 0, not a division error.
    assert compute_reward(0.0, 0.0) == 0.0


def test_ratio_is_soft_capped():
    # soft_cap with cap 2 (knee h = cap / 2 = 1): the ratio up to 1, then 2 - 1 / ratio.
    # Teacher 0 -> 0.5 / 0.05 = 10 -> 2 - 1/10 = 1.9 (the hard cap gave 2.0).
    assert compute_reward(0.5, 0.0) == pytest.approx(1.9)
    # 1.0 / 0.05 = 20 -> 2 - 1/20 = 1.95: finite, below the cap, above the 0.5 student.
    assert compute_reward(1.0, 0.0) == pytest.approx(1.95)
    # 0.9 / 0.3 = 3 -> 2 - 1/3 = 1.6667. Cap 5 (h = 2.5): 5 - 2.5**2 / 3 = 5 - 2.0833 = 2.9167.
    assert compute_reward(0.9, 0.3) == pytest.approx(5 / 3)
    assert compute_reward(0.9, 0.3, cap=5.0) == pytest.approx(35 / 12)
    # Cap 1 (h = 0.5): 0.4 / 0.5 = 0.8 -> 1 - 0.25 / 0.8 = 0.6875; 0.2 / 0.5 = 0.4 stays 0.4.
    assert compute_reward(0.4, 0.5, cap=1.0) == pytest.approx(0.6875)
    assert compute_reward(0.2, 0.5, cap=1.0) == pytest.approx(0.4)


def test_soft_cap_is_the_identity_up_to_the_knee_and_smooth_there():
    # Knee h = cap / 2 = 1: value 1 from both sides, and slope 1 from both sides
    # (d/dx (2 - 1/x) = 1 / x**2 = 1 at x = 1).
    assert soft_cap(1.0, 2.0) == 1.0
    assert soft_cap(0.3, 2.0) == 0.3
    step = 1e-6
    assert (soft_cap(1.0 + step, 2.0) - soft_cap(1.0, 2.0)) / step == pytest.approx(1.0, rel=1e-5)
    assert soft_cap(1e12, 2.0) < 2.0


def test_regression_reward_cap_ties_students_who_beat_a_weak_teacher():
    # Bug: min(ratio, cap) gave every student from 0.2 to 0.9 against a teacher at 0.1 the
    # reward 2.0 (ratios 2 ... 9 all capped), so the group's advantages were all 0.
    # Now 2 - 1 / ratio, ratio = student / 0.1:
    #   2 - 1/2 = 1.5, 2 - 1/3 = 1.6667, 2 - 1/4 = 1.75, 2 - 1/5 = 1.8,
    #   2 - 1/6 = 1.8333, 2 - 1/7 = 1.8571, 2 - 1/8 = 1.875, 2 - 1/9 = 1.8889
    students = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    rewards = [compute_reward(s, 0.1) for s in students]
    expected = [1.5, 5 / 3, 1.75, 1.8, 11 / 6, 13 / 7, 1.875, 17 / 9]
    assert rewards == pytest.approx(expected, rel=1e-12)
    assert all(a < b for a, b in itertools.pairwise(rewards))
    advantages = group_advantages(mx.array(rewards), len(students), "group").tolist()
    assert all(abs(a) > 1e-3 for a in advantages), advantages
    assert all(a < b for a, b in itertools.pairwise(advantages)), advantages


@pytest.mark.parametrize("rule", REWARD_RULES)
@pytest.mark.parametrize("teacher_floor", [0.05, 0.01])
@pytest.mark.parametrize("cap", [2.0, 0.5, 10.0])
def test_every_rule_is_strictly_increasing_in_the_student_score(rule, teacher_floor, cap):
    # For each teacher score on a grid including 0 (the floor's case) and 1, students one
    # hundredth apart get strictly increasing, finite rewards below the cap (ratio rule).
    grid = [i / 100 for i in range(101)]
    for teacher in [0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.92, 1.0]:
        rewards = [
            compute_reward(s, teacher, rule=rule, teacher_floor=teacher_floor, cap=cap)
            for s in grid
        ]
        assert all(math.isfinite(r) for r in rewards)
        ties = [(grid[i], grid[i + 1]) for i in range(100) if not rewards[i] < rewards[i + 1]]
        assert not ties, (rule, teacher, ties[:3])
        if rule == "ratio":
            assert max(rewards) < cap


def test_ratio_custom_floor():
    # Teacher 0.1 under floor 0.2: 0.1 / 0.2 = 0.5.
    assert compute_reward(0.1, 0.1, teacher_floor=0.2) == pytest.approx(0.5)


def test_difference_and_absolute():
    # 0.85 - 0.92 = -0.07
    assert compute_reward(0.85, 0.92, rule="difference") == pytest.approx(-0.07)
    # 1.0 - 0.0 = 1.0
    assert compute_reward(1.0, 0.0, rule="difference") == pytest.approx(1.0)
    # absolute ignores the teacher: 0.85 whatever the teacher scored.
    assert compute_reward(0.85, 0.92, rule="absolute") == 0.85
    assert compute_reward(0.85, 0.0, rule="absolute") == 0.85


def test_rules_listed():
    assert REWARD_RULES == ("ratio", "difference", "absolute")


@pytest.mark.parametrize(
    ("student", "teacher", "name"),
    [
        (1.2, 0.5, "student_score"),
        (-0.1, 0.5, "student_score"),
        (0.5, 1.5, "teacher_score"),
        (0.5, -1e-9, "teacher_score"),
        (math.nan, 0.5, "student_score"),
        (0.5, math.inf, "teacher_score"),
    ],
)
def test_scores_outside_unit_interval_are_rejected(student, teacher, name):
    with pytest.raises(ValueError, match=name):
        compute_reward(student, teacher)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="unknown reward rule 'sum'"):
        compute_reward(0.5, 0.5, rule="sum")
    with pytest.raises(ValueError, match="teacher_floor"):
        compute_reward(0.5, 0.5, teacher_floor=0.0)
    with pytest.raises(ValueError, match="cap"):
        compute_reward(0.5, 0.5, cap=0.0)
