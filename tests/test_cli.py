"""End to end: `python train_rfai.py` on the tiny model, as a user runs it."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pandas as pd
import pytest
from mlx_lm import load

from tests.helpers import (
    REPO,
    SHORT_TASKS,
    assert_tensorboard_mirrors_metrics,
    cli_env,
    read_rows,
    run_cli,
    tiny_run_args,
)

REQUIRED_FIELDS = {
    "prompt",
    "language",
    "student_code",
    "teacher_code",
    "student_score",
    "teacher_score",
    "reward",
    "scoring_breakdown",
    "timestamp",
}
TRACE_FIELDS = {
    "student_breakdown",
    "teacher_breakdown",
    "task_id",
    "step",
    "group_index",
    "sample_index",
    "completion_tokens",
    "finish_reason",
    "tests_passed",
    "tests_total",
    "run_id",
}


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    args = tiny_run_args(
        tiny_model_dir, out, "--set", "training.steps=3", "--set", "checkpoint.every_steps=2"
    )
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return out, proc


def test_every_sample_is_a_row_with_the_documented_fields(finished_run):
    out, _ = finished_run
    rows = read_rows(out / "datasets" / "train.jsonl")
    # configs/tiny.yaml: batch_size 4 x group_size 4 samples per step, 3 steps.
    assert len(rows) == 3 * 4 * 4
    for row in rows:
        assert set(row) >= REQUIRED_FIELDS | TRACE_FIELDS, set(
            REQUIRED_FIELDS | TRACE_FIELDS
        ) - set(row)
        assert row["language"] == "python"
        assert 0.0 <= row["student_score"] <= 1.0
        assert row["teacher_tests_passed"] == row["tests_total"]  # references pass their tests
        assert abs(sum(row["scoring_breakdown"].values()) - 1.0) < 1e-9
        # The default reward rule: ratio = student / max(teacher, floor 0.05), itself up to
        # cap / 2 = 1, then 2 - 1 / ratio (the soft bound under reward_cap 2).
        ratio = row["student_score"] / max(row["teacher_score"], 0.05)
        expected = ratio if ratio <= 1.0 else 2.0 - 1.0 / ratio
        assert row["reward"] == pytest.approx(expected)
    keys = {(r["step"], r["group_index"], r["sample_index"]) for r in rows}
    assert len(keys) == len(rows)
    frame = pd.read_json(out / "datasets" / "train.jsonl", lines=True)
    assert len(frame) == len(rows) and set(frame.columns) >= REQUIRED_FIELDS


def test_run_folder_has_config_metrics_checkpoints_and_adapter(finished_run, tiny_model_dir):
    out, _ = finished_run
    run = out / "run"
    assert "steps: 3" in (run / "config.yaml").read_text()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["updated"] and m["loss"] is not None for m in metrics)
    assert_tensorboard_mirrors_metrics(run)
    plots = sorted(p.name for p in (run / "plots").glob("*.png"))  # one language: no languages.png
    assert plots == ["loss.png", "reward.png", "scores.png", "speed.png"]
    assert all((run / "plots" / name).read_bytes().startswith(b"\x89PNG") for name in plots)
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_000002", "step_000003"]
    # The final adapter is in mlx-lm's format: mlx_lm.load applies it.
    model, _ = load(str(tiny_model_dir), adapter_path=str(run / "adapters"))
    assert mx.array(model(mx.array([[1, 2, 3]]))).shape == (1, 3, 1024)


def test_the_summary_says_what_ran_and_its_first_command_works(finished_run, tiny_model_dir):
    out, proc = finished_run
    text = (out / "run" / "summary.md").read_text()
    assert "**Finished: 3 steps.**" in text and f"- Student: `{tiny_model_dir}` (lora)" in text
    # configs/tiny.yaml has no evaluation file: the training reward's trend instead.
    assert "No evaluation before and after" in text and "![reward](plots/reward.png)" in text
    assert "- Rows of this run in" in text and "train 48" in text
    assert f"summary: {out / 'run' / 'summary.md'}" in proc.stdout
    commands = text.split("```bash\n")[1].split("\n```")[0].splitlines()
    assert commands[0].startswith("mlx_lm.generate --model ") and "--adapter-path" in commands[0]
    assert commands[1].startswith("python -m rfai.evaluate --model ")
    assert commands[2].startswith("mlx_lm.server ") and commands[3].startswith("mlx_lm.fuse ")
    # The generate command as written (with a short answer), from the environment's scripts.
    argv = [*shlex.split(commands[0]), "--max-tokens", "4"]
    argv[0] = str(Path(sys.executable).parent / argv[0])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=cli_env())
    assert result.returncode == 0, result.stderr[-2000:]


def test_second_run_into_the_same_folder_is_refused(finished_run, tiny_model_dir):
    out, _ = finished_run
    proc = run_cli(tiny_run_args(tiny_model_dir, out, "--set", "training.steps=3"))
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "already holds checkpoints" in proc.stderr


def test_resume_without_checkpoint_is_an_error(tiny_model_dir, tmp_path):
    proc = run_cli(tiny_run_args(tiny_model_dir, tmp_path, "--resume"))
    assert proc.returncode == 2
    assert "no checkpoint" in proc.stderr


def test_config_error_names_key_and_file(tiny_model_dir, tmp_path):
    proc = run_cli(tiny_run_args(tiny_model_dir, tmp_path, "--set", "rollout.gruop_size=2"))
    assert proc.returncode == 2
    assert (
        "rollout.gruop_size" in proc.stderr and "did you mean 'rollout.group_size'" in proc.stderr
    )


def test_unreachable_model_says_how_to_use_a_local_folder(tmp_path):
    args = tiny_run_args(tmp_path / "no-such-model", tmp_path)
    proc = run_cli(args)
    assert proc.returncode == 2
    assert "Could not load the student model" in proc.stderr
    assert "--model" in proc.stderr


def test_validation_and_evaluation_splits_and_the_card(tiny_model_dir, tmp_path):
    import datasets

    validation = tmp_path / "validation.jsonl"  # two of the four: not the evaluation's tasks
    validation.write_text("\n".join(SHORT_TASKS.read_text().splitlines()[:2]) + "\n")
    args = tiny_run_args(
        tiny_model_dir,
        tmp_path,
        "--set", "training.steps=2",
        "--set", f"data.validation_file={validation}",
        "--set", f"data.evaluation_file={SHORT_TASKS}",
        "--set", "evaluation.eval_steps=2",
        "--set", "evaluation.samples_per_task=1",
    )  # fmt: skip
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "datasets"
    rows = {s: read_rows(folder / f"{s}.jsonl") for s in ("train", "validation", "evaluation")}
    assert len(rows["train"]) == 2 * 4 * 4
    # Validation at step 2 (the last): 2 tasks x 1 sample.
    assert len(rows["validation"]) == 2 and {r["step"] for r in rows["validation"]} == {2}
    # Evaluation before (step 0, baseline) and after training (step 2).
    assert len(rows["evaluation"]) == 8
    assert sorted({r["step"] for r in rows["evaluation"]}) == [0, 2]
    assert all(r["split"] == s for s, rs in rows.items() for r in rs)
    loaded = datasets.load_dataset(str(folder))
    assert {k: len(v) for k, v in loaded.items()} == {
        "train": 32,
        "validation": 2,
        "test": 8,
    }
    card = (folder / "README.md").read_text()
    assert str(tmp_path) not in card
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if "event" in e] == [
        "evaluation",
        "validation",
        "evaluation",
    ]


def test_a_bad_model_path_fails_before_any_sandbox_work(tiny_model_dir, tmp_path, monkeypatch):
    """Checks run cheap to expensive: a typo in --model is reported before the compilers are
    checked and before any reference solution runs in the sandbox (rfai/run.py)."""
    import rfai.run
    from rfai.config_load import load_config
    from rfai.student import StudentLoadError

    sandbox_work: list[str] = []

    def check_environment(suite, languages):
        sandbox_work.append("compilers")
        return "isolation: not set up (test)"

    def validate_tasks(tasks, suite, workers):
        sandbox_work.append(f"references of {len(tasks)} tasks")
        return list(tasks), []

    monkeypatch.setattr(rfai.run.ScoringSuite, "check_environment", check_environment)
    monkeypatch.setattr(rfai.run, "validate_tasks", validate_tasks)

    def config(model, out):
        overrides = [f"training.output_dir={out}", f"huggingface.dataset_output_dir={out}/d"]
        return load_config(REPO / "configs" / "tiny.yaml", overrides, model=str(model))

    with pytest.raises(StudentLoadError, match="no such local folder"):
        rfai.run.build_run(config(tmp_path / "no-such-model", tmp_path / "bad"))
    assert sandbox_work == []
    # The same run with a real model does reach them (so the counting above can fail).
    run = rfai.run.build_run(config(tiny_model_dir, tmp_path / "good"))
    assert sandbox_work == ["compilers", "references of 60 tasks", *["references of 0 tasks"] * 2]
    assert len(run.tasks.train) == 60 and run.start_step == 0
