"""Kill a real training run and resume it: the dataset (all three splits) and metrics.jsonl end
up with exactly what an uninterrupted run writes, none duplicated, none missing, the same ones.
Then what --resume refuses, and that a refused or failed start leaves nothing behind.

One uninterrupted reference run (module fixture) serves every test; tests that need a run
folder to refuse or damage work on a copy of it.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    SHORT_TASKS,
    assert_tensorboard_mirrors_metrics,
    cli_env,
    read_rows,
    run_cli,
    tiny_run_args,
)

SPLITS = ("train", "validation", "evaluation")
# 4 steps x 4 tasks x 4 samples of training; validation after steps 1-3 (at step 4 the final
# evaluation samples the same tasks) and evaluation before and after training, on 3 tasks x
# 1 sample: 64 train, 9 validation, 6 evaluation.
STEPS = [
    "--set", "training.steps=4",
    "--set", "checkpoint.every_steps=3",
    "--set", "evaluation.eval_steps=1",
    "--set", "evaluation.samples_per_task=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three of SHORT_TASKS as the validation and evaluation file."""
    path = tmp_path_factory.mktemp("tasks") / "held_out.jsonl"
    lines = SHORT_TASKS.read_text().splitlines()
    path.write_text("\n".join(lines[-3:]) + "\n")
    return path


def args(model_dir: Path, out: Path, held_out: Path, *extra: str) -> list[str]:
    return tiny_run_args(
        model_dir, out, *STEPS,
        "--set", f"data.validation_file={held_out}",
        "--set", f"data.evaluation_file={held_out}",
        *extra,
    )  # fmt: skip


def _key(row):
    return (row["split"], row["step"], row["task_id"], row["group_index"], row["sample_index"])


def _content(row):
    # Everything that training determines; timestamps and the run id differ by design.
    return (row["student_code"], row["reward"], row["completion_tokens"])


def rows_of(out: Path) -> list[dict]:
    folder = out / "datasets"
    return [r for s in SPLITS if (folder / f"{s}.jsonl").exists()
            for r in read_rows(folder / f"{s}.jsonl")]  # fmt: skip


def metric_lines(out: Path) -> list[tuple]:
    """(step, event, reward) of every metrics.jsonl line, in order."""
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m.get("event"), m.get("reward")) for m in map(json.loads, lines)]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, held_out, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    proc = run_cli(args(tiny_model_dir, out, held_out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {s: sum(r["split"] == s for r in rows_of(out)) for s in SPLITS}
    assert counts == {"train": 64, "validation": 9, "evaluation": 6}
    return out


def kill_when(command: list[str], ready, deadline_s: float = 240) -> None:
    """Run `command` and SIGKILL it as soon as `ready()` holds."""
    child = subprocess.Popen(
        command, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + deadline_s
    killed = False
    while time.monotonic() < deadline and child.poll() is None:
        if ready():
            child.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    child.wait(timeout=60)
    assert killed, "the run finished before it could be killed"
    assert child.returncode == -signal.SIGKILL


def steps_written(out: Path, split: str) -> set[int]:
    path = out / "datasets" / f"{split}.jsonl"
    # The last line may be cut short by the kill; complete lines are enough here.
    rows = []
    if path.exists():
        for line in path.read_bytes().split(b"\n")[:-1]:
            rows.append(json.loads(line))
    return {r["step"] for r in rows}


def training_steps_logged(metrics: Path) -> set[int]:
    """Steps with a training line in metrics.jsonl (event lines left out)."""
    lines = metrics.read_bytes().split(b"\n")[:-1] if metrics.exists() else []
    return {m["step"] for m in map(json.loads, lines) if "event" not in m}


def assert_same_as(reference: Path, out: Path) -> None:
    rows = rows_of(out)
    keys = [_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated rows after resume"
    assert {_key(r): _content(r) for r in rows} == {
        _key(r): _content(r) for r in rows_of(reference)
    }
    assert len({r["run_id"] for r in rows}) == 1
    assert metric_lines(out) == metric_lines(reference)
    assert_tensorboard_mirrors_metrics(out / "run")  # each step once, as in metrics.jsonl


def test_kill_and_resume_gives_the_uninterrupted_rows(
    tiny_model_dir, held_out, reference, tmp_path
):
    crashed = tmp_path / "crashed"
    latest = crashed / "run" / "checkpoints" / "latest"
    # Kill as soon as step 4 has written rows after the step-3 checkpoint: those rows must be
    # rolled back on resume and written again by the re-run step.
    kill_when(
        args(tiny_model_dir, crashed, held_out),
        lambda: latest.exists() and 4 in steps_written(crashed, "train"),
    )
    assert '"step": 3' in latest.read_text()

    proc = run_cli(args(tiny_model_dir, crashed, held_out, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    assert_same_as(reference, crashed)


def test_regression_rows_duplicated_after_a_crash_before_the_first_checkpoint(
    tiny_model_dir, held_out, reference, tmp_path
):
    # Bug: killed before its first checkpoint, a run could not be resumed ("start without
    # --resume"), and the fresh run appended the same samples again under a new run id, in
    # all three splits. Now the run record (run.json, written at start-up) lets --resume cut
    # the files back to where the run began and restart it from step 0 under the same id.
    crashed = tmp_path / "crashed"
    checkpoints = crashed / "run" / "checkpoints"
    kill_when(
        args(tiny_model_dir, crashed, held_out),
        lambda: 1 in steps_written(crashed, "validation"),
    )
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    assert {0, 1} <= steps_written(crashed, "evaluation") | steps_written(crashed, "validation")

    # Starting over without --resume would duplicate the rows: refused, pointing at --resume.
    proc = run_cli(args(tiny_model_dir, crashed, held_out))
    assert proc.returncode == 2
    assert "stopped before its first checkpoint; pass --resume" in proc.stderr

    proc = run_cli(args(tiny_model_dir, crashed, held_out, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restarting from step 0" in proc.stdout
    assert_same_as(reference, crashed)


def test_regression_metrics_jsonl_keeps_no_step_twice_after_a_resume(
    tiny_model_dir, held_out, reference, tmp_path
):
    # Bug: --resume rolled the dataset rows back to the checkpoint but not metrics.jsonl, so
    # the re-run steps (and their validation events) were logged twice.
    crashed = tmp_path / "crashed"
    latest = crashed / "run" / "checkpoints" / "latest"
    metrics = crashed / "run" / "metrics.jsonl"
    # Checkpoints every 2 steps (checkpoint.* may change on resume and changes no row or
    # metric line): killed once step 3's line is logged, after the step-2 checkpoint, while
    # step 3's validation pass and step 4 still run, a whole step before the next checkpoint.
    every_2 = ["--set", "checkpoint.every_steps=2"]
    kill_when(
        args(tiny_model_dir, crashed, held_out, *every_2),
        lambda: latest.exists() and 3 in training_steps_logged(metrics),
    )
    assert '"step": 2' in latest.read_text()
    before = metric_lines(crashed)
    assert (3, None) in [(s, e) for s, e, _ in before]  # step 3 was logged before the kill
    proc = run_cli(args(tiny_model_dir, crashed, held_out, *every_2, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = metric_lines(crashed)
    steps = [(s, e) for s, e, _ in lines]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    assert lines == metric_lines(reference)


def copy_run(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    return out


def folder_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_regression_corrupt_checkpoint_on_resume_names_the_file_and_falls_back(
    tiny_model_dir, held_out, reference, tmp_path
):
    # Bug: a truncated checkpoint file ended --resume in a raw traceback that did not name
    # it. Now the damaged step-4 checkpoint is reported in one line, the run resumes from the
    # complete step-3 one, and the result is still the uninterrupted run's.
    out = copy_run(reference, tmp_path)
    damaged = out / "run" / "checkpoints" / "step_000004" / "optimizer.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    proc = run_cli(args(tiny_model_dir, out, held_out, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"{damaged} is truncated or corrupt" in proc.stdout
    assert "falling back to" in proc.stdout and "step_000003" in proc.stdout
    assert_same_as(reference, out)

    # With no complete checkpoint left: one line naming the files, nothing changed.
    for folder in (out / "run" / "checkpoints").glob("step_*"):
        (folder / "state.json").write_text("{")
    before = folder_bytes(out)
    proc = run_cli(args(tiny_model_dir, out, held_out, "--resume"))
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and "Traceback" not in proc.stderr
    assert "no complete checkpoint" in error[0] and "state.json is truncated" in error[0]
    assert folder_bytes(out) == before


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("rollout.group_size=8", "rollout.group_size (4 -> 8)"),
        ("training.seed=1", "training.seed (0 -> 1)"),
        ("data.train_file=builtin:cpp", f"data.train_file ('{SHORT_TASKS}' -> 'builtin:cpp')"),
    ],
)
def test_regression_resume_with_a_changed_config_is_refused_naming_the_keys(
    tiny_model_dir, held_out, reference, tmp_path, override, key
):
    # Bug: --resume with another group size, seed or train file was accepted silently, and
    # config.yaml was overwritten even by a resume that then failed. Now the keys are named,
    # with what to do, and the run folder is left byte for byte as it was.
    out = copy_run(reference, tmp_path)
    before = folder_bytes(out)
    extend = ["--set", "training.steps=5"]  # allowed; the refusal is for `override`
    proc = run_cli(args(tiny_model_dir, out, held_out, *extend, "--set", override, "--resume"))
    assert proc.returncode == 2
    assert "changes what the run samples" in proc.stderr and key in proc.stderr
    assert "training.steps" not in proc.stderr.split("Resume with")[0]
    assert f"--config {out / 'run' / 'config.yaml'} --resume" in proc.stderr
    assert folder_bytes(out) == before


def test_regression_resume_of_a_finished_run_says_so(tiny_model_dir, held_out, reference, tmp_path):
    # Bug: --resume on a finished run did nothing and said nothing.
    out = copy_run(reference, tmp_path)
    before = folder_bytes(out)
    proc = run_cli(args(tiny_model_dir, out, held_out, "--resume"))
    assert proc.returncode == 2
    assert "already finished at step 4" in proc.stderr
    assert "--set training.steps=8" in proc.stderr
    assert folder_bytes(out) == before


def test_regression_a_failed_start_leaves_no_run_folder(tiny_model_dir, held_out, tmp_path):
    # Bug: a run that failed at start-up (here: a model path with a typo) left a run folder
    # holding only config.yaml. Nothing is written until every start-up check has passed.
    out = tmp_path / "failed"
    proc = run_cli(args(tmp_path / "no-such-model", out, held_out))
    assert proc.returncode == 2
    assert "Could not load the student model" in proc.stderr
    assert not out.exists()
    # --resume in an empty folder: nothing to resume, and still nothing written.
    proc = run_cli(args(tiny_model_dir, out, held_out, "--resume"))
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr
    assert not out.exists()


def signal_when(command: list[str], ready, signals, out: Path, deadline_s: float = 240):
    """Run `command`, send `signals` (in order) once `ready()` holds; (exit code, stderr)."""
    stderr = out.parent / f"{out.name}.stderr"
    with stderr.open("w") as err:
        child = subprocess.Popen(
            command, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and child.poll() is None and not ready():
            time.sleep(0.02)
        assert child.poll() is None, "the run finished before the signal could be sent"
        for sig in signals:
            child.send_signal(sig)
            time.sleep(0.05)
        child.wait(timeout=120)
    return child.returncode, stderr.read_text()


def resume_from_message(line: str) -> subprocess.CompletedProcess:
    """Run the resume command a stop message names, as a user would paste it."""
    command = line.split("Resume with: ")[1].split()
    assert command[:2] == ["python", "train_rfai.py"], line
    return run_cli([sys.executable, str(REPO / "train_rfai.py"), *command[2:]])


def test_sigint_stops_at_the_end_of_the_step_with_a_checkpoint_and_resumes_exactly(
    tiny_model_dir, held_out, reference, tmp_path
):
    out = tmp_path / "stopped"
    metrics = out / "run" / "metrics.jsonl"
    code, stderr = signal_when(
        args(tiny_model_dir, out, held_out),
        lambda: 1 in training_steps_logged(metrics),
        [signal.SIGINT],
        out,
    )
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    step = json.loads((out / "run" / "checkpoints" / "latest").read_text())["step"]
    # The step (or its validation pass) running when the signal came, finished and saved.
    assert 1 <= step <= 3
    assert training_steps_logged(metrics) == set(range(1, step + 1))
    line = stderr.strip().splitlines()[-1]
    assert line == (
        f"SIGINT: stopped after step {step}; checkpoint "
        f"{out / 'run' / 'checkpoints' / f'step_{step:06d}'}. Resume with: "
        f"python train_rfai.py --config {out / 'run' / 'config.yaml'} --resume"
    )
    summary = (out / "run" / "summary.md").read_text()
    assert line.split(". Resume with")[0] in summary  # the status line
    assert line.split("Resume with: ")[1] in summary  # the first command is the resume
    assert (out / "run" / "plots" / "reward.png").is_file()
    proc = resume_from_message(line)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_as(reference, out)


def test_a_second_signal_stops_at_once_naming_the_last_checkpoint(
    tiny_model_dir, held_out, reference, tmp_path
):
    out = tmp_path / "aborted"
    code, stderr = signal_when(
        args(tiny_model_dir, out, held_out),
        lambda: 1 in steps_written(out, "train"),
        [signal.SIGTERM, signal.SIGINT],
        out,
    )
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "SIGTERM: stopping at the end of this step" in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("aborted: it has no checkpoint yet"), line
    proc = resume_from_message(line)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_as(reference, out)
