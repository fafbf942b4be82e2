"""Group-relative advantages against hand-computed values (derivations in the comments)."""

import math

import mlx.core as mx
import numpy as np
import pytest

from rfai.advantages import SCALE_REWARDS, group_advantages, zero_variance_groups

EPS = 1e-4


def _adv(rewards: list[float], group_size: int, scale: str = "group") -> np.ndarray:
    return np.array(group_advantages(mx.array(rewards), group_size, scale=scale, eps=EPS))


def test_two_groups_of_two():
    # Groups [1, 0] and [0, 1]: mean 0.5, deviations +-0.5.
    # Unbiased var = (0.5^2 + 0.5^2) / (2 - 1) = 0.5, std = sqrt(0.5) = 0.70711.
    # A = +-0.5 / (0.70711 + 1e-4) = +-0.70701.
    a = 0.5 / (math.sqrt(0.5) + EPS)
    np.testing.assert_allclose(_adv([1, 0, 0, 1], 2), [a, -a, -a, a], rtol=1e-6)
    assert abs(a - 0.70701) < 1e-5


def test_group_of_three_uses_unbiased_std():
    # [1, 2, 6]: mean 3, deviations [-2, -1, 3], squares sum 4 + 1 + 9 = 14.
    # Unbiased var = 14 / 2 = 7, std = sqrt(7) = 2.64575 (the biased std would be 2.16025).
    # A = [-2, -1, 3] / 2.64585 = [-0.75590, -0.37795, 1.13385].
    expected = np.array([-2.0, -1.0, 3.0]) / (math.sqrt(7.0) + EPS)
    np.testing.assert_allclose(_adv([1, 2, 6], 3), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [-0.75590, -0.37795, 1.13385], atol=2e-5)


def test_batch_scaling_differs_from_group_scaling():
    # Groups [0, 1] and [0, 3].
    # group: [0, 1] -> +-0.5 / sqrt(0.5); [0, 3] -> deviations +-1.5, var = 4.5, std = 2.12132,
    #        +-1.5 / 2.12132. Both are +-0.70711 (before eps): each group is scaled to unit std.
    # batch: means still per group -> centred [-0.5, 0.5, -1.5, 1.5]; std of all four rewards
    #        [0, 1, 0, 3]: mean 1, squares 1 + 0 + 1 + 4 = 6, var = 6 / 3 = 2, std = 1.41421.
    #        A = [-0.5, 0.5, -1.5, 1.5] / (1.41421 + 1e-4) = [-0.35353, 0.35353, -1.06059, 1.06059].
    rewards = [0, 1, 0, 3]
    g1 = 0.5 / (math.sqrt(0.5) + EPS)
    g2 = 1.5 / (math.sqrt(4.5) + EPS)
    np.testing.assert_allclose(_adv(rewards, 2, "group"), [-g1, g1, -g2, g2], rtol=1e-6)
    batch = np.array([-0.5, 0.5, -1.5, 1.5]) / (math.sqrt(2.0) + EPS)
    np.testing.assert_allclose(_adv(rewards, 2, "batch"), batch, rtol=1e-6)
    np.testing.assert_allclose(batch, [-0.35353, 0.35353, -1.06059, 1.06059], atol=1e-5)


def test_none_is_centred_rewards():
    # Dr. GRPO: no division. Groups [0, 1] and [0, 3] -> means 0.5 and 1.5.
    np.testing.assert_array_equal(_adv([0, 1, 0, 3], 2, "none"), [-0.5, 0.5, -1.5, 1.5])


@pytest.mark.parametrize("scale", SCALE_REWARDS)
def test_zero_variance_group_gets_exact_zero_and_is_flagged(scale):
    # Group 0 is [0.1, 0.1, 0.1]: std 0, and float32 rounding makes 0.1 - mean(0.1, 0.1, 0.1)
    # = -7.45e-9, which would become -7.45e-5 after dividing by eps; it must be exactly 0.
    # Group 1 is [0, 1, 1]: mean 2/3, deviations [-2/3, 1/3, 1/3], nonzero.
    rewards = [0.1, 0.1, 0.1, 0.0, 1.0, 1.0]
    adv = _adv(rewards, 3, scale)
    assert np.all(np.isfinite(adv))
    np.testing.assert_array_equal(adv[:3], [0.0, 0.0, 0.0])
    assert np.all(adv[3:] != 0.0)
    assert np.array(zero_variance_groups(mx.array(rewards), 3)).tolist() == [True, False]


def test_all_groups_uniform_batch_scale_is_zero_not_nan():
    # Batch std is 0 too: 0 / (0 + eps) = 0.
    adv = _adv([1, 1, 0, 0], 2, "batch")
    np.testing.assert_array_equal(adv, [0.0, 0.0, 0.0, 0.0])


def test_zero_variance_groups_atol():
    # Spreads: 1e-7 (<= 1e-6, flagged), 0.01 (not), 0 (flagged).
    rewards = mx.array([0.5, 0.5 + 1e-7, 0.5, 0.51, 2.0, 2.0])
    assert np.array(zero_variance_groups(rewards, 2)).tolist() == [True, False, True]
    assert np.array(zero_variance_groups(rewards, 2, atol=0.1)).tolist() == [True, True, True]


def test_invalid_arguments_raise():
    rewards = mx.array([1.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="'median'"):
        group_advantages(rewards, 2, scale="median")
    with pytest.raises(ValueError, match="divisible"):
        group_advantages(rewards, 3)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        group_advantages(rewards, 1)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(rewards.reshape(2, 2), 2)
    with pytest.raises(ValueError, match="divisible"):
        zero_variance_groups(rewards, 3)
