"""On-policy distillation (`grpo.distill_weight`, rfai/loss.py): the per-token term by hand,
the config and tokenizer checks, and the tiny student moving towards a second tiny model
through the real pipeline."""

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest

from rfai.config import Config, ConfigError, GRPOConfig, TeacherConfig
from rfai.config_load import load_config
from rfai.groups import select_groups
from rfai.loss import LossNormalizer, policy_loss, token_logprobs
from rfai.rollout import generate_groups
from rfai.run import build_run, load_distiller
from rfai.student import load_student
from rfai.teachers import TeacherError
from rfai.teachers.mlx_local import check_same_tokenizer
from rfai.tiny_model import build_tiny_model
from rfai.trainer import run_step
from rfai.update import Sample, pack
from tests.helpers import REPO

NORM = LossNormalizer(total_sequences=2, total_tokens=5, num_micro_batches=1,
                      max_completion_length=3)  # fmt: skip
# Row 0: a student's sample (2 tokens, the third is padding); row 1: a teacher member (3).
LOGP = [[-1.0, -2.0, -3.0], [-0.5, -1.0, -1.5]]
TEACHER = [[-1.5, -1.0, -9.0], [-3.0, -3.0, -3.0]]
MASK = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
# The learning test's run: configs/tiny_learn.yaml (the demo's tasks, full fine-tune) with
# every key that shapes the learning pinned here, so tuning the demo cannot change it.
# drop_zero_variance_groups changes nothing while distilling (groups are kept then); in the
# control it spares the forward and backward passes over all-fail groups, whose gradient is 0.
DISTILL_STEPS = 24
DISTILL_RUN = (
    "grpo.teacher_guidance=0", "grpo.num_iterations=2", "grpo.beta=0.0", "grpo.loss_type=dapo",
    "grpo.drop_zero_variance_groups=true",
    "rollout.batch_size=4", "rollout.group_size=4", "rollout.max_new_tokens=32",
    "rollout.temperature=1.0", "training.learning_rate=3e-3", "training.lr_schedule=cosine",
    "training.warmup_steps=0", "training.micro_batch_size=20", "training.seed=0",
    "student.adapter.fine_tune_type=full", "checkpoint.every_steps=1000",
)  # fmt: skip


def distill_loss(logp, weight, teacher=TEACHER):
    teacher_logp = None if teacher is None else mx.array(teacher)
    return policy_loss(
        logp, mx.stop_gradient(logp), None, mx.array([0.5, 1.0]), mx.array(MASK),
        epsilon_low=0.2, epsilon_high=0.28, beta=0.0, loss_type="dapo", norm=NORM,
        off_policy=mx.array([0.0, 1.0]), teacher_logp=teacher_logp, distill_weight=weight,
    )  # fmt: skip


def test_distillation_term_by_hand():
    """w = 2. Student tokens: A_t = 0.5 - 2 * (logp - q) = 0.5 - 2 * 0.5 = -0.5 and
    0.5 - 2 * (-1) = 2.5, so (ratio 1) their terms are +0.5 and -2.5. The teacher row keeps
    -A * logp = 0.5 + 1 + 1.5 = 3 and gets no distillation. dapo: / 5 tokens."""
    logp = mx.array(LOGP)
    loss, stats = distill_loss(logp, 2.0)
    assert loss.item() == pytest.approx((0.5 - 2.5 + 3.0) / 5)
    grad = np.array(mx.grad(lambda x: distill_loss(x, 2.0)[0])(logp))
    expected = np.array([[0.5, -2.5, 0.0], [-1.0, -1.0, -1.0]]) / 5
    assert grad == pytest.approx(expected, abs=1e-6)
    # The reverse-KL estimate over the student's tokens only: (-1 + 1.5) + (-2 + 1).
    assert stats["distill_kl_sum"].item() == pytest.approx(-0.5)


def test_distill_weight_zero_is_the_plain_loss():
    logp = mx.array(LOGP)
    plain = policy_loss(
        logp, mx.stop_gradient(logp), None, mx.array([0.5, 1.0]), mx.array(MASK),
        epsilon_low=0.2, epsilon_high=0.28, beta=0.0, loss_type="dapo", norm=NORM,
        off_policy=mx.array([0.0, 1.0]),
    )[0]  # fmt: skip
    assert distill_loss(logp, 0.0)[0].item() == pytest.approx(plain.item())


def test_distillation_needs_teacher_logprobs_and_a_non_negative_weight():
    logp = mx.array(LOGP)
    with pytest.raises(ValueError, match="teacher_logp is required"):
        distill_loss(logp, 1.0, teacher=None)
    with pytest.raises(ValueError, match="distill_weight must be >= 0"):
        distill_loss(logp, -1.0)


def test_config_requires_a_local_model_for_distillation(tmp_path):
    with pytest.raises(ConfigError, match=r"grpo\.distill_weight: needs a local model"):
        Config(grpo=GRPOConfig(distill_weight=0.5))
    with pytest.raises(ConfigError, match=r"grpo\.distill_weight: must be >= 0"):
        GRPOConfig(distill_weight=-0.1)
    Config(grpo=GRPOConfig(distill_weight=0.5, distill_model="some/model"))
    Config(grpo=GRPOConfig(distill_weight=0.5), teacher=TeacherConfig(backend="mlx", model="m"))
    path = tmp_path / "bad.yaml"
    path.write_text("student:\n  path: m\ngrpo:\n  beta: 0.0\n  distill_weight: 1.0\n")
    with pytest.raises(ConfigError, match=rf"{path}:5: grpo.distill_weight"):
        load_config(path, [])


def test_zero_variance_groups_are_kept_under_distillation():
    rewards = [0.0] * 4 + [0.0, 1.0, 0.0, 1.0]
    plain = GRPOConfig(drop_zero_variance_groups=True, teacher_guidance=0)
    distil = GRPOConfig(drop_zero_variance_groups=True, teacher_guidance=0, distill_weight=1.0)
    assert select_groups(rewards, [None] * 8, 4, plain).indices == [4, 5, 6, 7]
    kept = select_groups(rewards, [None] * 8, 4, distil)
    assert kept.indices == list(range(8)) and kept.advantages[:4] == [0.0] * 4


@pytest.fixture(scope="module")
def other_tokenizer_model(tmp_path_factory):
    """A tiny model whose tokenizer has 512 tokens instead of 1024."""
    return build_tiny_model(tmp_path_factory.mktemp("other") / "model", vocab_size=512)


def test_a_teacher_with_another_tokenizer_is_refused_naming_both(
    tiny_model_dir, other_tokenizer_model, tmp_path
):
    config = _config(tiny_model_dir, tmp_path, 1.0, other_tokenizer_model)
    student = load_student(config.student, seed=0)
    with pytest.raises(TeacherError) as err:
        load_distiller(config, student)
    message = str(err.value)
    assert str(tiny_model_dir) in message and str(other_tokenizer_model) in message
    assert "1024 tokens" in message and "512 tokens" in message
    assert message.startswith("grpo.distill_weight:")
    # The same check, from two tokenizers directly: equal vocabularies pass.
    check_same_tokenizer(student.tokenizer, student.tokenizer, "a", "b")


def test_the_mlx_teachers_own_model_is_loaded_once_for_both_jobs(tiny_model_dir, tmp_path):
    shared = _config(tiny_model_dir, tmp_path, 1.0, "", backend="mlx", teacher=tiny_model_dir)
    student = load_student(shared.student, seed=0)
    model, loaded = load_distiller(shared, student)
    assert loaded is not None and loaded[0] is model
    separate = _config(tiny_model_dir, tmp_path, 1.0, tiny_model_dir)
    model, loaded = load_distiller(separate, student)
    assert model is not None and loaded is None  # the reference teacher writes the code
    assert load_distiller(_config(tiny_model_dir, tmp_path, 0.0, ""), student) == (None, None)


def _config(student, tmp_path, weight, distill_model, *, steps=1, backend=None, teacher=None,
            extra=()):  # fmt: skip
    overrides = [
        f"training.output_dir={tmp_path / 'run'}",
        f"huggingface.dataset_output_dir={tmp_path / 'datasets'}",
        "logging.rich=false",
        f"grpo.distill_weight={weight}",
        f"grpo.distill_model={distill_model}",
        f"training.steps={steps}",
        *extra,
    ]
    if backend:
        overrides += [f"teacher.backend={backend}", f"teacher.model={teacher}"]
    return load_config(REPO / "configs" / "tiny_learn.yaml", overrides, model=str(student))


# --- learning through the real pipeline -------------------------------------------------------

KL_PROMPT_SAMPLES = 8


def reverse_kl(student, teacher_model, tasks, max_new_tokens: int) -> float:
    """Mean per-token logp_student - logp_teacher over fresh student samples (seed fixed)
    on the tasks' prompts, at temperature 1: the sampled estimate of KL(student || teacher)."""
    mx.random.seed(1234)
    prompts = [student.prompt_tokens(t) for t in tasks]
    completions, _, _ = generate_groups(
        student.model, student.tokenizer, prompts, KL_PROMPT_SAMPLES,
        max_new_tokens=max_new_tokens, temperature=1.0,
    )  # fmt: skip
    samples = [
        Sample(prompts[c.prompt_index], c.tokens, [0.0] * len(c.tokens), 0.0, False)
        for c in completions
    ]
    batch = pack(samples, len(samples), mask_truncated=False)
    mine = token_logprobs(student.model(batch.inputs), batch.targets)
    theirs = token_logprobs(teacher_model(batch.inputs), batch.targets)
    return ((mine - theirs) * batch.mask).sum().item() / batch.mask.sum().item()


def _train(config, teacher_dir):
    run = build_run(config)
    teacher_model = mlx_lm.load(str(teacher_dir))[0]
    tokens = config.rollout.max_new_tokens
    before = reverse_kl(run.student, teacher_model, run.tasks.train, tokens)
    logged = []
    with run.scoring_pool() as pool:
        for step in range(1, config.training.steps + 1):
            logged.append(run_step(run, step, pool))
    after = reverse_kl(run.student, teacher_model, run.tasks.train, tokens)
    return before, after, logged


def test_distillation_halves_the_reverse_kl_and_weight_zero_does_not(tiny_model_dir, tmp_path):
    """Student: the tiny model (seed 0); distillation teacher: a tiny model with the same
    tokenizer and other weights (seed 1); the reference teacher writes the code, guidance
    off, so the random student's all-fail groups carry no reward signal: any move towards
    the teacher comes from the distillation term. The control (weight 0) does not move."""
    teacher_dir = build_tiny_model(tmp_path / "teacher", seed=1)
    extra = DISTILL_RUN
    steps = DISTILL_STEPS
    runs = {}
    for weight in (1.0, 0.0):
        out = tmp_path / f"w{weight}"
        config = _config(tiny_model_dir, out, weight, teacher_dir, steps=steps, extra=extra)
        runs[weight] = _train(config, teacher_dir)
    before, after, logged = runs[1.0]
    print(f"reverse KL {before:.3f} -> {after:.3f}")
    assert after <= before / 2, (before, after)
    assert all(m["distill_kl"] is not None for m in logged)
    c_before, c_after, c_logged = runs[0.0]
    assert c_before == pytest.approx(before, rel=1e-4)  # the same student, the same samples
    print(f"control {c_before:.3f} -> {c_after:.3f}")
    assert c_after > c_before * 0.9, (c_before, c_after)
    assert all("distill_kl" not in m or m["distill_kl"] is None for m in c_logged)
