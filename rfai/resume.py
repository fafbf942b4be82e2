"""What a run folder records so that a stopped run continues exactly, and what --resume checks.

`run.json`, the run record, is written once a run has passed every start-up check (with
`config.yaml`; a run that fails to start leaves neither): the run id, the byte size of each
dataset file and of `metrics.jsonl` when the run started, and `finished_step` once the final
adapter is saved. Checkpoints add the same offsets after their step (rfai/checkpoint.py).

`--resume` (`plan_resume`, step 1 of `rfai.run.build_run`, before anything is loaded):
1. compares the config with the run's saved `config.yaml`: a changed key outside
   `RESUMABLE_KEYS` would change the run's samples, so it is refused, naming each key;
2. takes the newest complete checkpoint (a damaged one is logged, naming its file, and an
   older one used); with none yet, the run restarts from step 0 under the same run id;
3. refuses a run that already finished at `training.steps`.
The caller then cuts the dataset files and `metrics.jsonl` back to the offsets of that point,
so a killed-and-resumed run leaves exactly the rows and metric lines of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rfai.checkpoint import (
    Checkpoint,
    CheckpointError,
    has_checkpoints,
    latest_complete_checkpoint,
)
from rfai.config import Config, ConfigError
from rfai.config_load import config_to_dict, load_config

RUN_RECORD = "run.json"
SAVED_CONFIG = "config.yaml"

# Keys that may differ from the saved config on --resume: they decide how long the run
# goes, what it prints, how often it checkpoints, how fast it scores, how the teacher's API
# is reached, and where it publishes, but never which samples are drawn, how they are scored
# or how the model is updated. A section name ending in "." allows all of its keys. The two
# folders may move with the run: the dataset files found there are checked against the
# recorded byte offsets and run id before anything is cut, so a wrong folder is refused.
RESUMABLE_KEYS = (
    "training.steps",
    "training.output_dir",
    "huggingface.dataset_output_dir",
    "logging.",
    "checkpoint.",
    "scoring.workers",
    "teacher.timeout_seconds",
    "teacher.max_retries",
    "teacher.backoff_seconds",
    "teacher.max_backoff_seconds",
    "teacher.concurrency",
    "teacher.max_requests",
    "teacher.max_total_tokens",
    "teacher.api_key_env",
    "huggingface.upload_datasets",
    "huggingface.dataset_repo_id",
    "huggingface.private",
    "huggingface.upload_model",
    "huggingface.model_repo_id",
    "huggingface.fuse_model",
    "huggingface.license",
    "huggingface.upload_retries",
    "huggingface.upload_timeout_seconds",
)


class ResumeError(RuntimeError):
    """A run folder cannot be started or resumed as asked; says why and what to do."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    # Byte sizes when the run started; None in a record written on resuming a run folder
    # made before run records existed (its start is unknown, so it cannot restart at 0).
    dataset_offsets: dict[str, int] | None
    metrics_offset: int | None
    finished_step: int | None = None


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: after `step`, files cut back to these offsets."""

    run_id: str
    step: int
    checkpoint: Checkpoint | None  # None: restart from step 0 (no checkpoint was made)
    dataset_offsets: dict[str, int]
    metrics_offset: int | None  # None: a checkpoint older than metrics offsets


def read_record(output_dir: Path) -> RunRecord | None:
    path = output_dir / RUN_RECORD
    if not path.exists():
        return None
    try:
        return RunRecord(**json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ResumeError(f"{path} is truncated or corrupt ({exc})") from None


def write_record(output_dir: Path, record: RunRecord) -> None:
    """Write `run.json` atomically (a crash leaves the old record or the new one)."""
    path = output_dir / RUN_RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    os.replace(tmp, path)


def mark_finished(output_dir: Path, step: int) -> None:
    """Record that the run finished at `step` (final evaluation done, adapter saved)."""
    record = read_record(output_dir)
    if record is not None:
        write_record(output_dir, RunRecord(**{**asdict(record), "finished_step": step}))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(saved: Config, config: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs: {key: (saved value, new value)}; unset is None."""
    old, new = _flatten(config_to_dict(saved)), _flatten(config_to_dict(config))
    return {k: (old.get(k), new.get(k)) for k in sorted({*old, *new}) if old.get(k) != new.get(k)}


def resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def check_resume_config(output_dir: Path, config: Config) -> None:
    """Refuse a config that differs from the run's saved one in a key outside RESUMABLE_KEYS."""
    path = output_dir / SAVED_CONFIG
    if not path.exists():
        raise ResumeError(
            f"--resume: {path} is missing, so this config cannot be checked against the "
            "run's; restore it, or start a new run in another training.output_dir"
        )
    try:
        saved = load_config(path)
    except ConfigError as exc:
        raise ResumeError(f"--resume: the run's saved config is unreadable: {exc}") from None
    refused = {k: v for k, v in changed_keys(saved, config).items() if not resumable(k)}
    if refused:
        diffs = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        raise ResumeError(
            f"--resume: this config changes what the run samples, scores or trains, "
            f"compared with {path}: {diffs}. Resume with the run's own config "
            f"(--config {path} --resume, adding --set only for training.steps, logging.*, "
            "checkpoint.*, scoring.workers, teacher connection settings, the output folders "
            "or huggingface upload settings), or start a new run in another training.output_dir"
        )


def refuse_fresh_start(output_dir: Path, checkpoints: Path) -> None:
    """Without --resume: a folder holding a run (checkpoints or a run record) is refused."""
    if has_checkpoints(checkpoints):
        raise ResumeError(
            f"{output_dir} already holds checkpoints of a run ({checkpoints}); pass --resume "
            "to continue it, or choose another training.output_dir"
        )
    record = read_record(output_dir)
    if record is not None:
        raise ResumeError(
            f"{output_dir} holds run {record.run_id} ({output_dir / RUN_RECORD}), which stopped "
            "before its first checkpoint; pass --resume to restart it from step 0 (its rows "
            "and metrics are rolled back first), or choose another training.output_dir"
        )


def plan_resume(
    config: Config, output_dir: Path, checkpoints: Path, log: Callable[[str], None]
) -> ResumePoint:
    """Step 1 of --resume (module docstring); raises ResumeError when it cannot resume."""
    record = read_record(output_dir)
    if record is None and not has_checkpoints(checkpoints):
        raise ResumeError(
            f"--resume: nothing to resume in {output_dir} (no checkpoint in {checkpoints} "
            f"and no {RUN_RECORD}); start without --resume"
        )
    check_resume_config(output_dir, config)
    try:
        checkpoint = latest_complete_checkpoint(checkpoints, log)
    except CheckpointError as exc:
        raise ResumeError(
            f"--resume: {exc}. To restart the run from step 0, move {checkpoints} aside and "
            "resume again; or start a new run in another training.output_dir"
        ) from None
    steps = config.training.steps
    if checkpoint is None:
        assert record is not None  # checked above: a record or checkpoints
        if record.dataset_offsets is None:
            raise ResumeError(
                f"--resume: {output_dir / RUN_RECORD} has no start offsets and no checkpoint "
                "is left, so the run cannot restart exactly; start a new run in another "
                "training.output_dir"
            )
        log(f"run {record.run_id} stopped before its first checkpoint: restarting from step 0")
        return ResumePoint(
            record.run_id, 0, None, record.dataset_offsets, record.metrics_offset
        )  # fmt: skip
    state = checkpoint.state
    if state.step > steps:
        raise ResumeError(
            f"--resume: checkpoint {checkpoint.path} is at step {state.step}, past "
            f"training.steps {steps}; set training.steps to at least {state.step}"
        )
    if record is not None and record.finished_step == state.step == steps:
        raise ResumeError(
            f"--resume: run {state.run_id} already finished at step {steps}; nothing to do. "
            f"To train it further, raise training.steps (e.g. --resume --set "
            f"training.steps={2 * steps})"
        )
    return ResumePoint(
        state.run_id, state.step, checkpoint, state.dataset_offsets, state.metrics_offset
    )  # fmt: skip
