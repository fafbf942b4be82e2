"""Policy loss, k3 KL and loss aggregation against hand-computed values (derivations inline)."""

import math

import mlx.core as mx
import numpy as np
import pytest

from rfai.loss import (
    LOSS_DENOMINATORS,
    LOSS_TYPES,
    LossNormalizer,
    aggregate_loss,
    kl_k3,
    loss_denominator,
    policy_loss,
    token_logprobs,
)
from rfai.update import loss_scale


def _np_logprobs(logits: np.ndarray, targets: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return np.take_along_axis(log_softmax, targets[..., None], axis=-1)[..., 0]


def test_token_logprobs_matches_float64_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2, 5, 11)).astype(np.float32)
    targets = rng.integers(0, 11, size=(2, 5))
    got = token_logprobs(mx.array(logits), mx.array(targets), temperature=0.7)
    assert got.shape == (2, 5)
    assert got.dtype == mx.float32
    np.testing.assert_allclose(np.array(got), _np_logprobs(logits, targets, 0.7), rtol=1e-5)


def test_token_logprobs_bf16_logits():
    # The reference sees the same bf16-rounded logits, so only the float32 compute is tested.
    rng = np.random.default_rng(1)
    logits = mx.array(rng.normal(scale=3.0, size=(2, 4, 9)).astype(np.float32)).astype(mx.bfloat16)
    targets = rng.integers(0, 9, size=(2, 4))
    got = token_logprobs(logits, mx.array(targets), temperature=0.7)
    assert got.dtype == mx.float32
    reference = _np_logprobs(np.array(logits.astype(mx.float32)), targets, 0.7)
    np.testing.assert_allclose(np.array(got), reference, rtol=1e-5)


def test_k3_hand_values():
    # d = ref - logp.  logp=-1, ref=-2: d=-1, exp(-1) + 1 - 1 = 0.36788.
    #                  logp=-2, ref=-1: d=+1, e - 1 - 1 = 0.71828.
    #                  equal: exp(0) - 0 - 1 = 0.
    got = kl_k3(mx.array([[-1.0, -2.0, -0.5]]), mx.array([[-2.0, -1.0, -0.5]]))
    np.testing.assert_allclose(np.array(got), [[0.36788, 0.71828, 0.0]], atol=1e-5)


def test_k3_positive_when_different():
    rng = np.random.default_rng(2)
    logp = mx.array(rng.normal(size=(3, 7)).astype(np.float32))
    ref = logp + mx.array(rng.choice([-1.0, 1.0], size=(3, 7)) * 0.1)
    assert np.all(np.array(kl_k3(logp, ref)) > 0)
    assert np.all(np.array(kl_k3(logp, logp)) == 0)


# Ratio 1, beta 0: per_token = -A_i on every completion token. A = [1, -2] and mask rows
# [1, 1, 1] and [1, 0, 0]: per-token losses -1, -1, -1 and +2; masked sum = -3 + 2 = -1, 4 tokens.
# Masked positions get logp far from old_logp (ratio e^5), which must not leak into the loss.
MASK = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
ADVANTAGES = [1.0, -2.0]
ONE_MICRO = LossNormalizer(
    total_sequences=2, total_tokens=4, num_micro_batches=1, max_completion_length=3
)
# As if this were the first of 2 micro-batches, the other holding 1 sequence of 1 token.
FIRST_OF_TWO = LossNormalizer(
    total_sequences=3, total_tokens=5, num_micro_batches=2, max_completion_length=3
)
RATIO_ONE_CASES = [
    # grpo: sequence means -1 and 2, summed 1, / total_sequences 2 = 0.5
    ("grpo", ONE_MICRO, 0.5),
    # bnpo: -1 / 4 tokens = -0.25, / 1 micro-batch
    ("bnpo", ONE_MICRO, -0.25),
    # dr_grpo: -1 / (2 sequences * 3 max length) = -1/6
    ("dr_grpo", ONE_MICRO, -1.0 / 6.0),
    # dapo: -1 / 4 tokens = -0.25
    ("dapo", ONE_MICRO, -0.25),
    # grpo: 1 / total_sequences 3 = 1/3
    ("grpo", FIRST_OF_TWO, 1.0 / 3.0),
    # bnpo: this micro-batch's token mean -0.25, / 2 micro-batches = -0.125
    ("bnpo", FIRST_OF_TWO, -0.125),
    # dr_grpo: -1 / (3 * 3) = -1/9
    ("dr_grpo", FIRST_OF_TWO, -1.0 / 9.0),
    # dapo: -1 / 5 total tokens = -0.2
    ("dapo", FIRST_OF_TWO, -0.2),
]


@pytest.mark.parametrize(("loss_type", "norm", "expected"), RATIO_ONE_CASES)
def test_ratio_one_hand_values(loss_type, norm, expected):
    old_logp = mx.array([[-1.0, -2.0, -0.5], [-1.5, -1.0, -3.0]])
    logp = old_logp + 5.0 * (1.0 - mx.array(MASK))
    loss, stats = policy_loss(
        logp,
        old_logp,
        None,
        mx.array(ADVANTAGES),
        mx.array(MASK) > 0,
        epsilon_low=0.2,
        epsilon_high=0.2,
        beta=0.0,
        loss_type=loss_type,
        norm=norm,
    )
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # 4 tokens with ratio 1 each; nothing clipped; no reference model -> kl 0.
    assert {k: v.item() for k, v in stats.items()} == pytest.approx(
        {"tokens": 4, "kl_sum": 0, "ratio_sum": 4, "clipped_low_sum": 0, "clipped_high_sum": 0}
    )


def test_kl_penalty_hand_value():
    # One token, A = 0 so the surrogate is 0; logp = old = -1, ref = -2: k3 = 0.36788.
    # per_token = 0.1 * 0.36788 = 0.036788; dapo over 1 token.
    norm = LossNormalizer(
        total_sequences=1, total_tokens=1, num_micro_batches=1, max_completion_length=1
    )
    loss, stats = policy_loss(
        mx.array([[-1.0]]),
        mx.array([[-1.0]]),
        mx.array([[-2.0]]),
        mx.array([0.0]),
        mx.array([[1.0]]),
        epsilon_low=0.2,
        epsilon_high=0.2,
        beta=0.1,
        loss_type="dapo",
        norm=norm,
    )
    assert loss.item() == pytest.approx(0.036788, abs=1e-6)
    assert stats["kl_sum"].item() == pytest.approx(0.36788, abs=1e-5)


def test_clipping_hand_case_and_gradient():
    # Four one-token sequences, eps_low = 0.2, eps_high = 0.28 (clip range [0.8, 1.28]):
    #   t0: ratio 1.5,  A=+1: min(1.5, 1.28)   = 1.28  -> l = -1.28, clipped high, grad 0
    #   t1: ratio 1.5,  A=-1: min(-1.5, -1.28) = -1.5  -> l = +1.5,  unclipped, dl/dlogp = +1.5
    #   t2: ratio 0.5,  A=-1: min(-0.5, -0.8)  = -0.8  -> l = +0.8,  clipped low,  grad 0
    #   t3: ratio 1.25, A=+1: 1.25 < 1.28 unclipped    -> l = -1.25, dl/dlogp = -1.25
    # (d ratio / d logp = ratio.) dapo over 4 tokens: loss = (-1.28 + 1.5 + 0.8 - 1.25) / 4
    # = -0.0575; grads / 4 = [0, 0.375, 0, -0.3125]. ratio_sum = 1.5 + 1.5 + 0.5 + 1.25 = 4.75.
    ratios = [1.5, 1.5, 0.5, 1.25]
    old_logp = mx.full((4, 1), -1.0)
    logp = old_logp + mx.array([[math.log(r)] for r in ratios])
    advantages = mx.array([1.0, -1.0, -1.0, 1.0])
    mask = mx.ones((4, 1))
    norm = LossNormalizer(
        total_sequences=4, total_tokens=4, num_micro_batches=1, max_completion_length=1
    )

    def loss_fn(lp):
        return policy_loss(
            lp,
            old_logp,
            None,
            advantages,
            mask,
            epsilon_low=0.2,
            epsilon_high=0.28,
            beta=0.0,
            loss_type="dapo",
            norm=norm,
        )

    (loss, stats), grad = mx.value_and_grad(loss_fn)(logp)
    assert loss.item() == pytest.approx(-0.0575, abs=1e-6)
    np.testing.assert_allclose(np.array(grad)[:, 0], [0.0, 0.375, 0.0, -0.3125], atol=1e-6)
    assert stats["clipped_high_sum"].item() == 1
    assert stats["clipped_low_sum"].item() == 1
    assert stats["ratio_sum"].item() == pytest.approx(4.75, rel=1e-6)


def _four_sequences():
    rng = np.random.default_rng(3)
    per_token = mx.array(rng.normal(size=(4, 4)).astype(np.float32))
    lengths = np.array([4, 2, 1, 3])
    mask = mx.array((np.arange(4)[None, :] < lengths[:, None]).astype(np.float32))
    return per_token, mask


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_sum_to_full_batch(loss_type):
    # 4 sequences of lengths [4, 2, 1, 3] = 10 tokens, max length 4.
    per_token, mask = _four_sequences()
    full_norm = LossNormalizer(
        total_sequences=4, total_tokens=10, num_micro_batches=1, max_completion_length=4
    )
    split_norm = LossNormalizer(
        total_sequences=4, total_tokens=10, num_micro_batches=2, max_completion_length=4
    )
    full = aggregate_loss(per_token, mask, loss_type, full_norm)
    halves = [
        aggregate_loss(per_token[s], mask[s], loss_type, split_norm)
        for s in (slice(0, 2), slice(2, 4))
    ]
    assert (halves[0] + halves[1]).item() == pytest.approx(full.item(), rel=1e-6)


def test_bnpo_micro_batches_average_their_token_means():
    # Micro-batch 1 holds rows 0-1 (4 + 2 = 6 tokens), micro-batch 2 rows 2-3 (1 + 3 = 4 tokens):
    # the summed value is (sum_1 / 6 + sum_2 / 4) / 2, not the full-batch token mean sum / 10.
    per_token, mask = _four_sequences()
    norm = LossNormalizer(
        total_sequences=4, total_tokens=10, num_micro_batches=2, max_completion_length=4
    )
    masked = np.array(per_token * mask)
    expected = (masked[:2].sum() / 6 + masked[2:].sum() / 4) / 2
    got = aggregate_loss(per_token[:2], mask[:2], "bnpo", norm) + aggregate_loss(
        per_token[2:], mask[2:], "bnpo", norm
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(masked.sum() / 10, rel=1e-3)


@pytest.mark.parametrize("mask_dtype", [mx.float32, mx.bool_])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_compiled_equals_eager(loss_type, mask_dtype):
    # Regression: with "tokens" computed as mask.sum(), compiling value_and_grad of the bnpo loss
    # raised "IndexError: _Map_base::at" (MLX 0.32.4; see the comment in policy_loss).
    rng = np.random.default_rng(4)
    old_logp = mx.array(-rng.uniform(0.1, 3.0, size=(4, 6)).astype(np.float32))
    logp = old_logp + mx.array(rng.normal(scale=0.3, size=(4, 6)).astype(np.float32))
    ref_logp = old_logp + mx.array(rng.normal(scale=0.3, size=(4, 6)).astype(np.float32))
    advantages = mx.array(rng.normal(size=(4,)).astype(np.float32))
    lengths = np.array([6, 3, 1, 5])
    mask = mx.array(np.arange(6)[None, :] < lengths[:, None]).astype(mask_dtype)
    norm = LossNormalizer(
        total_sequences=8, total_tokens=30, num_micro_batches=2, max_completion_length=6
    )

    def loss_fn(lp, old, ref, adv, m):
        return policy_loss(
            lp,
            old,
            ref,
            adv,
            m,
            epsilon_low=0.2,
            epsilon_high=0.28,
            beta=0.04,
            loss_type=loss_type,
            norm=norm,
        )

    args = (logp, old_logp, ref_logp, advantages, mask)
    (eager_loss, eager_stats), eager_grad = mx.value_and_grad(loss_fn)(*args)
    (comp_loss, comp_stats), comp_grad = mx.compile(mx.value_and_grad(loss_fn))(*args)
    assert comp_loss.item() == pytest.approx(eager_loss.item(), rel=1e-6)
    for name, value in eager_stats.items():
        assert comp_stats[name].item() == pytest.approx(value.item(), rel=1e-6), name
    np.testing.assert_allclose(np.array(comp_grad), np.array(eager_grad), rtol=1e-5, atol=1e-7)
    assert np.abs(np.array(eager_grad)).sum() > 0


def test_invalid_arguments_raise():
    x = mx.zeros((1, 2))
    adv = mx.zeros((1,))
    ok = {
        "epsilon_low": 0.2,
        "epsilon_high": 0.2,
        "beta": 0.0,
        "loss_type": "grpo",
        "norm": LossNormalizer(
            total_sequences=1, total_tokens=2, num_micro_batches=1, max_completion_length=2
        ),
    }
    bad_cases = [
        ({"loss_type": "ppo"}, "'ppo'"),
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"epsilon_low": 0.0}, "epsilon"),
        ({"epsilon_high": -1.0}, "epsilon"),
        ({"beta": 0.1}, "ref_logp is required"),
    ]
    for override, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            policy_loss(x, x, None, adv, x, **{**ok, **override})
    with pytest.raises(ValueError, match="'token_mean'"):
        aggregate_loss(x, x, "token_mean", ok["norm"])
    with pytest.raises(ValueError, match="total_sequences"):
        LossNormalizer(
            total_sequences=0, total_tokens=1, num_micro_batches=1, max_completion_length=1
        )
    with pytest.raises(ValueError, match="total_tokens"):
        LossNormalizer(
            total_sequences=1, total_tokens=-1, num_micro_batches=1, max_completion_length=1
        )
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(mx.zeros((1, 1, 3)), mx.zeros((1, 1), dtype=mx.int32), temperature=0.0)


def test_one_denominator_table_serves_the_loss_and_the_update_scale():
    # Norm of a 10-sequence batch, 37 tokens, 3 micro-batches, longest completion 6:
    # grpo 10 sequences, bnpo 3 micro-batches, dr_grpo 10 x 6 = 60, dapo 37 tokens.
    norm = LossNormalizer(
        total_sequences=10, total_tokens=37, num_micro_batches=3, max_completion_length=6
    )
    expected = {"grpo": 10, "bnpo": 3, "dr_grpo": 60, "dapo": 37}
    assert LOSS_TYPES == tuple(LOSS_DENOMINATORS) == tuple(expected)
    unit = LossNormalizer(
        total_sequences=1, total_tokens=1, num_micro_batches=1, max_completion_length=1
    )
    per_token = mx.array([[1.0, 2.0, 4.0], [8.0, 16.0, 0.0]])  # (2, 3)
    mask = mx.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # (2, 3)
    for loss_type, denominator in expected.items():
        assert loss_denominator(loss_type, norm) == denominator
        assert loss_scale(loss_type, norm) == 1.0 / denominator
        # The update's compiled loss (unit normaliser) times its scale is the real loss.
        unit_loss = aggregate_loss(per_token, mask, loss_type, unit).item()
        real_loss = aggregate_loss(per_token, mask, loss_type, norm).item()
        assert unit_loss * loss_scale(loss_type, norm) == pytest.approx(real_loss, rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss_type 'ppo'"):
        loss_denominator("ppo", norm)
