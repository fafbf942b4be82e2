"""Teacher-guided groups make the student learn, through the real pipeline.

`rfai.run.build_run` + `rfai.trainer.train` on the tiny random model: real rollout, the real
sandboxed scorers, the reference teacher, the real update. Two tasks from the demo's set
(configs/tiny_tasks.jsonl), trained on and evaluated on (the evaluation pass runs before the
first step and after the last, `evaluation.samples_per_task` samples per task).

- Guidance on (`grpo.teacher_guidance: 1`): every student of the random model fails, so each
  group's only signal is the teacher member; the evaluation pass rate goes from 0 to >= 0.5.
- The control, the identical run with `grpo.teacher_guidance: 0`: GRPO only reweighs the
  student's own samples, and none of them passes, so the pass rate stays at 0. Were guidance
  not what makes the first run learn (or were the tasks passed by chance), this would fail.

Measured on 2 CPU cores (the two runs together take 60-90 s): guided, the training pass rate is
0 for 16 steps, then rises (0.5 at step 26, 1.0 at step 28), and the final evaluation passes
8 of 8 samples; the control passes none, in training or evaluation. With training.seed and
data.seed 1 the guided run's evaluation reached 0.875, so the 0.5 threshold is no knife edge.
"""

import json
from pathlib import Path

import pytest

from rfai.config_load import config_from_dict
from rfai.run import build_run
from rfai.trainer import train

REPO = Path(__file__).resolve().parents[1]
STEPS = 40
TASKS = 2


def _config(model_dir: Path, out: Path, tasks: Path, guidance: int):
    """configs/tiny_learn.yaml, scaled down: 2 tasks, completions cut at 32 tokens."""
    return config_from_dict(
        {
            "student": {
                "path": str(model_dir),
                "system_prompt": "",
                "adapter": {"fine_tune_type": "full"},
            },
            "data": {"train_file": str(tasks), "evaluation_file": str(tasks)},
            # The answers are 13 and 16 tokens plus end of turn; a random sample runs to 32.
            "rollout": {
                "batch_size": TASKS,
                "group_size": 4,
                "max_new_tokens": 32,
                "temperature": 0.3,
            },
            "grpo": {"beta": 0.0, "loss_type": "dapo", "teacher_guidance": guidance},
            "training": {
                "steps": STEPS,
                "learning_rate": 3e-3,
                "lr_schedule": "cosine",
                "warmup_steps": 0,
                "micro_batch_size": 10,
                "seed": 0,
                "output_dir": str(out / "run"),
                # The control trains on nothing by design: do not stop it for that.
                "stop_after_idle_steps": 0,
            },
            "evaluation": {"samples_per_task": 4, "temperature": 0.3},
            "checkpoint": {"every_steps": STEPS},
            "logging": {"rich": False},
            "huggingface": {"dataset_output_dir": str(out / "datasets")},
        },
        source="tests/test_learning_pipeline.py",
    )


def _train(model_dir: Path, out: Path, guidance: int) -> tuple[list[dict], dict[int, dict]]:
    """The run's training steps' metrics and its evaluation passes by step (0 and STEPS)."""
    tasks = out / "tasks.jsonl"
    lines = (REPO / "configs" / "tiny_tasks.jsonl").read_text().splitlines()[:TASKS]
    tasks.write_text("\n".join(lines) + "\n")
    train(build_run(_config(model_dir, out, tasks, guidance)))
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "event" not in r]
    evaluations = {r["step"]: r for r in rows if r.get("event") == "evaluation"}
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert sorted(evaluations) == [0, STEPS]
    return steps, evaluations


@pytest.fixture(scope="module")
def guided(tiny_model_dir, tmp_path_factory):
    return _train(tiny_model_dir, tmp_path_factory.mktemp("guided"), guidance=1)


@pytest.fixture(scope="module")
def unguided(tiny_model_dir, tmp_path_factory):
    return _train(tiny_model_dir, tmp_path_factory.mktemp("unguided"), guidance=0)


def test_with_teacher_guidance_the_pass_rate_rises_from_0_to_at_least_half(guided):
    steps, evaluations = guided
    assert evaluations[0]["evaluation_pass_rate"] == 0.0
    assert evaluations[0]["evaluation_samples"] == TASKS * 4
    assert all(r["pass_rate"] == 0.0 for r in steps[:5])  # the random model fails at first
    # One teacher member per group, every step: the reference passes its own tests.
    assert all(r["teacher_members"] == TASKS for r in steps)
    assert evaluations[STEPS]["evaluation_pass_rate"] >= 0.5, evaluations[STEPS]
    assert evaluations[STEPS]["evaluation_samples"] == TASKS * 4


def test_the_same_run_without_guidance_stays_at_0(unguided):
    steps, evaluations = unguided
    assert all(r["teacher_members"] == 0 for r in steps)
    assert evaluations[0]["evaluation_pass_rate"] == 0.0
    assert all(r["pass_rate"] == 0.0 for r in steps), [r["pass_rate"] for r in steps]
    assert evaluations[STEPS]["evaluation_pass_rate"] == 0.0
    assert evaluations[STEPS]["evaluation_samples"] == TASKS * 4
