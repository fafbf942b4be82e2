"""`select_groups` against hand-written batches: what is trained on, and with what advantage."""

import math

import pytest

from rfai.config import GRPOConfig
from rfai.groups import GroupSelection, select_groups, training_samples
from rfai.rollout import Completion

NONE = GRPOConfig(scale_rewards="none")


def test_every_group_is_kept_and_centred_when_nothing_is_skipped():
    # Groups of 2: [1, 0] has mean 0.5 -> +0.5, -0.5; [0.2, 0.6] mean 0.4 -> -0.2, +0.2.
    sel = select_groups([1.0, 0.0, 0.2, 0.6], [None] * 4, 2, NONE)
    assert sel.indices == [0, 1, 2, 3] and sel.skipped == {} and sel.zero_variance == 0
    assert sel.advantages == pytest.approx([0.5, -0.5, -0.2, 0.2], abs=1e-6)


def test_group_scale_divides_by_the_groups_unbiased_std_plus_eps():
    # [1, 0]: centred +-0.5; std (ddof=1) = sqrt((0.25 + 0.25) / 1) = 0.70711; eps 1e-4.
    sel = select_groups([1.0, 0.0], [None, None], 2, GRPOConfig(scale_rewards="group"))
    expected = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert sel.advantages == pytest.approx([expected, -expected], rel=1e-5)


def test_a_group_with_any_skipped_sample_is_left_out_whole_with_its_first_reason():
    rewards = [1.0, 0.0, None, 0.5, 0.3, 0.1]
    reasons = [None, None, "scorer_error: ValueError: x", "no criterion applies", None, None]
    sel = select_groups(rewards, reasons, 2, NONE)
    # Group 1 (indices 2, 3) goes; sorted reasons: "no criterion..." < "scorer_error...".
    assert sel.skipped == {1: "no criterion applies"}
    assert sel.indices == [0, 1, 4, 5]
    # Group 2 [0.3, 0.1]: mean 0.2 -> +0.1, -0.1.
    assert sel.advantages == pytest.approx([0.5, -0.5, 0.1, -0.1], abs=1e-6)


def test_batch_scale_uses_the_std_of_the_kept_groups_only():
    # Kept: [1, 0] and [0, 1] (group 1 skipped); all four rewards: mean 0.5, std (ddof=1)
    # sqrt(4 * 0.25 / 3) = 0.57735. A skipped group's rewards must not enter that std.
    rewards = [1.0, 0.0, 5.0, None, 0.0, 1.0]
    reasons = [None, None, None, "skip", None, None]
    sel = select_groups(rewards, reasons, 2, GRPOConfig(scale_rewards="batch"))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert sel.indices == [0, 1, 4, 5]
    assert sel.advantages == pytest.approx([a, -a, -a, a], rel=1e-5)


def test_equal_reward_groups_are_dropped_only_when_configured():
    rewards = [0.5, 0.5, 1.0, 0.0, 0.0, 0.0]
    kept = select_groups(rewards, [None] * 6, 2, NONE)
    # Kept (the default): an equal group gets exactly zero advantage.
    assert kept.indices == [0, 1, 2, 3, 4, 5] and kept.zero_variance == 0
    assert kept.advantages == pytest.approx([0.0, 0.0, 0.5, -0.5, 0.0, 0.0], abs=1e-7)
    dropped = select_groups(
        rewards, [None] * 6, 2, GRPOConfig(scale_rewards="none", drop_zero_variance_groups=True)
    )
    assert dropped.indices == [2, 3] and dropped.zero_variance == 2
    assert dropped.advantages == pytest.approx([0.5, -0.5], abs=1e-6)


def test_nothing_left_gives_an_empty_selection_with_the_counts():
    drop = GRPOConfig(drop_zero_variance_groups=True)
    assert select_groups([0.0, 0.0, None, 1.0], [None, None, "x", None], 2, drop) == (
        GroupSelection([], [], {1: "x"}, 1)
    )
    assert select_groups([None, None], ["a", "b"], 2, NONE) == GroupSelection([], [], {0: "a"}, 0)


def test_rewards_that_do_not_make_whole_groups_are_refused():
    with pytest.raises(ValueError, match="whole groups of 2"):
        select_groups([1.0, 0.0, 1.0], [None] * 3, 2, NONE)
    with pytest.raises(ValueError, match="2 rewards and 3 skip reasons"):
        select_groups([1.0, 0.0], [None] * 3, 2, NONE)


def test_training_samples_pair_each_selected_completion_with_its_prompt_and_advantage():
    completions = [
        Completion(i, i // 2, i % 2, (10 + i, 2), reason, "")
        for i, reason in enumerate(["stop", "length", "stop", "stop"])
    ]
    prompts = [[1, 2], [3]]
    sel = GroupSelection([2, 3, 0, 1], [0.1, -0.1, 0.3, -0.3], {}, 0)
    logprobs = [(-0.5 - i, -0.25) for i in range(4)]
    samples = training_samples(sel, completions, logprobs, prompts)
    assert [(s.prompt, tuple(s.completion), s.advantage, s.truncated) for s in samples] == [
        ([3], (12, 2), 0.1, False),
        ([3], (13, 2), -0.1, False),
        ([1, 2], (10, 2), 0.3, False),
        ([1, 2], (11, 2), -0.3, True),
    ]
    assert tuple(samples[0].behaviour_logprobs) == (-2.5, -0.25)  # completion 2's
