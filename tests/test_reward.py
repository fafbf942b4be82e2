"""compute_reward against hand-computed values; each expected number derived in a comment."""

import math

import pytest

from scorers.reward import REWARD_RULES, compute_reward


def test_ratio_documented_example():
    # 0.85 / max(0.92, 0.05) = 0.85 / 0.92 = 0.9239130..., the README's 0.924.
    assert compute_reward(0.85, 0.92) == pytest.approx(0.9239, abs=1e-4)
    assert round(compute_reward(0.85, 0.92), 3) == 0.924


def test_ratio_matching_the_teacher_is_one():
    # 0.6 / 0.6 = 1.0
    assert compute_reward(0.6, 0.6) == pytest.approx(1.0)


def test_ratio_zero_teacher_uses_the_floor():
    # Teacher 0 -> denominator max(0, 0.05) = 0.05; 0.04 / 0.05 = 0.8, below the cap of 2.
    assert compute_reward(0.04, 0.0) == pytest.approx(0.8)
    # Teacher 0.01 is under the floor too: 0.04 / 0.05 = 0.8 again.
    assert compute_reward(0.04, 0.01) == pytest.approx(0.8)
    # Both zero: 0 / 0.05 = 0, not a division error.
    assert compute_reward(0.0, 0.0) == 0.0


def test_ratio_is_capped():
    # Teacher 0 -> 0.5 / 0.05 = 10, capped at 2.0.
    assert compute_reward(0.5, 0.0) == 2.0
    # 0.9 / 0.3 = 3.0, capped at 2.0; with cap 5 it stays 3.0.
    assert compute_reward(0.9, 0.3) == 2.0
    assert compute_reward(0.9, 0.3, cap=5.0) == pytest.approx(3.0)


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
