"""Which groups of a rollout batch are trained on, and their advantages: a pure function.

A group is the G completions of one task, laid out group-major (completion index
g * G + s). A group takes no part in the update when:
1. any of its samples could not be scored (`skip_reason`: a `ScoringError`, or a scorer bug
   counted as `scorer_errors`): a made-up reward would be noise, so the whole group goes;
2. `grpo.drop_zero_variance_groups` is on and all its rewards are equal (DAPO's dynamic
   sampling, Yu et al. 2025): such a group has zero advantage everywhere anyway. Not under
   on-policy distillation (`grpo.distill_weight` > 0): its tokens still carry the per-token
   distillation term, so it is kept with advantages 0.
The advantages of the groups that are left come from `rfai.advantages.group_advantages`,
computed over those groups only (so `scale_rewards: batch` uses the kept groups' std).

Teacher-guided groups (`grpo.teacher_guidance` = k > 0; LUFFY, Yan et al. 2025, "Learning to
Reason under Off-Policy Guidance", arXiv 2504.14945): a group whose teacher code passed gets k
extra members, each with the teacher's own reward (`teacher_rewards[g]`, the teacher scored
against itself under the reward rule). They enter the group's mean and std, so students below
the teacher get negative advantages and an all-fail group still has a signal. Two rules:
1. All-fail groups: when every student of a guided group has the same reward (nothing
   separates them: typically all failed), the students' advantages are set to 0 and only the
   teacher members' positive term trains. Pushing down the tokens of equally bad random
   samples was measured to stop guidance from working at all from a weak start (README).
2. A teacher member's advantage is never negative (clamped at 0): its code passed, and a
   negative weight on an unclipped log-likelihood has no bound.
A group with teacher members is never a zero-variance group unless the teacher ties every
student. Teacher members are returned apart (`GroupSelection.teacher`), never as completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import mlx.core as mx

from rfai.advantages import group_advantages
from rfai.config import GRPOConfig
from rfai.rollout import Completion
from rfai.update import Sample


@dataclass(frozen=True)
class GroupSelection:
    """indices: completion indices trained on, group-major; advantages: one per index;
    skipped: group index -> the reason it was skipped (its first, sorted);
    zero_variance: groups dropped because all their rewards were equal;
    teacher: kept group index -> the advantage of each of its teacher members (guided groups)."""

    indices: list[int]
    advantages: list[float]
    skipped: dict[int, str]
    zero_variance: int
    teacher: dict[int, float] = field(default_factory=dict)


def select_groups(
    rewards: Sequence[float | None],
    skip_reasons: Sequence[str | None],
    group_size: int,
    grpo: GRPOConfig,
    teacher_rewards: Sequence[float | None] | None = None,
) -> GroupSelection:
    """`rewards` and `skip_reasons`: one per completion, group-major (see the module doc).

    `teacher_rewards`: one per group, the reward of its teacher members, or None where the
    group gets none (the teacher's code did not pass); used when `grpo.teacher_guidance` > 0.
    """
    if len(rewards) != len(skip_reasons) or len(rewards) % group_size:
        raise ValueError(
            f"{len(rewards)} rewards and {len(skip_reasons)} skip reasons do not make whole "
            f"groups of {group_size}"
        )
    groups = range(len(rewards) // group_size)
    if teacher_rewards is not None and len(teacher_rewards) != len(groups):
        raise ValueError(f"{len(teacher_rewards)} teacher rewards for {len(groups)} groups")
    guide = {}
    if grpo.teacher_guidance and teacher_rewards is not None:
        guide = {g: r for g, r in enumerate(teacher_rewards) if r is not None}

    def members(g: int) -> range:
        return range(g * group_size, (g + 1) * group_size)

    def group_rewards(g: int) -> list[float]:
        extra = [guide[g]] * grpo.teacher_guidance if g in guide else []
        return [rewards[i] for i in members(g)] + extra

    skipped = {}
    for g in groups:
        reasons = sorted({skip_reasons[i] for i in members(g) if skip_reasons[i]})
        if reasons:
            skipped[g] = reasons[0]
    usable = [g for g in groups if g not in skipped]
    if not usable:
        return GroupSelection([], [], skipped, 0)
    dropped = 0
    if grpo.drop_zero_variance_groups and grpo.distill_weight == 0:
        equal = [max(group_rewards(g)) - min(group_rewards(g)) <= 1e-6 for g in usable]
        dropped = sum(equal)
        usable = [g for g, eq in zip(usable, equal, strict=True) if not eq]
        if not usable:
            return GroupSelection([], [], skipped, dropped)
    per_group = _advantages([group_rewards(g) for g in usable], grpo)
    indices, advantages, teacher = [], [], {}
    for g, adv in zip(usable, per_group, strict=True):
        students = adv[:group_size]
        if g in guide:
            if len({rewards[i] for i in members(g)}) == 1:
                students = [0.0] * group_size  # rule 1 of the module docstring
            teacher[g] = max(adv[group_size], 0.0)  # rule 2
        indices.extend(members(g))
        advantages.extend(students)
    return GroupSelection(indices, advantages, skipped, dropped, teacher)


def _advantages(groups: list[list[float]], grpo: GRPOConfig) -> list[list[float]]:
    """`rfai.advantages.group_advantages` for groups that may differ in size (guided ones are
    larger); `scale_rewards: batch` divides by the std of every member of every group."""
    if len({len(r) for r in groups}) == 1:
        size = len(groups[0])
        flat = group_advantages(
            mx.array([x for r in groups for x in r], mx.float32),
            size,
            grpo.scale_rewards,
            grpo.advantage_eps,
        ).tolist()
        return [flat[i * size : (i + 1) * size] for i in range(len(groups))]
    scale = "none" if grpo.scale_rewards == "batch" else grpo.scale_rewards
    out = [
        group_advantages(mx.array(r, mx.float32), len(r), scale, grpo.advantage_eps).tolist()
        for r in groups
    ]
    if grpo.scale_rewards == "batch":
        std = mx.std(mx.array([x for r in groups for x in r], mx.float32), ddof=1).item()
        out = [[a / (std + grpo.advantage_eps) for a in r] for r in out]
    return out


def training_samples(
    selection: GroupSelection,
    completions: Sequence[Completion],
    logprobs: Sequence[Sequence[float]],
    prompts: Sequence[Sequence[int]],
    teacher_completions: Sequence[Sequence[int] | None] = (),
    teacher_members: int = 0,
) -> list[Sample]:
    """The update's input for the selected completions (`completions` and their behaviour
    `logprobs` in index order), then `teacher_members` off-policy samples per guided group
    (`teacher_completions[g]`: the teacher's answer as student tokens, for group g)."""
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
    for g, advantage in selection.teacher.items():
        tokens = teacher_completions[g]
        if tokens is None:
            raise ValueError(f"group {g} has teacher members but no teacher completion")
        teacher = Sample(
            prompt=prompts[g],
            completion=tuple(tokens),
            behaviour_logprobs=(0.0,) * len(tokens),  # none exist: the term is off-policy
            advantage=advantage,
            truncated=False,
            off_policy=True,
        )
        samples.extend([teacher] * teacher_members)
    return samples
