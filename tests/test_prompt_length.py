"""Prompts longer than the model's context are left out at start-up, named (issue 11, item 10)."""

import json
import time

from rfai.config import StudentConfig
from rfai.student import load_student, tasks_that_fit
from scorers.task import Task
from tests.helpers import REPO, run_cli, tiny_run_args


def _task(task_id: str, prompt: str) -> Task:
    return Task(task_id, prompt, "python", "add", ("assert add(1, 2) == 3",), None)


def test_prompts_over_the_context_are_left_out_and_named(tiny_model_dir):
    student = load_student(StudentConfig(path=str(tiny_model_dir)), seed=0)
    short = _task("short", "Write `add(a, b)`.")
    long = _task("long", "Write add. " * 1200)  # ~4,800 tokens: over the 4,096 context
    huge = _task("huge", "x" * 10_000_000)
    log: list[str] = []
    t0 = time.perf_counter()
    kept = tasks_that_fit(
        student, [short, long, huge], max_new_tokens=64, split="train", log=log.append
    )
    assert time.perf_counter() - t0 < 5  # the 10 MB prompt is never tokenized
    assert kept == [short]
    assert log[0].startswith("train: task long (")
    assert "tokens with the chat template" in log[0] and "context of 4,096 tokens" in log[0]
    assert "10,000,000 characters" in log[1] and "rollout.max_new_tokens 64" in log[1]
    # The budget includes max_new_tokens: the short prompt is left out when they fill it.
    assert tasks_that_fit(student, [short], max_new_tokens=4096, split="t", log=log.append) == []


def test_regression_a_10_mb_prompt_hangs_the_run(tiny_model_dir, tmp_path):
    """A 10 MB prompt used to hang the run for over 8 minutes at 8.9 GB of memory."""
    lines = (REPO / "configs" / "tiny_tasks.jsonl").read_text().splitlines()
    big = json.loads(lines[0]) | {"task_id": "py-huge", "prompt": "Reverse it. " * 900_000}
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join([json.dumps(big), lines[1]]) + "\n")
    args = tiny_run_args(
        tiny_model_dir, tmp_path, "--set", f"data.train_file={tasks}",
        "--set", "training.steps=1", "--set", "evaluation.baseline_evaluation=false",
    )  # fmt: skip
    t0 = time.perf_counter()
    result = run_cli(args, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.perf_counter() - t0 < 90
    assert "train: task py-huge (" in result.stdout and "left out" in result.stdout
    rows = [json.loads(r) for r in (tmp_path / "datasets" / "train.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in rows} == {json.loads(lines[1])["task_id"]}
