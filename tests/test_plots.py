"""Charts of a run (rfai/plots.py): a one-step run folder, several languages, bad folders.
A finished CLI run's charts are checked in tests/test_cli.py."""

import json
import subprocess
import sys

import pytest

from rfai.plots import PlotError, plot_run
from tests.dataset_rows import make_dataset
from tests.helpers import REPO

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > min_bytes, path


def one_step_run(tmp_path, datasets):
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        {"step": 0, "event": "evaluation", "evaluation_reward": 0.1, "evaluation_pass_rate": 0.0},
        {"step": 1, "reward": 0.5, "reward_std": 0.2, "pass_rate": 0.25, "loss": 0.1, "kl": 0.0,
         "grad_norm": 1.5, "update_norm": 0.01, "student_score": 0.4, "teacher_score": 0.8,
         "generation_tps": 900.0, "generation_seconds": 1.0, "scoring_wait_seconds": 0.2,
         "update_seconds": 0.5},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "run.json").write_text(json.dumps({"run_id": "run-1"}))
    (run / "config.yaml").write_text(f"huggingface:\n  dataset_output_dir: {datasets}\n")
    return run


def test_a_run_folder_with_one_step_gets_every_chart_and_languages_with_several(tmp_path):
    datasets = make_dataset(tmp_path / "datasets", {"train": 8}, run_id="run-1")
    run = one_step_run(tmp_path, datasets)
    written = plot_run(run)
    # make_dataset's rows cycle python, python, cpp, rust: several languages.
    assert [p.name for p in written] == [
        "reward.png", "scores.png", "loss.png", "speed.png", "languages.png",
    ]  # fmt: skip
    for path in written:
        assert path.parent == run / "plots"
        assert_png(path)


def test_rows_of_other_runs_are_left_out(tmp_path):
    datasets = make_dataset(tmp_path / "datasets", {"train": 8}, run_id="another-run")
    run = one_step_run(tmp_path, datasets)
    # No row of run-1: no per-language chart (and the scores chart says so in its panel).
    assert [p.name for p in plot_run(run)] == ["reward.png", "scores.png", "loss.png", "speed.png"]


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    with pytest.raises(PlotError, match=r"metrics.jsonl does not exist: is .* an rfai run folder"):
        plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2,\n')
    with pytest.raises(PlotError, match=r"metrics.jsonl:2: not JSON"):
        plot_run(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "rfai.plots", str(tmp_path / "nothing")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "an rfai run folder" in proc.stderr
