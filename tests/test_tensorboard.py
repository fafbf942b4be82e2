"""TensorBoard event files mirror metrics.jsonl (rfai/tensorboard.py), read back from disk."""

import json
import math

import pytest

from rfai.tensorboard import TensorBoardLog, scalars
from tests.helpers import read_tensorboard

LINES = [
    {"step": 1, "reward": 0.25, "loss": -0.5, "updated": True, "distill_kl": None},
    {"step": 1, "event": "validation", "validation_pass_rate": 0.5},
    {"step": 2, "reward": 0.5, "loss": 0.125, "kl": math.nan, "teacher_requests": 4},
]


def test_scalars_keep_finite_numbers_under_the_split_prefix():
    assert scalars(LINES[0]) == {"train/reward": 0.25, "train/loss": -0.5}
    assert scalars(LINES[1]) == {"validation/validation_pass_rate": 0.5}
    assert scalars(LINES[2]) == {"train/reward": 0.5, "train/loss": 0.125,
                                 "train/teacher_requests": 4.0}  # fmt: skip


def test_the_log_is_rebuilt_from_metrics_jsonl_so_a_resume_keeps_each_step_once(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(line) + "\n" for line in LINES[:2]))
    folder = tmp_path / "tensorboard"
    log = TensorBoardLog(folder, metrics)
    log.add(LINES[2])  # written after the start, as the trainer does
    log.close()
    events = read_tensorboard(folder)
    assert events["train/reward"] == [(1, 0.25), (2, 0.5)]
    assert events["validation/validation_pass_rate"] == [(1, 0.5)]
    # A resume cut metrics.jsonl back to step 1: the rebuilt log forgets step 2, and the
    # re-run step 2 then appears once.
    log = TensorBoardLog(folder, metrics)
    assert read_tensorboard(folder)["train/reward"] == [(1, 0.25)]
    log.add({"step": 2, "reward": 0.75})
    log.close()
    assert read_tensorboard(folder)["train/reward"] == [(1, 0.25), (2, 0.75)]
    assert events["train/loss"] == [(1, -0.5), (2, pytest.approx(0.125))]
