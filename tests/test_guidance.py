"""Teacher-guided groups (LUFFY-style off-policy guidance): the group selection with teacher
members against hand-derived advantages, the off-policy loss term against hand values, and
the update on the tiny model learning a teacher answer from an all-fail group."""

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest

from rfai.config import AdapterConfig, ConfigError, GRPOConfig, StudentConfig, TrainingConfig
from rfai.extract import extract_code
from rfai.groups import GroupSelection, select_groups, training_samples
from rfai.loss import LossNormalizer, policy_loss
from rfai.rollout import Completion
from rfai.student import load_student
from rfai.update import PolicyUpdater
from scorers.task import Task

EPS = 1e-4


def guided(**changes) -> GRPOConfig:
    return GRPOConfig(**{"teacher_guidance": 1, **changes})


# --- group selection ----------------------------------------------------------------------


def test_regression_hard_tasks_teach_nothing_all_fail_group_gets_the_teacher_term():
    # [0, 0, 0, 0 | 1]: mean 0.2; teacher centred 0.8; std (ddof=1) = sqrt((4 * 0.04 + 0.64) / 4)
    # = sqrt(0.2). Students' -0.2 / std are set to 0 (all-fail rule).
    sel = select_groups([0.0] * 4, [None] * 4, 4, guided(), [1.0])
    assert sel.indices == [0, 1, 2, 3] and sel.advantages == [0.0] * 4
    assert sel.teacher == {0: pytest.approx(0.8 / (math.sqrt(0.2) + EPS), rel=1e-5)}
    assert sel.teacher[0] == pytest.approx(1.7885, abs=1e-3)  # the 1.79


def test_without_guidance_the_all_fail_group_has_no_signal():
    sel = select_groups([0.0] * 4, [None] * 4, 4, GRPOConfig(teacher_guidance=0), [1.0])
    assert sel.advantages == [0.0] * 4 and sel.teacher == {}


def test_regression_the_teacher_cancels_out_guided_advantages_depend_on_its_score():
    """The issue's example: students [.2, .5, .6, .9] had the same advantages whether the
    teacher scored 0.95 or 0.5 (one divisor or shift per group, removed by standardising).
    As a group member the teacher's reward changes them."""
    students = [0.2, 0.5, 0.6, 0.9]
    high = select_groups(students, [None] * 4, 4, guided(), [0.95]).advantages
    low = select_groups(students, [None] * 4, 4, guided(), [0.5]).advantages
    assert not np.allclose(high, low, atol=1e-3)
    assert all(h < w for h, w in zip(high, low, strict=True))  # a better teacher: lower
    plain = select_groups(students, [None] * 4, 4, GRPOConfig(scale_rewards="none"))
    # No teacher: mean 0.55.
    assert plain.advantages == pytest.approx([-0.35, -0.05, 0.05, 0.35], abs=1e-6)
    sel = select_groups(students, [None] * 4, 4, guided(scale_rewards="none"), [0.95])
    # With the teacher: mean (2.2 + 0.95) / 5 = 0.63; students below the teacher go negative.
    assert sel.advantages == pytest.approx([-0.43, -0.13, -0.03, 0.27], abs=1e-6)
    assert sel.teacher == {0: pytest.approx(0.32, abs=1e-6)}
    # Under group scaling the standardised advantages differ from the unguided ones too.
    scaled = select_groups(students, [None] * 4, 4, guided(), [0.95])
    unguided = select_groups(students, [None] * 4, 4, GRPOConfig())
    assert not np.allclose(scaled.advantages, unguided.advantages, atol=1e-3)


def test_a_teacher_below_the_students_gets_advantage_zero_not_negative():
    # [1, 0.5 | 0.2]: mean 0.56667; the teacher's -0.36667 is clamped to 0.
    sel = select_groups([1.0, 0.5], [None] * 2, 2, guided(scale_rewards="none"), [0.2])
    assert sel.advantages == pytest.approx([1 - 1.7 / 3, 0.5 - 1.7 / 3], abs=1e-6)
    assert sel.teacher == {0: 0.0}


def test_batch_scale_with_a_guided_and_an_unguided_group():
    # Group 0 [0, 1], no teacher member; group 1 [0, 0] + teacher 1. All five members:
    # [0, 1, 0, 0, 1], mean 0.4, variance (ddof=1) 1.2 / 4 = 0.3.
    std = math.sqrt(0.3) + EPS
    sel = select_groups([0.0, 1.0, 0.0, 0.0], [None] * 4, 2, guided(scale_rewards="batch"),
                        [None, 1.0])  # fmt: skip
    assert sel.advantages == pytest.approx([-0.5 / std, 0.5 / std, 0.0, 0.0], rel=1e-5)
    assert sel.teacher == {1: pytest.approx((2 / 3) / std, rel=1e-5)}


def test_two_teacher_members_per_group():
    # [0, 0 | 1, 1]: mean 0.5, each teacher member +0.5.
    sel = select_groups([0.0, 0.0], [None] * 2, 2, guided(teacher_guidance=2, scale_rewards="none"),
                        [1.0])  # fmt: skip
    assert sel.teacher == {0: pytest.approx(0.5)} and sel.advantages == [0.0, 0.0]


def test_zero_variance_filter_keeps_an_all_fail_group_that_has_a_teacher():
    drop = guided(drop_zero_variance_groups=True, scale_rewards="none")
    # Group 0 all-fail with a teacher: kept. Group 1: the teacher ties every student: dropped.
    sel = select_groups([0.0, 0.0, 1.0, 1.0], [None] * 4, 2, drop, [1.0, 1.0])
    assert sel.indices == [0, 1] and sel.zero_variance == 1
    assert sel.teacher == {0: pytest.approx(2 / 3)}


def test_a_skipped_group_has_no_teacher_member():
    sel = select_groups([0.0, None, 0.0, 0.0], [None, "x", None, None], 2, guided(), [1.0, 1.0])
    assert sel.skipped == {0: "x"} and set(sel.teacher) == {1}


def test_teacher_rewards_must_be_one_per_group():
    with pytest.raises(ValueError, match="2 teacher rewards for 1 groups"):
        select_groups([0.0, 1.0], [None, None], 2, guided(), [1.0, 1.0])


def test_config_rejects_negative_guidance_keys():
    with pytest.raises(ConfigError, match=r"grpo\.teacher_guidance"):
        GRPOConfig(teacher_guidance=-1)
    with pytest.raises(ConfigError, match=r"grpo\.guidance_gamma"):
        GRPOConfig(guidance_gamma=-0.1)


def test_training_samples_append_teacher_members_as_off_policy_rows():
    completions = [Completion(i, i // 2, i % 2, (10 + i,), "stop", "") for i in range(4)]
    logprobs = [(-0.5,)] * 4
    prompts = [[1, 2], [3]]
    sel = GroupSelection([2, 3], [0.0, 0.0], {0: "x"}, 0, {1: 0.7})
    samples = training_samples(sel, completions, logprobs, prompts, [None, (7, 8, 9)], 2)
    assert [s.off_policy for s in samples] == [False, False, True, True]
    teacher = samples[2]
    assert teacher == samples[3]
    assert (teacher.prompt, tuple(teacher.completion)) == ([3], (7, 8, 9))
    assert teacher.advantage == 0.7 and not teacher.truncated
    with pytest.raises(ValueError, match="group 1 has teacher members but no teacher"):
        training_samples(sel, completions, logprobs, prompts, [None, None], 1)


# --- the off-policy loss term ---------------------------------------------------------------

LOGITS = mx.array(
    [[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[0.0, 2.0, 0.0], [-1.0, 0.0, 3.0]]]
)  # (B=2, T=2, V=3)
TARGETS = mx.array([[0, 1], [1, 0]])
NORM = LossNormalizer(total_sequences=2, total_tokens=4, num_micro_batches=1,
                      max_completion_length=2)  # fmt: skip


def hand_logp() -> np.ndarray:
    z = np.array(LOGITS, np.float64)
    logsm = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return np.take_along_axis(logsm, np.array(TARGETS)[..., None], -1)[..., 0]  # (2, 2)


def guided_loss(logp, gamma, beta=0.0, ref=None):
    # Row 0 a student (old = logp: ratio 1), row 1 the teacher (old_logp garbage: ignored).
    old = mx.concatenate([mx.stop_gradient(logp[:1]), mx.full((1, 2), -50.0)])
    return policy_loss(
        logp, old, ref, mx.array([0.5, 2.0]), mx.ones((2, 2)), epsilon_low=0.2,
        epsilon_high=0.28, beta=beta, loss_type="dapo", norm=NORM,
        off_policy=mx.array([0.0, 1.0]), guidance_gamma=gamma,
    )  # fmt: skip


@pytest.mark.parametrize("gamma", [0.0, 0.1, 1.0])
def test_off_policy_term_by_hand(gamma):
    lp = hand_logp()
    p = np.exp(lp[1])
    f = lp[1] if gamma == 0 else p / (p + gamma)
    # dapo: token sum / 4. Student row: -A * ratio = -0.5 per token; teacher: -2 * f.
    expected = (-0.5 * 2 - 2.0 * f.sum()) / 4
    logp = mx.array(lp.astype(np.float32))
    loss, stats = guided_loss(logp, gamma)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # d loss / d logp: student -A / 4; teacher -A * f'(logp) / 4 with f' = 1 (unshaped) or
    # gamma * p / (p + gamma)^2 (shaped): no ratio, no clip.
    grad = mx.grad(lambda x: guided_loss(x, gamma)[0])(logp)
    df = np.ones(2) if gamma == 0 else gamma * p / (p + gamma) ** 2
    assert np.array(grad) == pytest.approx(np.stack([[-0.125, -0.125], -2.0 * df / 4]), rel=1e-4)
    assert stats["tokens"].item() == 4 and stats["teacher_tokens"].item() == 2
    assert stats["teacher_prob_sum"].item() == pytest.approx(p.sum(), rel=1e-5)
    assert stats["ratio_sum"].item() == pytest.approx(2.0)  # the student row's 2 tokens only


def test_off_policy_rows_get_no_kl_term():
    lp = mx.array(hand_logp().astype(np.float32))
    ref = lp - 1.0  # k3 with d = -1: e^-1 + 1 - 1 = 0.3679 per token
    without, _ = guided_loss(lp, 0.0)
    with_kl, stats = guided_loss(lp, 0.0, beta=0.5, ref=ref)
    # Only the student row's two tokens add beta * k3, over the dapo denominator 4.
    assert with_kl.item() - without.item() == pytest.approx(0.5 * 2 * math.exp(-1) / 4, rel=1e-5)
    assert stats["kl_sum"].item() == pytest.approx(2 * math.exp(-1), rel=1e-5)


def test_off_policy_rows_give_the_same_loss_compiled():
    lp = mx.array(hand_logp().astype(np.float32))
    eager = guided_loss(lp, 0.1)[0].item()
    assert mx.compile(lambda x: guided_loss(x, 0.1)[0])(lp).item() == pytest.approx(eager)


# --- the update on the tiny model ------------------------------------------------------------


def test_update_learns_the_teacher_answer_from_an_all_fail_group(tiny_model_dir):
    """A student whose samples all failed (advantages 0) plus a teacher member: the teacher's
    tokens gain probability step after step; `teacher_token_prob` reports it."""
    student = load_student(
        StudentConfig(path=str(tiny_model_dir), adapter=AdapterConfig(fine_tune_type="full")),
        seed=0,
    )
    student.model.eval()
    tok = student.tokenizer
    prompt = tok.encode("Write add(a, b).", add_special_tokens=False)
    answer = (*tok.encode("```python\ndef add(a, b):\n    return a + b\n```"), tok.eos_token_id)
    sel = select_groups([0.0] * 4, [None] * 4, 4, guided(beta=0.0), [1.0])
    failed = [Completion(i, 0, i, (5, 6), "stop", "") for i in range(4)]
    samples = training_samples(sel, failed, [(-3.0, -3.0)] * 4, [prompt], [answer], 1)
    training = TrainingConfig(learning_rate=3e-3, warmup_steps=0, lr_schedule="constant")
    updater = PolicyUpdater(student, guided(beta=0.0), training, temperature=1.0,
                            total_updates=30, max_new_tokens=64)  # fmt: skip
    probs = [updater.step(samples).teacher_token_prob for _ in range(30)]
    assert probs[0] < 0.05, probs  # a random tiny model: close to 1 / vocabulary
    assert probs[-1] > 0.5, probs
    assert all(b > a for a, b in itertools.pairwise(probs[:11])), probs


def test_teacher_answer_is_the_students_answer_format_in_its_tokens(tiny_model_dir):
    """`Student.answer_tokens`: the fenced block the prompt asks for, ending with the stop
    token; the student's own extraction reads the teacher's code back exactly."""
    student = load_student(StudentConfig(path=str(tiny_model_dir)), seed=0)
    code = "def add(a, b):\n    return a + b"
    for language, fence in (("python", "python"), ("cpp", "cpp"), ("rust", "rust")):
        task = Task("t", "Add.", language, "add", ("assert add(1, 2) == 3",), None)
        tokens = student.answer_tokens(task, f"\n{code}\n\n")
        assert tokens[-1] == student.tokenizer.eos_token_id
        text = student.tokenizer.decode(list(tokens[:-1]))
        assert text == f"```{fence}\n{code}\n```"
        assert extract_code(text, language, "add").code == code
