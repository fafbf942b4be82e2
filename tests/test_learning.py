"""GRPO learns: on the tiny model, a programmatic reward rises under the update and falls
when the advantages' sign is flipped (the same machinery, the gradient pointing the other way).

Reward: the fraction of completion tokens whose id is even. A random model starts near 0.5
(roughly half the vocabulary is even), there is variance within every group from the start,
and the reward depends on every sampled token, so the signal is dense.

The decisive check uses full fine-tuning: the tiny model's frozen random embeddings are small
(std 0.02 behind a final RMSNorm), which bounds how peaked a LoRA-only policy can make its
output, so under LoRA the same reward rises more slowly; a separate LoRA run checks that it
does rise.
"""

import mlx.core as mx
import numpy as np
import pytest

from rfai.advantages import group_advantages
from rfai.config import AdapterConfig, GRPOConfig, StudentConfig, TrainingConfig
from rfai.rollout import generate_groups
from rfai.student import load_student
from rfai.update import PolicyUpdater, Sample

GROUP = 8


def even_fraction(tokens) -> float:
    return float(np.mean([t % 2 == 0 for t in tokens]))


def _run(model_dir, *, sign: float, fine_tune_type: str, lr: float, steps: int) -> list[float]:
    student = load_student(
        StudentConfig(
            path=str(model_dir), adapter=AdapterConfig(fine_tune_type=fine_tune_type, rank=8)
        ),
        seed=0,
    )
    student.model.eval()
    grpo = GRPOConfig(beta=0.0, loss_type="dapo", num_iterations=1)
    training = TrainingConfig(
        learning_rate=lr, warmup_steps=0, lr_schedule="constant", micro_batch_size=16
    )
    updater = PolicyUpdater(
        student, grpo, training, temperature=1.0, total_updates=steps, max_new_tokens=12
    )
    tok = student.tokenizer
    prompts = [tok.encode(p) for p in ("def f(x):", "import os\n", "# list\n", "class A:")]
    mx.random.seed(1)
    means = []
    for _ in range(steps):
        completions, logprobs, _ = generate_groups(
            student.model, tok, prompts, GROUP, max_new_tokens=12, temperature=1.0
        )
        rewards = [even_fraction(c.tokens) for c in completions]
        means.append(float(np.mean(rewards)))
        adv = group_advantages(mx.array(rewards), GROUP, "group").tolist()
        samples = [
            Sample(prompts[c.prompt_index], c.tokens, lp, sign * a, False)
            for c, lp, a in zip(completions, logprobs, adv, strict=True)
        ]
        updater.step(samples)
    return means


@pytest.fixture(scope="module")
def full_runs(tiny_model_dir):
    kw = dict(fine_tune_type="full", lr=1e-3, steps=20)
    return {
        "grpo": _run(tiny_model_dir, sign=1.0, **kw),
        "flipped": _run(tiny_model_dir, sign=-1.0, **kw),
    }


def test_reward_rises_under_grpo(full_runs):
    start, end = np.mean(full_runs["grpo"][:3]), np.mean(full_runs["grpo"][-3:])
    # The per-step mean over 32 samples x 12 tokens has a standard deviation of about
    # 0.5 / sqrt(384) ~ 0.026 at the start, so +0.3 is far outside noise.
    assert end > start + 0.3, full_runs["grpo"]


def test_reward_does_not_rise_with_the_gradient_sign_flipped(full_runs):
    start, end = np.mean(full_runs["flipped"][:3]), np.mean(full_runs["flipped"][-3:])
    assert end < start, full_runs["flipped"]
    assert np.mean(full_runs["grpo"][-3:]) > end + 0.5


def test_reward_rises_under_grpo_with_lora(tiny_model_dir):
    means = _run(tiny_model_dir, sign=1.0, fine_tune_type="lora", lr=1e-2, steps=30)
    start, end = np.mean(means[:3]), np.mean(means[-5:])
    assert end > start + 0.08, means
