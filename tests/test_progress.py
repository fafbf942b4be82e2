"""The live terminal view (rfai/progress.py): shown on a terminal, absent elsewhere, and a
real run writes no control code when its output is a pipe."""

import io

from rich.console import Console

from rfai.progress import StepProgress
from tests.helpers import run_cli, tiny_run_args


def drive(console: Console) -> None:
    with StepProgress(console, total_steps=3, done_steps=1) as view:
        show = view.rollout("step 2")
        show(5, 2, 16)  # generating
        view.step_done()
        show(16, 9, 16)  # generation done, scoring


def test_on_a_terminal_the_bar_counts_steps_and_names_the_phase():
    out = io.StringIO()
    drive(Console(file=out, force_terminal=True, width=150))
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with control codes, as a terminal expects
    assert "2/3" in text and "ETA" in text
    assert "step 2: scoring 9/16" in text


def test_anywhere_else_it_draws_nothing():
    out = io.StringIO()
    drive(Console(file=out, force_terminal=False, width=150))
    assert out.getvalue() == ""
    drive(None)  # logging.rich: false


def test_regression_a_run_piped_to_a_file_writes_no_control_codes(tiny_model_dir, tmp_path):
    args = tiny_run_args(tiny_model_dir, tmp_path, "--set", "logging.rich=true",
                         "--set", "training.steps=1")  # fmt: skip
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 1/1  reward" in proc.stdout and "(gen " in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr
