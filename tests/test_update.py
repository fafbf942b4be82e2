"""The policy update: packing, loss scales, the LR schedule, and PolicyUpdater on the tiny model.

Parameter comparisons use accumulated GRADIENTS where the claim is about the loss (an Adam
first step is ~lr * sign(grad), which would hide a wrong scale factor) and parameters where
the claim is about the whole update.
"""

import math
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from rfai.config import AdapterConfig, GRPOConfig, StudentConfig, TrainingConfig
from rfai.loss import LossNormalizer, policy_loss, token_logprobs
from rfai.student import Student, load_student
from rfai.update import (
    LENGTH_BUCKET,
    PolicyUpdater,
    Sample,
    build_optimizer,
    loss_scale,
    pack,
)

TEMPERATURE = 0.7
MAX_NEW_TOKENS = 16  # rollout.max_new_tokens of these tests; make_samples' longest completion is 9

# -- pack -----------------------------------------------------------------------------------


def test_pack_two_samples_by_hand() -> None:
    a = Sample(
        prompt=[1, 2, 3],
        completion=[4, 5],
        behaviour_logprobs=[-0.1, -0.2],
        advantage=1.5,
        truncated=False,
    )
    b = Sample(
        prompt=[6],
        completion=[7, 8, 9],
        behaviour_logprobs=[-0.3, -0.4, -0.5],
        advantage=-0.5,
        truncated=True,
    )
    batch = pack([a, b], rows=3, mask_truncated=False)
    # a: full = 1 2 3 4 5, inputs = full[:-1] = 1 2 3 4, targets = full[1:] = 2 3 4 5;
    #    completion targets 4, 5 sit at positions 2, 3 (start = len(prompt) - 1 = 2).
    # b: full = 6 7 8 9, inputs 6 7 8, targets 7 8 9, all completion (start = 0).
    # Longest input is 4 tokens, bucketed up to 32. Row 2 is padding.
    assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (3, LENGTH_BUCKET)
    assert batch.inputs.dtype == mx.int32 and batch.mask.dtype == mx.float32
    pad = [0] * (LENGTH_BUCKET - 4)
    inputs, targets = np.array(batch.inputs), np.array(batch.targets)
    mask, old = np.array(batch.mask), np.array(batch.old_logp)
    assert inputs[0].tolist() == [1, 2, 3, 4, *pad]
    assert targets[0].tolist() == [2, 3, 4, 5, *pad]
    assert inputs[1].tolist() == [6, 7, 8, 0, *pad]
    assert targets[1].tolist() == [7, 8, 9, 0, *pad]
    assert mask[0].tolist() == [0, 0, 1, 1, *pad]
    assert mask[1].tolist() == [1, 1, 1, 0, *pad]
    np.testing.assert_array_equal(old[0, :4], np.float32([0, 0, -0.1, -0.2]))
    np.testing.assert_array_equal(old[1, :4], np.float32([-0.3, -0.4, -0.5, 0]))
    assert not old[:, 4:].any()
    # The padding row: nothing to learn from.
    assert not mask[2].any() and not inputs[2].any() and not old[2].any()
    assert np.array(batch.advantages).tolist() == [1.5, -0.5, 0.0]


def test_pack_mask_truncated_zeroes_only_the_truncated_sample() -> None:
    a = Sample([1, 2], [3, 4], [-1.0, -2.0], 1.0, truncated=False)
    b = Sample([5, 6], [7, 8], [-3.0, -4.0], 1.0, truncated=True)
    batch = pack([a, b], rows=2, mask_truncated=True)
    mask = np.array(batch.mask)
    assert mask[0, :3].tolist() == [0, 1, 1]
    assert not mask[1].any()
    # Behaviour log-probs stay in place; only the mask drops the sample.
    assert np.array(batch.old_logp)[1, :3].tolist() == [0.0, -3.0, -4.0]


@pytest.mark.parametrize(
    ("prompt_len", "completion_len", "width"),
    # input length = prompt + completion - 1, rounded up to a multiple of 32
    [(1, 1, 32), (2, 1, 32), (20, 13, 32), (20, 14, 64), (40, 25, 64), (40, 26, 96)],
)
def test_pack_width_is_bucketed(prompt_len: int, completion_len: int, width: int) -> None:
    s = Sample([1] * prompt_len, [2] * completion_len, [-1.0] * completion_len, 0.0, False)
    assert pack([s], rows=1, mask_truncated=False).inputs.shape == (1, width)


@pytest.mark.parametrize("count", [0, 3])
def test_pack_rejects_wrong_sample_count(count: int) -> None:
    samples = [Sample([1], [2, 3], [-1.0, -1.0], 0.0, False)] * count
    with pytest.raises(ValueError, match=r"pack needs 1\.\.2 samples"):
        pack(samples, rows=2, mask_truncated=False)


# -- loss_scale -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        ("grpo", 1 / 4),  # 1 / total_sequences
        ("bnpo", 1 / 2),  # 1 / num_micro_batches
        ("dr_grpo", 1 / 20),  # 1 / (total_sequences * max_completion_length) = 1 / (4 * 5)
        ("dapo", 1 / 10),  # 1 / total_tokens
    ],
)
def test_loss_scale(loss_type: str, expected: float) -> None:
    norm = LossNormalizer(
        total_sequences=4, total_tokens=10, num_micro_batches=2, max_completion_length=5
    )
    assert loss_scale(loss_type, norm) == pytest.approx(expected, rel=1e-12)


def test_loss_scale_dapo_without_tokens_and_unknown_type() -> None:
    norm = LossNormalizer(
        total_sequences=2, total_tokens=0, num_micro_batches=1, max_completion_length=3
    )
    assert loss_scale("dapo", norm) == 1.0  # all masked: loss is 0 anyway, avoid 1/0
    with pytest.raises(ValueError, match="unknown loss_type 'ppo'"):
        loss_scale("ppo", norm)


# -- build_optimizer ------------------------------------------------------------------------


def learning_rates(cfg: TrainingConfig, total_updates: int) -> list[float]:
    """The rate each of `total_updates` optimizer updates uses.

    The optimizer evaluates its schedule at the step count inside `update`, and
    `learning_rate` afterwards holds the value that update used.
    """
    optimizer = build_optimizer(cfg, total_updates)
    params = {"w": mx.zeros((1,))}
    rates = []
    for _ in range(total_updates):
        params = optimizer.apply_gradients({"w": mx.ones((1,))}, params)
        rates.append(optimizer.learning_rate.item())
    return rates


def test_cosine_schedule_with_warmup_by_hand() -> None:
    cfg = TrainingConfig(learning_rate=1e-3, warmup_steps=4, min_lr_ratio=0.1, lr_schedule="cosine")
    rates = learning_rates(cfg, total_updates=14)
    # Warmup: linear from lr / (warmup + 1) = 2e-4 towards 1e-3 in 4 steps of 2e-4.
    # Then cosine over total - warmup = 10 steps from 1e-3 to 1e-4:
    #   lr(4 + k) = 1e-4 + 0.5 * (1 + cos(pi * k / 10)) * 9e-4
    #   k = 0: 1e-3;  k = 5 (middle): 1e-4 + 0.5 * 9e-4 = 5.5e-4;
    #   k = 9 (last update): 1e-4 + 0.5 * (1 + cos(0.9 pi)) * 9e-4 = 1.220246e-4.
    expected = [2e-4, 4e-4, 6e-4, 8e-4] + [
        1e-4 + 0.5 * (1 + math.cos(math.pi * k / 10)) * 9e-4 for k in range(10)
    ]
    assert expected[4] == pytest.approx(1e-3) and expected[9] == pytest.approx(5.5e-4)
    assert expected[13] == pytest.approx(1.220246e-4, rel=1e-6)
    np.testing.assert_allclose(rates, expected, rtol=1e-5)


def test_cosine_schedule_ends_at_min_lr() -> None:
    cfg = TrainingConfig(
        learning_rate=1e-3, warmup_steps=0, min_lr_ratio=0.25, lr_schedule="cosine"
    )
    optimizer = build_optimizer(cfg, total_updates=8)
    # Evaluated one past the last update (step 8 of 8), cosine reaches lr * min_lr_ratio.
    params = {"w": mx.zeros((1,))}
    for _ in range(9):
        params = optimizer.apply_gradients({"w": mx.ones((1,))}, params)
    assert optimizer.learning_rate.item() == pytest.approx(2.5e-4, rel=1e-5)


def test_constant_schedule_and_warmup_longer_than_run() -> None:
    cfg = TrainingConfig(learning_rate=1e-3, warmup_steps=2, lr_schedule="constant")
    np.testing.assert_allclose(
        learning_rates(cfg, 5), [1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 1e-3], rtol=1e-5
    )
    # warmup 10 > 3 updates: shortened to 2 so the last update still reaches the peak.
    cfg = TrainingConfig(learning_rate=3e-3, warmup_steps=10, lr_schedule="constant")
    np.testing.assert_allclose(learning_rates(cfg, 3), [1e-3, 2e-3, 3e-3], rtol=1e-5)


# -- PolicyUpdater on the tiny model --------------------------------------------------------


def make_student(model_dir: Path, **adapter) -> Student:
    config = StudentConfig(path=str(model_dir), adapter=AdapterConfig(rank=4, **adapter))
    student = load_student(config, seed=0)
    # Move lora_b off zero so the policy differs from the reference (KL > 0) and lora_a
    # gets gradients too; the same seed makes every student built here identical.
    mx.random.seed(1)
    params = student.trainable_parameters()
    student.model.update(
        tree_unflatten(
            [
                (k, mx.random.normal(v.shape) * 0.05)
                for k, v in params.items()
                if k.endswith("lora_b")
            ]
        )
    )
    mx.eval(student.model.parameters())
    return student


def current_logprobs(student: Student, prompt: list[int], completion: list[int]) -> list[float]:
    """The student's own log-probs of `completion`: an exactly on-policy behaviour."""
    full = mx.array([prompt + completion])
    logp = token_logprobs(student.model(full[:, :-1]), full[:, 1:], TEMPERATURE)  # (1, n)
    return logp[0, len(prompt) - 1 :].tolist()


def make_samples(student: Student, on_policy: bool = False) -> list[Sample]:
    rng = np.random.default_rng(0)
    specs = [(5, 7, 1.0), (3, 4, -0.5), (6, 9, 0.8), (4, 2, -1.3)]  # (prompt, completion, adv)
    samples = []
    for p_len, c_len, adv in specs:
        prompt = rng.integers(10, 1000, p_len).tolist()
        completion = rng.integers(10, 1000, c_len).tolist()
        behaviour = current_logprobs(student, prompt, completion)
        if not on_policy:  # a slightly different behaviour policy, so ratios are not all 1
            behaviour = [
                x + float(d) for x, d in zip(behaviour, rng.normal(0, 0.1, c_len), strict=True)
            ]
        samples.append(Sample(prompt, completion, behaviour, adv, truncated=False))
    return samples


def training_config(**changes) -> TrainingConfig:
    return replace(
        TrainingConfig(learning_rate=1e-2, warmup_steps=0, micro_batch_size=2, compile=False),
        **changes,
    )


def record_grads(updater: PolicyUpdater) -> list[dict[str, mx.array]]:
    """Wrap the updater's optimizer step to keep the accumulated gradients it is given."""
    seen: list[dict[str, mx.array]] = []
    original = updater._apply

    def apply(grads):
        seen.append(dict(tree_flatten(grads)))
        return original(grads)

    updater._apply = apply
    return seen


def params_of(student: Student) -> dict[str, mx.array]:
    return student.trainable_parameters()


def assert_trees_close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert set(a) == set(b)
    for name in a:
        assert mx.allclose(a[name], b[name], rtol=rtol, atol=atol).item(), (
            name,
            mx.abs(a[name] - b[name]).max().item(),
        )


def test_compiled_and_eager_steps_give_the_same_update(tiny_model_dir: Path) -> None:
    results = []
    for compile_ in (False, True):
        student = make_student(tiny_model_dir)
        samples = make_samples(student)
        updater = PolicyUpdater(
            student,
            GRPOConfig(),
            training_config(compile=compile_),
            TEMPERATURE,
            10,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        before = params_of(student)
        stats = [updater.step(samples) for _ in range(2)]  # the second step reuses the traces
        after = params_of(student)
        assert any(not mx.array_equal(before[k], after[k]).item() for k in before)
        results.append((after, stats))
    (eager, eager_stats), (compiled, compiled_stats) = results
    assert_trees_close(eager, compiled, rtol=1e-4, atol=1e-6)
    for e, c in zip(eager_stats, compiled_stats, strict=True):
        assert c.loss == pytest.approx(e.loss, rel=1e-4, abs=1e-6)
        assert c.kl == pytest.approx(e.kl, rel=1e-3, abs=1e-7)
        assert c.grad_norm == pytest.approx(e.grad_norm, rel=1e-4)
        assert c.tokens == e.tokens == 7 + 4 + 9 + 2


def full_batch_grads(
    student: Student, samples: list[Sample], grpo: GRPOConfig
) -> dict[str, mx.array]:
    """The gradient of the whole-batch loss in one piece, with the true normaliser."""
    batch = pack(samples, rows=len(samples), mask_truncated=False)
    with student.adapter_disabled():
        ref = token_logprobs(student.model(batch.inputs), batch.targets, TEMPERATURE)
    total_tokens = int(batch.mask.sum().item())
    norm = LossNormalizer(len(samples), total_tokens, 1, MAX_NEW_TOKENS)

    def loss_fn(model):
        logp = token_logprobs(model(batch.inputs), batch.targets, TEMPERATURE)
        loss, _ = policy_loss(
            logp,
            batch.old_logp,
            ref,
            batch.advantages,
            batch.mask,
            epsilon_low=grpo.epsilon_low,
            epsilon_high=grpo.epsilon_high,
            beta=grpo.beta,
            loss_type=grpo.loss_type,
            norm=norm,
        )
        return loss

    _, grads = nn.value_and_grad(student.model, loss_fn)(student.model)
    return dict(tree_flatten(grads))


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_gradient_accumulation_matches_the_full_batch(tiny_model_dir: Path, loss_type: str) -> None:
    # micro_batch_size 2 (two micro-batches, accumulated) and 4 (one) must both give the
    # gradient of the full-batch loss; bnpo is excluded because it depends on the split by
    # definition. max_grad_norm 0: clipping would rescale both to norm 1 and hide a wrong
    # factor.
    grpo = GRPOConfig(loss_type=loss_type, beta=0.04)
    student = make_student(tiny_model_dir)
    samples = make_samples(student)
    expected = full_batch_grads(student, samples, grpo)
    assert max(mx.abs(g).max().item() for g in expected.values()) > 1e-3

    updates = {}
    for micro in (2, 4):
        student = make_student(tiny_model_dir)
        updater = PolicyUpdater(
            student,
            grpo,
            training_config(micro_batch_size=micro, max_grad_norm=0.0),
            TEMPERATURE,
            10,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        grads = record_grads(updater)
        updater.step(samples)
        assert len(grads) == 1
        assert_trees_close(grads[0], expected, rtol=1e-4, atol=1e-6)
        updates[micro] = params_of(student)
    assert_trees_close(updates[2], updates[4], rtol=1e-4, atol=1e-5)


def test_regression_dr_grpo_divides_by_max_new_tokens_not_the_batch_longest(
    tiny_model_dir: Path,
) -> None:
    # Bug: dr_grpo divided by the batch's longest completion (9 tokens here), so its divisor
    # changed from batch to batch; Dr. GRPO and TRL divide by the configured limit.
    # On-policy samples and beta 0 make every ratio 1, so each token's loss is -A_i and the
    # batch loss is -(sum_i A_i * n_i) / (N * max_new_tokens). make_samples' completions:
    #   lengths n = 7, 4, 9, 2; advantages A = 1.0, -0.5, 0.8, -1.3
    #   sum A_i n_i = 7.0 - 2.0 + 7.2 - 2.6 = 9.6, N = 4
    #   max_new_tokens 16: -9.6 / (4 * 16) = -0.15    (the old divisor 4 * 9 gave -0.2667)
    #   max_new_tokens 32: -9.6 / (4 * 32) = -0.075   (the old code gave -0.2667 again)
    for max_new_tokens, expected in ((16, -0.15), (32, -0.075)):
        student = make_student(tiny_model_dir)
        samples = make_samples(student, on_policy=True)
        grpo = GRPOConfig(loss_type="dr_grpo", beta=0.0, num_iterations=1)
        updater = PolicyUpdater(
            student, grpo, training_config(), TEMPERATURE, 10, max_new_tokens=max_new_tokens
        )
        stats = updater.step(samples)
        assert stats.ratio_mean == pytest.approx(1.0, abs=1e-5)
        assert stats.loss == pytest.approx(expected, abs=1e-5)


def test_policy_updater_rejects_a_zero_max_new_tokens(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        PolicyUpdater(
            make_student(tiny_model_dir),
            GRPOConfig(),
            training_config(),
            TEMPERATURE,
            10,
            max_new_tokens=0,
        )


def test_second_iteration_is_off_policy(tiny_model_dir: Path) -> None:
    # Behaviour log-probs equal the student's own, so the first iteration's ratio is exactly
    # 1 on every token; after one optimizer update the second iteration's is not.
    ratios = {}
    for iterations in (1, 2):
        student = make_student(tiny_model_dir)
        samples = make_samples(student, on_policy=True)
        grpo = GRPOConfig(num_iterations=iterations, beta=0.0)
        updater = PolicyUpdater(
            student, grpo, training_config(), TEMPERATURE, 10, max_new_tokens=MAX_NEW_TOKENS
        )
        grads = record_grads(updater)
        stats = updater.step(samples)
        assert len(grads) == iterations
        assert stats.logprob_mismatch < 1e-5  # measured on the first iteration only
        ratios[iterations] = stats.ratio_mean
    assert ratios[1] == pytest.approx(1.0, abs=1e-5)
    # ratio_mean averages the two iterations: (1 + r2) / 2 != 1 means r2 != 1.
    assert abs(ratios[2] - 1.0) > 1e-3


def test_regression_reported_learning_rate_is_the_one_used(tiny_model_dir: Path) -> None:
    # Bug: UpdateStats.learning_rate was read before the step's optimizer update, while MLX
    # evaluates the schedule inside the update, so every step logged the PREVIOUS step's
    # rate. Warmup 4 at peak 1e-2: updates use 2e-3, 4e-3, 6e-3 (see the schedule test).
    student = make_student(tiny_model_dir)
    samples = make_samples(student)
    updater = PolicyUpdater(
        student,
        GRPOConfig(),
        training_config(warmup_steps=4),
        TEMPERATURE,
        10,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    reported = [updater.step(samples).learning_rate for _ in range(3)]
    np.testing.assert_allclose(reported, [2e-3, 4e-3, 6e-3], rtol=1e-5)


def test_regression_compiled_step_draws_new_dropout_masks(tiny_model_dir: Path) -> None:
    # Bug: the compiled step's state lacked mx.random.state, so mx.compile baked one random
    # key into the graph and LoRA dropout applied the SAME mask at every step. With a
    # negligible learning rate the parameters barely move, so two steps on the same samples
    # differ in loss only through dropout.
    student = make_student(tiny_model_dir, dropout=0.5)
    samples = make_samples(student)
    cfg = training_config(compile=True, learning_rate=1e-12)
    updater = PolicyUpdater(
        student, GRPOConfig(beta=0.0), cfg, TEMPERATURE, 10, max_new_tokens=MAX_NEW_TOKENS
    )
    losses = [updater.step(samples).loss for _ in range(3)]
    assert len({round(loss, 6) for loss in losses}) == 3, losses


def test_regression_updated_means_the_weights_moved(tiny_model_dir: Path) -> None:
    # Bug (issue 10): metrics said "updated": true with loss 0 while every advantage was 0 and
    # the adapter never moved. The step now reports the L2 norm of the parameter change.
    from mlx.utils import tree_flatten

    for advantage_scale in (0.0, 1.0):
        student = make_student(tiny_model_dir)
        samples = [replace(s, advantage=s.advantage * advantage_scale) for s in
                   make_samples(student, on_policy=True)]  # fmt: skip
        updater = PolicyUpdater(
            student, GRPOConfig(beta=0.0), training_config(), TEMPERATURE, 10,
            max_new_tokens=MAX_NEW_TOKENS,
        )  # fmt: skip
        before = dict(tree_flatten(student.model.trainable_parameters()))
        stats = updater.step(samples)
        after = dict(tree_flatten(student.model.trainable_parameters()))
        moved = sum(float(((after[k] - before[k]) ** 2).sum().item()) for k in before) ** 0.5
        assert stats.update_norm == pytest.approx(moved, rel=1e-4, abs=1e-9)
        assert (stats.update_norm > 0) == (advantage_scale > 0)


def test_a_zero_gradient_batch_skips_the_backward_pass_and_updates_the_same(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every advantage 0 with beta 0 (a batch of all-failing groups): the gradient is exactly
    # 0, so only the forward pass runs, for the statistics. Weights, optimizer state and
    # statistics must be those of the full forward and backward pass, also after an earlier
    # step left momentum in Adam (a zero gradient still moves the weights then).
    import rfai.update

    def run(skip: bool):
        student = make_student(tiny_model_dir)
        samples = make_samples(student)
        updater = PolicyUpdater(
            student, GRPOConfig(beta=0.0, num_iterations=2), training_config(), TEMPERATURE,
            10, max_new_tokens=MAX_NEW_TOKENS,
        )  # fmt: skip
        calls = []
        micro_step = updater._micro_step
        updater._micro_step = lambda *a: calls.append(1) or micro_step(*a)
        first = updater.step(samples)
        backward_passes = len(calls)
        if not skip:
            monkeypatch.setattr(rfai.update, "zero_gradient", lambda *a: False)
        idle = updater.step([replace(s, advantage=0.0) for s in samples])
        monkeypatch.undo()
        return first, idle, len(calls) - backward_passes, params_of(student), updater

    first, idle, backward, params, updater = run(skip=True)
    full_first, full_idle, full_backward, full_params, full_updater = run(skip=False)
    assert backward == 0 and full_backward == 4  # 2 iterations x 2 micro-batches
    assert first == full_first and idle == full_idle
    assert idle.loss == 0.0 and idle.grad_norm == 0.0 and idle.update_norm > 0  # momentum
    assert all(mx.array_equal(params[k], full_params[k]).item() for k in params)
    state = dict(tree_flatten(updater.optimizer.state))
    full_state = dict(tree_flatten(full_updater.optimizer.state))
    assert all(mx.array_equal(state[k], full_state[k]).item() for k in state)
    # Any KL or distillation term, or one non-zero advantage, has a gradient: not skipped.
    samples = make_samples(make_student(tiny_model_dir))
    zero = [replace(s, advantage=0.0) for s in samples]
    assert rfai.update.zero_gradient(zero, 0.0, distilling=False)
    assert not rfai.update.zero_gradient(zero, 0.04, distilling=False)
    assert not rfai.update.zero_gradient(zero, 0.0, distilling=True)
    assert not rfai.update.zero_gradient([*zero[:-1], samples[-1]], 0.0, distilling=False)
