"""Kill a training run after a checkpoint and resume it: the dataset ends up with exactly the
rows an uninterrupted run writes, none duplicated and none missing, and the same ones."""

import signal
import subprocess
import time

from tests.helpers import REPO, cli_env, read_rows, run_cli, tiny_run_args

STEPS = ["--set", "training.steps=5", "--set", "checkpoint.every_steps=2"]


def _key(row):
    return (row["step"], row["group_index"], row["sample_index"])


def _content(row):
    # Everything that training determines; timestamps and the run id differ by design.
    return (row["task_id"], row["student_code"], row["reward"], row["completion_tokens"])


def test_kill_and_resume_gives_the_uninterrupted_rows(tiny_model_dir, tmp_path):
    reference = tmp_path / "reference"
    proc = run_cli(tiny_run_args(tiny_model_dir, reference, *STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {_key(r): _content(r) for r in read_rows(reference / "datasets" / "train.jsonl")}
    assert len(expected) == 5 * 4 * 4

    crashed = tmp_path / "crashed"
    rows_path = crashed / "datasets" / "train.jsonl"
    latest = crashed / "run" / "checkpoints" / "latest"
    child = subprocess.Popen(
        tiny_run_args(tiny_model_dir, crashed, *STEPS),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill as soon as step 3 has written rows after the step-2 checkpoint: those rows must be
    # rolled back on resume and written again by the re-run step.
    deadline = time.monotonic() + 240
    killed_with_rows_after_checkpoint = False
    while time.monotonic() < deadline and child.poll() is None:
        if (
            latest.exists()
            and rows_path.exists()
            and any(r["step"] == 3 for r in read_rows(rows_path)[-16:])
        ):
            child.send_signal(signal.SIGKILL)
            killed_with_rows_after_checkpoint = True
            break
        time.sleep(0.02)
    child.wait(timeout=60)
    assert killed_with_rows_after_checkpoint, "the run finished before it could be killed"
    assert child.returncode == -signal.SIGKILL
    assert '"step": 2' in latest.read_text()
    before = read_rows(rows_path)
    assert any(r["step"] == 3 for r in before)

    proc = run_cli(tiny_run_args(tiny_model_dir, crashed, *STEPS, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    rows = read_rows(rows_path)
    keys = [_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated rows after resume"
    assert {_key(r): _content(r) for r in rows} == expected
    assert len({r["run_id"] for r in rows}) == 1
