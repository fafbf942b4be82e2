"""A run that trains on nothing stops with an error instead of exiting 0 (issue 11, item 9)."""

import json
import socket

from tests.helpers import REPO, run_cli, tiny_run_args


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_regression_a_wrong_teacher_url_does_not_stop_the_run(tiny_model_dir, tmp_path):
    """Every task skipped at every step (the teacher cannot be reached) used to end in a
    checkpoint, an adapter and exit status 0 with nothing trained."""
    args = tiny_run_args(
        tiny_model_dir, tmp_path,
        "--set", f"data.train_file={REPO / 'configs' / 'tiny_tasks.jsonl'}",
        "--set", "teacher.backend=openai",
        "--set", f"teacher.base_url=http://127.0.0.1:{_closed_port()}/v1",
        "--set", "teacher.model=any", "--set", "teacher.max_retries=0",
        "--set", "training.steps=6", "--set", "training.stop_after_idle_steps=2",
        "--set", "evaluation.baseline_evaluation=false",
    )  # fmt: skip
    result = run_cli(args)
    assert result.returncode == 1, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: no training in 2 consecutive steps (1-2): 8 task(s) skipped")
    assert "training.stop_after_idle_steps: 0" in error
    assert "cannot reach http://127.0.0.1" in result.stdout  # the per-task reason, logged
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["trained_samples"] for m in metrics] == [0, 0]
    assert (tmp_path / "run" / "checkpoints").is_dir()  # what was done is kept
    assert not (tmp_path / "run" / "adapters").exists()  # no "final" adapter of nothing
