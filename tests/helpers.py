"""Helpers shared by the end-to-end tests: run the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Four one-line Python tasks with short references (the demo's). The tiny model's tokenizer
# spells code out nearly a character a token, so a built-in task's reference runs to hundreds of
# tokens, and an update over such rows costs several times one over these.
SHORT_TASKS = REPO / "configs" / "tiny_tasks.jsonl"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def tiny_run_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    """`train_rfai.py` on configs/tiny.yaml with SHORT_TASKS as its training tasks, redirected
    into `out` (run and dataset folders)."""
    return [
        sys.executable,
        str(REPO / "train_rfai.py"),
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--model",
        str(model_dir),
        "--set",
        f"training.output_dir={out / 'run'}",
        "--set",
        f"huggingface.dataset_output_dir={out / 'datasets'}",
        "--set",
        "logging.rich=false",
        "--set",
        f"data.train_file={SHORT_TASKS}",
        *extra,
    ]


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@contextlib.contextmanager
def busy_cores() -> Iterator[None]:
    """One busy-looping process per CPU core while the block runs: a heavily loaded machine,
    where a forked child can wait many milliseconds before it gets to its exec."""
    loop = [sys.executable, "-c", "while True: pass"]
    loops = [subprocess.Popen(loop) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for process in loops:
            process.kill()
            process.wait()


def read_tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files of `folder`: tag -> [(step, value)], in
    the order written. Reads the TFRecord framing (length, CRC, event, CRC) itself."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def assert_tensorboard_mirrors_metrics(run_dir: Path) -> None:
    """`run_dir/tensorboard` holds every number of `run_dir/metrics.jsonl`, each line once."""
    import pytest

    from rfai.tensorboard import scalars

    expected: dict[str, list] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for tag, value in scalars(record).items():
            approx = pytest.approx(value, rel=1e-6, abs=1e-30)  # stored as float32
            expected.setdefault(tag, []).append((record["step"], approx))
    assert expected, "metrics.jsonl holds no numbers"
    assert read_tensorboard(run_dir / "tensorboard") == expected
