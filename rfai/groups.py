"""Which groups of a rollout batch are trained on, and their advantages: a pure function.

A group is the G completions of one task, laid out group-major (completion index
g * G + s). A group takes no part in the update when:
1. any of its samples could not be scored (`skip_reason`: a `ScoringError`, or a scorer bug
   counted as `scorer_errors`): a made-up reward would be noise, so the whole group goes;
2. `grpo.drop_zero_variance_groups` is on and all its rewards are equal (DAPO's dynamic
   sampling, Yu et al. 2025): such a group has zero advantage everywhere anyway.
The advantages of the groups that are left come from `rfai.advantages.group_advantages`,
computed over those groups only (so `scale_rewards: batch` uses the kept groups' std).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx

from rfai.advantages import group_advantages, zero_variance_groups
from rfai.config import GRPOConfig
from rfai.rollout import Completion
from rfai.update import Sample


@dataclass(frozen=True)
class GroupSelection:
    """indices: completion indices trained on, group-major; advantages: one per index;
    skipped: group index -> the reason it was skipped (its first, sorted);
    zero_variance: groups dropped because all their rewards were equal."""

    indices: list[int]
    advantages: list[float]
    skipped: dict[int, str]
    zero_variance: int


def select_groups(
    rewards: Sequence[float | None],
    skip_reasons: Sequence[str | None],
    group_size: int,
    grpo: GRPOConfig,
) -> GroupSelection:
    """`rewards` and `skip_reasons`: one per completion, group-major (see the module doc)."""
    if len(rewards) != len(skip_reasons) or len(rewards) % group_size:
        raise ValueError(
            f"{len(rewards)} rewards and {len(skip_reasons)} skip reasons do not make whole "
            f"groups of {group_size}"
        )
    groups = range(len(rewards) // group_size)

    def members(g: int) -> range:
        return range(g * group_size, (g + 1) * group_size)

    skipped = {}
    for g in groups:
        reasons = sorted({skip_reasons[i] for i in members(g) if skip_reasons[i]})
        if reasons:
            skipped[g] = reasons[0]
    usable = [g for g in groups if g not in skipped]
    if not usable:
        return GroupSelection([], [], skipped, 0)
    dropped = 0
    if grpo.drop_zero_variance_groups:
        kept_rewards = mx.array([rewards[i] for g in usable for i in members(g)], mx.float32)
        equal = zero_variance_groups(kept_rewards, group_size).tolist()
        dropped = sum(equal)
        usable = [g for g, eq in zip(usable, equal, strict=True) if not eq]
        if not usable:
            return GroupSelection([], [], skipped, dropped)
    indices = [i for g in usable for i in members(g)]
    advantages = group_advantages(
        mx.array([rewards[i] for i in indices], mx.float32),
        group_size,
        grpo.scale_rewards,
        grpo.advantage_eps,
    ).tolist()
    return GroupSelection(indices, advantages, skipped, dropped)


def training_samples(
    selection: GroupSelection,
    completions: Sequence[Completion],
    logprobs: Sequence[Sequence[float]],
    prompts: Sequence[Sequence[int]],
) -> list[Sample]:
    """The update's input for the selected completions (`completions` and their behaviour
    `logprobs` in index order)."""
    samples = []
    for i, advantage in zip(selection.indices, selection.advantages, strict=True):
        c = completions[i]
        samples.append(
            Sample(
                prompt=prompts[c.prompt_index],
                completion=c.tokens,
                behaviour_logprobs=logprobs[i],
                advantage=advantage,
                truncated=c.finish_reason == "length",
            )
        )
    return samples
