"""A run that trains on nothing stops with an error instead of exiting 0 (issue 11, item 9)."""

import json
import os

import pytest

from tests.helpers import REPO, run_cli, tiny_run_args
from tests.teacher_server import Action, ScriptedServer, openai_reply


def test_regression_a_teacher_that_never_gives_code_does_not_stop_the_run(tiny_model_dir, tmp_path):
    """The teacher is there (its start-up check passes) but answers "No." to every task: read
    as its code, which fails, like every sample of the random student, so every advantage is
    0 at every step. Such a run used to write a checkpoint and an adapter and exit 0 with
    nothing trained."""
    script = [Action(body={"object": "list", "data": []}), Action(body=openai_reply("No."))]
    with ScriptedServer(script) as server:
        args = tiny_run_args(
            tiny_model_dir, tmp_path,
            "--set", f"data.train_file={REPO / 'configs' / 'tiny_tasks.jsonl'}",
            "--set", "teacher.backend=openai", "--set", f"teacher.base_url={server.url}/v1",
            "--set", "teacher.model=any", "--set", f"teacher.cache_dir={tmp_path / 'cache'}",
            "--set", "training.steps=6", "--set", "training.stop_after_idle_steps=2",
            "--set", "evaluation.baseline_evaluation=false",
        )  # fmt: skip
        result = run_cli(args)
    assert result.returncode == 1, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: no training in 2 consecutive steps (1-2): 0 task(s) skipped")
    assert "every other sample had advantage 0" in error
    assert "training.stop_after_idle_steps: 0" in error
    assert "teacher 0.000" in result.stdout  # the console shows the teacher's score
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["trained_samples"] for m in metrics] == [0, 0]
    # Teacher counters are the step's own, not running totals (issue 12): the 4 tasks are
    # asked at step 1 (the start-up check before it is not counted), and come from the
    # cache at step 2.
    counters = [(json.loads(m)["teacher_requests"], json.loads(m)["teacher_cache_hits"],
                 json.loads(m)["teacher_cache_misses"]) for m in metrics]  # fmt: skip
    assert counters == [(4, 0, 4), (0, 4, 0)]
    assert (tmp_path / "run" / "checkpoints").is_dir()  # what was done is kept
    assert not (tmp_path / "run" / "adapters").exists()  # no "final" adapter of nothing


def test_regression_a_wrong_teacher_url_stops_the_run_before_training(tiny_model_dir, tmp_path):
    with ScriptedServer([Action(body={})]) as server:
        url = server.url  # closed when the block ends: nothing answers there any more
    args = tiny_run_args(
        tiny_model_dir, tmp_path,
        "--set", f"data.train_file={REPO / 'configs' / 'tiny_tasks.jsonl'}",
        "--set", "teacher.backend=openai", "--set", f"teacher.base_url={url}/v1",
        "--set", "teacher.model=any", "--set", "teacher.max_retries=1",
        "--set", "teacher.backoff_seconds=0.01",
    )  # fmt: skip
    result = run_cli(args)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: teacher openai: start-up check failed: cannot reach")
    assert "(after 2 attempt(s))" in error and "teacher.base_url" in error
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step was run


def test_regression_every_run_shares_datasets(tiny_model_dir, tmp_path):
    """A second run into the same dataset folder used to append its rows to the first's."""
    rows = tmp_path / "datasets" / "train.jsonl"
    base = [
        "--set", f"data.train_file={REPO / 'configs' / 'tiny_tasks.jsonl'}",
        "--set", "training.steps=1", "--set", "evaluation.baseline_evaluation=false",
    ]  # fmt: skip
    first = run_cli(tiny_run_args(tiny_model_dir, tmp_path, *base))
    assert first.returncode == 0, first.stderr[-2000:]
    before = rows.read_bytes()
    # A new run (its own run folder) into the same dataset folder.
    other = ["--set", f"training.output_dir={tmp_path / 'run2'}"]
    result = run_cli(tiny_run_args(tiny_model_dir, tmp_path, *base, *other))
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: {tmp_path / 'datasets'} already holds rows of another run (train.jsonl 16 "
        "rows); a new run does not mix its rows into them. Use a fresh folder (--set "
        "huggingface.dataset_output_dir=PATH), move those files away, or set "
        "huggingface.append_datasets: true to add this run's rows after them"
    )
    assert rows.read_bytes() == before  # untouched
    assert not (tmp_path / "run2").exists()
    # Asked for by the key, the run appends after them.
    append = ["--set", "huggingface.append_datasets=true"]
    appended = run_cli(tiny_run_args(tiny_model_dir, tmp_path, *base, *other, *append))
    assert appended.returncode == 0, appended.stderr[-2000:]
    assert rows.read_bytes().startswith(before)
    assert len(rows.read_text().splitlines()) == 32


def test_regression_a_read_only_folder_is_found_at_the_first_write(tiny_model_dir, tmp_path):
    """A folder rfai cannot write into used to be found at the first row or checkpoint
    (rows written, then a traceback). Now the run does not start, naming the key."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    for key, value, shown in (
        ("training.output_dir", blocker / "run", f"{blocker} is not a folder"),
        ("huggingface.dataset_output_dir", blocker / "rows", f"{blocker} is not a folder"),
    ):
        result = run_cli(tiny_run_args(tiny_model_dir, tmp_path, "--set", f"{key}={value}"))
        assert result.returncode == 2, result.stderr[-2000:]
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: {key}: {value}") and shown in error
        assert f"(--set {key}=PATH)" in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_folder_without_write_permission_stops_the_start(tiny_model_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    rows = f"huggingface.dataset_output_dir={locked / 'rows'}"
    result = run_cli(tiny_run_args(tiny_model_dir, tmp_path, "--set", rows))
    assert result.returncode == 2 and "cannot write in" in result.stderr
    assert list(locked.iterdir()) == []
