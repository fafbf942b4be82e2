"""The clipped GRPO policy loss, its KL penalty, and the four ways to average it over tokens.

Objective, per completion token t of sequence i (minimised):

    r_it       = exp(logp_it - old_logp_it)                        importance ratio
    l_it       = -min(r_it * A_i, clip(r_it, 1 - eps_low, 1 + eps_high) * A_i)
                 + beta * k3(logp_it, ref_logp_it)

A_i is the group-relative advantage of sequence i (``rfai.advantages``). The clip is PPO's;
``eps_low != eps_high`` is DAPO's "clip-higher" (Yu et al. 2025), which lets low-probability
tokens grow further before the clip stops their gradient.

Teacher-guided groups (``rfai.groups``) add off-policy rows: the teacher's answer in the
student's tokens, for which no behaviour log-probs exist. Their per-token term has no ratio
and no clip (LUFFY, Yan et al. 2025, arXiv 2504.14945):

    l_it = -A_i * f(logp_it),   f(logp) = logp                 (gamma = 0: log-likelihood)
                                f(logp) = pi / (pi + gamma)    (LUFFY's policy shaping, pi = e^logp)

and no KL term (k3 estimates KL(pi || ref) only for tokens sampled from pi). They count as
tokens in every loss type's normalisation, like the students' rows.

On-policy distillation (``distill_weight`` w > 0; Agarwal et al. 2024, "On-Policy
Distillation of Language Models", arXiv 2306.13649): a local teacher q that shares the
student's tokenizer scores the student's own sampled tokens (``teacher_logp``). Each on-policy
token's advantage becomes

    A_it = A_i - w * (logp_it - teacher_logp_it)       (the difference without gradient)

The difference is the one-sample estimate of the per-token reverse KL(pi || q) at the sampled
token; as a per-token advantage under the same clipped surrogate, its gradient is the score-
function gradient of that KL (tokens the student finds likelier than the teacher are pushed
down, tokens the teacher prefers pushed up), the dense signal of on-policy distillation, added
to the sparse program reward. Teacher rows get no distillation term.

``k3`` is Schulman's estimator of KL(pi || ref) ("Approximating KL Divergence", 2020 blog):
with d = ref_logp - logp, k3 = exp(d) - d - 1. It is unbiased for tokens sampled from pi, and
always >= 0 because exp(d) >= 1 + d.

Loss types (how the masked l_it become one number), as TRL's ``GRPOTrainer`` defines them:

- ``grpo``: mean over sequences of each sequence's token mean (Shao et al. 2024, DeepSeekMath).
  Tokens of long completions weigh less than tokens of short ones.
- ``bnpo``: token mean within each micro-batch, averaged over micro-batches (TRL's "bnpo":
  normalised by the active tokens of the local batch, so the result depends on how the batch
  is split).
- ``dr_grpo``: sum over tokens / (sequences * max_completion_length), where
  max_completion_length is the configured limit (``rollout.max_new_tokens``), not the batch's
  longest completion: a constant denominator with no length bias (Liu et al. 2025,
  "Understanding R1-Zero-Like Training: A Critical Perspective", Dr. GRPO; TRL's
  ``max_completion_length``).
- ``dapo``: sum over tokens / tokens in the whole batch, the global token-level mean
  (Yu et al. 2025, DAPO).

Gradient accumulation: the trainer runs the loss on micro-batches and sums their gradients.
Every denominator that spans the whole batch therefore comes in through ``LossNormalizer``, so
that summing the micro-batch losses gives the full-batch loss; ``LOSS_DENOMINATORS`` is the one
table of them, and ``rfai.update`` scales its compiled micro-batch losses by the same table.
TRL instead divides a per-micro-batch mean by the number of accumulation steps; that equals
ours for ``grpo`` only when micro-batches have equal size, and for ``dapo`` only when they have
equal token counts.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import mlx.core as mx


def token_logprobs(logits: mx.array, targets: mx.array, temperature: float = 1.0) -> mx.array:
    """(B, T) float32 log-probabilities of ``targets`` under ``softmax(logits / temperature)``.

    ``log p(y) = z_y - logsumexp(z)``: only the target logit is gathered, so no (B, T, V)
    log-softmax is kept beyond what ``logsumexp`` needs. The sampler's temperature must be used
    here too, or the ratio to the rollout's log-probabilities is off even for an unchanged policy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits.astype(mx.float32) / temperature  # (B, T, V)
    selected = mx.take_along_axis(scaled, targets[..., None], axis=-1).squeeze(-1)  # (B, T)
    return selected - mx.logsumexp(scaled, axis=-1)  # (B, T)


def kl_k3(logp: mx.array, ref_logp: mx.array) -> mx.array:
    """(B, T) Schulman's k3 estimate of KL(pi || ref) per token: exp(d) - d - 1, d = ref - logp."""
    log_ratio = ref_logp - logp  # (B, T)
    return mx.exp(log_ratio) - log_ratio - 1.0  # (B, T)


@dataclass(frozen=True)
class LossNormalizer:
    """Global quantities of the WHOLE rollout batch.

    They let micro-batch losses sum to the full-batch loss.
    """

    total_sequences: int  # sequences in the full batch (after any dropping)
    total_tokens: int  # unmasked completion tokens in the full batch
    num_micro_batches: int
    max_completion_length: int  # the configured limit (rollout.max_new_tokens), a constant

    def __post_init__(self) -> None:
        # Each is a denominator; total_tokens may be 0 (all completions empty): dapo uses max(., 1).
        for name in ("total_sequences", "num_micro_batches", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"LossNormalizer.{name} must be >= 1, got {getattr(self, name)}")
        if self.total_tokens < 0:
            raise ValueError(f"LossNormalizer.total_tokens must be >= 0, got {self.total_tokens}")


# The whole-batch denominator of each loss type; the micro-batch numerators are in
# `aggregate_loss`. `rfai.update` divides by the same table, so the two cannot drift apart.
LOSS_DENOMINATORS: Final[dict[str, Callable[[LossNormalizer], int]]] = {
    "grpo": lambda norm: norm.total_sequences,  # mean over sequences
    "bnpo": lambda norm: norm.num_micro_batches,  # mean over micro-batches
    "dr_grpo": lambda norm: norm.total_sequences * norm.max_completion_length,
    "dapo": lambda norm: max(norm.total_tokens, 1),  # all masked: the loss is 0 anyway
}
LOSS_TYPES: Final = tuple(LOSS_DENOMINATORS)


def _check_loss_type(loss_type: str) -> None:
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")


def loss_denominator(loss_type: str, norm: LossNormalizer) -> int:
    """The whole-batch number `loss_type` divides its micro-batch numerator by (>= 1)."""
    _check_loss_type(loss_type)
    return LOSS_DENOMINATORS[loss_type](norm)


def aggregate_loss(
    per_token: mx.array, mask: mx.array, loss_type: str, norm: LossNormalizer
) -> mx.array:
    """Scalar micro-batch loss; summed over the micro-batches it gives the full-batch loss.

    Args:
        per_token: (B, T) per-token losses of one micro-batch.
        mask: (B, T) 1 for completion tokens, 0 for prompt and padding (float or bool).
        loss_type: one of ``LOSS_TYPES`` (see the module docstring).
        norm: the whole batch's sizes.
    """
    denominator = loss_denominator(loss_type, norm)
    mask = mask.astype(mx.float32)  # (B, T)
    masked = per_token * mask  # (B, T)
    if loss_type == "grpo":
        seq_means = masked.sum(axis=1) / mx.maximum(mask.sum(axis=1), 1.0)  # (B,)
        return seq_means.sum() / denominator  # ()
    if loss_type == "bnpo":
        micro_mean = masked.sum() / mx.maximum(mask.sum(), 1.0)  # ()
        return micro_mean / denominator  # ()
    return masked.sum() / denominator  # () dr_grpo and dapo: a token sum


def policy_loss(
    logp: mx.array,
    old_logp: mx.array,
    ref_logp: mx.array | None,
    advantages: mx.array,
    mask: mx.array,
    *,
    epsilon_low: float,
    epsilon_high: float,
    beta: float,
    loss_type: str,
    norm: LossNormalizer,
    off_policy: mx.array | None = None,
    guidance_gamma: float = 0.0,
    teacher_logp: mx.array | None = None,
    distill_weight: float = 0.0,
) -> tuple[mx.array, dict[str, mx.array]]:
    """Clipped surrogate loss plus ``beta`` * k3 KL, aggregated by ``loss_type``.

    Args:
        logp: (B, T) float32 log-probabilities of the sampled tokens under the policy being trained.
        old_logp: (B, T) the same under the policy that sampled them (no gradient flows to it).
        ref_logp: (B, T) the same under the reference model, or None when ``beta == 0``.
        advantages: (B,) one advantage per sequence.
        mask: (B, T) 1 for completion tokens (float or bool).
        off_policy: (B,) 1 for teacher rows (the module docstring's off-policy term; their
            ``old_logp`` is ignored), or None when there are none.
        guidance_gamma: LUFFY's shaping constant for those rows; 0 = plain log-likelihood.
        teacher_logp: (B, T) a distillation teacher's log-probabilities of the same targets
            (same temperature), required when ``distill_weight > 0``.
        distill_weight: w of the module docstring's distillation term; 0 = off.

    Returns:
        ``(loss, stats)``: the scalar micro-batch loss, and stop-gradient SUMS over masked tokens
        ("tokens", "kl_sum", "ratio_sum", "clipped_low_sum", "clipped_high_sum", and with
        ``off_policy`` "teacher_tokens", "teacher_prob_sum") that the caller adds across
        micro-batches and divides by a token count. "clipped_low" counts tokens with
        ratio < 1 - epsilon_low and A < 0, "clipped_high" ratio > 1 + epsilon_high and A > 0:
        the tokens whose gradient the clip removed. "kl_sum" is 0 without ``ref_logp``.
        "tokens" counts every row; kl, ratio and clip sums only on-policy rows, "teacher_*"
        only teacher rows (prob = e^logp). With distillation, "distill_kl_sum" sums
        logp - teacher_logp over on-policy tokens.
    """
    _check_policy_args(ref_logp is not None, epsilon_low, epsilon_high, beta, loss_type)
    if guidance_gamma < 0:
        raise ValueError(f"guidance_gamma must be >= 0, got {guidance_gamma}")
    if distill_weight < 0:
        raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
    if distill_weight > 0 and teacher_logp is None:
        raise ValueError(f"teacher_logp is required when distill_weight > 0 ({distill_weight})")
    mask = mask.astype(mx.float32)  # (B, T)
    adv = advantages.astype(mx.float32)[:, None]  # (B, 1)
    no_rows = mx.zeros(advantages.shape, mx.float32)  # (B,)
    off = (no_rows if off_policy is None else off_policy.astype(mx.float32))[:, None]  # (B, 1)
    # Teacher rows have no behaviour log-probs: compare with logp itself so the ratio is 1
    # there (their surrogate is replaced below; this keeps exp() finite).
    old = mx.where(off > 0, mx.stop_gradient(logp), old_logp)  # (B, T)
    ratio = mx.exp(logp - mx.stop_gradient(old))  # (B, T)
    clipped = mx.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)  # (B, T)
    reverse_kl = None
    if teacher_logp is not None:
        reverse_kl = mx.stop_gradient(logp - teacher_logp) * (1.0 - off)  # (B, T)
        adv = adv - distill_weight * reverse_kl  # (B, T) per-token advantages
    surrogate = mx.minimum(ratio * adv, clipped * adv)  # (B, T)
    # Without a reference model (beta == 0, checked above) compare logp with itself: k3 = 0.
    ref = mx.stop_gradient(logp if ref_logp is None else ref_logp)  # (B, T)
    kl = kl_k3(logp, ref) * (1.0 - off)  # (B, T) none on teacher rows
    on_policy_term = -surrogate + beta * kl  # (B, T)
    per_token = mx.where(off > 0, -adv * guidance_term(logp, guidance_gamma), on_policy_term)
    loss = aggregate_loss(per_token, mask, loss_type, norm)  # ()
    stats = _token_stats(mask * (1.0 - off), ratio, kl, adv, epsilon_low, epsilon_high)
    if reverse_kl is not None:
        stats["distill_kl_sum"] = (reverse_kl * mx.stop_gradient(mask)).sum()  # ()
    if off_policy is None:
        return loss, stats
    teacher_mask = mx.stop_gradient(mask * off)  # (B, T)
    stats["tokens"] = mx.stop_gradient(mask).sum(axis=-1).sum()  # ()
    stats["teacher_tokens"] = teacher_mask.sum(axis=-1).sum()  # ()
    stats["teacher_prob_sum"] = (mx.exp(mx.stop_gradient(logp)) * teacher_mask).sum()  # ()
    return loss, stats


def guidance_term(logp: mx.array, gamma: float) -> mx.array:
    """(B, T) the teacher rows' f(logp): logp itself when ``gamma == 0``, else LUFFY's policy
    shaping pi / (pi + gamma), pi = exp(logp), whose gradient pi * gamma / (pi + gamma)^2
    weighs each token's log-likelihood gradient by how likely the policy already finds it."""
    if gamma == 0:
        return logp
    prob = mx.exp(logp)  # (B, T)
    return prob / (prob + gamma)  # (B, T)


def _check_policy_args(
    has_ref: bool, epsilon_low: float, epsilon_high: float, beta: float, loss_type: str
) -> None:
    _check_loss_type(loss_type)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if epsilon_low <= 0 or epsilon_high <= 0:
        raise ValueError(
            f"epsilons must be > 0, got epsilon_low={epsilon_low}, epsilon_high={epsilon_high}"
        )
    if not has_ref and beta > 0:
        raise ValueError(f"ref_logp is required when beta > 0 (beta={beta})")


def _token_stats(
    mask: mx.array,
    ratio: mx.array,
    kl: mx.array,
    adv: mx.array,
    epsilon_low: float,
    epsilon_high: float,
) -> dict[str, mx.array]:
    """`policy_loss`'s stop-gradient sums over masked tokens (see its docstring).

    mask, ratio, kl: (B, T) float32; adv: (B, 1), or (B, T) per-token with distillation.
    """
    # Token count as a sum of row sums: under mx.compile(mx.value_and_grad(...)) (MLX 0.32.4), an
    # auxiliary output equal to an expression the loss also computes (bnpo's mask.sum()) fails
    # with "IndexError: _Map_base::at". tests/test_loss.py::test_compiled_equals_eager guards it.
    frozen_mask = mx.stop_gradient(mask)  # (B, T)
    frozen_ratio = mx.stop_gradient(ratio)  # (B, T)
    low = (frozen_ratio < 1.0 - epsilon_low) & (adv < 0)  # (B, T)
    high = (frozen_ratio > 1.0 + epsilon_high) & (adv > 0)  # (B, T)
    return {
        "tokens": frozen_mask.sum(axis=-1).sum(),  # ()
        "kl_sum": (mx.stop_gradient(kl) * frozen_mask).sum(),  # ()
        "ratio_sum": (frozen_ratio * frozen_mask).sum(),  # ()
        "clipped_low_sum": (low * frozen_mask).sum(),  # ()
        "clipped_high_sum": (high * frozen_mask).sum(),  # ()
    }
