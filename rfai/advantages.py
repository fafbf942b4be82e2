"""Group-relative advantages for GRPO.

Each task is sampled ``group_size`` times; a completion's advantage is its reward relative to the
other completions of the same task, so no value network is needed (Shao et al. 2024, DeepSeekMath).

Rewards are laid out group-major: rows ``[g * G:(g + 1) * G]`` are the ``G = group_size``
completions of task ``g``. The three ways to scale the centred rewards follow TRL's
``scale_rewards``:

- ``"group"``: divide by the group's std (the original GRPO).
- ``"batch"``: divide by the std of all rewards in the batch; the mean is still per group
  (the "Lite PPO" recipe of Liu et al. 2025, "Tricks or Traps? A Deep Dive into RL for LLM
  Reasoning", as TRL does it). Less noisy than a small group's std.
- ``"none"``: no division (Liu et al. 2025, Dr. GRPO: dividing by the std up-weights
  near-uniform groups, i.e. tasks that are too easy or too hard).

Stds are unbiased (``ddof=1``), as ``torch.std`` computes them in TRL.
"""

from typing import Final

import mlx.core as mx

SCALE_REWARDS: Final = ("group", "batch", "none")


def _check_groups(rewards: mx.array, group_size: int) -> int:
    """Validate the layout and return the number of groups B."""
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for group-relative advantages, got {group_size}")
    if rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"number of rewards {rewards.shape[0]} is not divisible by group_size {group_size}"
        )
    return rewards.shape[0] // group_size


def group_advantages(
    rewards: mx.array, group_size: int, scale: str = "group", eps: float = 1e-4
) -> mx.array:
    """Advantages ``(r - mean_group) / (std + eps)`` for group-major rewards.

    Args:
        rewards: (N,) rewards, N = B * group_size, group-major.
        group_size: completions per task, G >= 2.
        scale: one of ``SCALE_REWARDS``: the std is the group's (``"group"``), the whole batch's
            (``"batch"``), or there is no division (``"none"``). Stds are unbiased (ddof=1,
            like ``torch.std`` in TRL).
        eps: added to the std so a zero-variance denominator stays finite.

    Returns:
        (N,) float32 advantages. A group whose rewards are all exactly equal gets exactly 0:
        float rounding in its mean would otherwise leave ~1e-8 / eps = 1e-4 of noise.
    """
    if scale not in SCALE_REWARDS:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALE_REWARDS}")
    num_groups = _check_groups(rewards, group_size)
    grouped = rewards.astype(mx.float32).reshape(num_groups, group_size)  # (B, G)
    mean = grouped.mean(axis=1, keepdims=True)  # (B, 1)
    uniform = grouped.max(axis=1, keepdims=True) == grouped.min(axis=1, keepdims=True)  # (B, 1)
    centred = mx.where(uniform, 0.0, grouped - mean)  # (B, G)
    if scale == "group":
        std = mx.std(grouped, axis=1, keepdims=True, ddof=1)  # (B, 1)
    elif scale == "batch":
        std = mx.std(grouped, ddof=1)  # ()
    else:
        return centred.reshape(-1)  # (N,)
    return (centred / (std + eps)).reshape(-1)  # (N,)


def zero_variance_groups(rewards: mx.array, group_size: int, atol: float = 1e-6) -> mx.array:
    """(B,) bool: True where every reward in the group is equal within ``atol``.

    Such groups have zero advantage and so contribute no policy gradient; callers count or drop
    them (DAPO's dynamic sampling, Yu et al. 2025).
    """
    num_groups = _check_groups(rewards, group_size)
    grouped = rewards.astype(mx.float32).reshape(num_groups, group_size)  # (B, G)
    spread = grouped.max(axis=1) - grouped.min(axis=1)  # (B,)
    return spread <= atol  # (B,)
