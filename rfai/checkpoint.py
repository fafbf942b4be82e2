"""Atomic checkpoints and exact resume.

A checkpoint is a folder `checkpoints/step_NNNNNN/` with:
- `adapters.safetensors` + `adapter_config.json`: mlx-lm's adapter format, so the folder
  works with `mlx_lm.generate --adapter-path`;
- `optimizer.safetensors`: the flattened optimizer state (moments, step count);
- `state.json`: step, sampler position, dataset byte offsets, run id, and the MLX random key
  at save time (for the record: MLX cannot set a key directly, so the trainer reseeds from
  (training.seed, step) at the start of every step, which makes the random stream after a
  resume the same as in an uninterrupted run).
It is written into a temporary sibling folder and renamed into place, then `latest` (a file
naming the folder) is replaced atomically, so a crash leaves either the old or the new
checkpoint, never a half-written one.

A checkpoint damaged afterwards (a truncated file, garbage in `latest`) is found by
`latest_complete_checkpoint`, which reads every file before anything is restored: each
damaged one is reported in one line naming the file, and the newest complete checkpoint is
used instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from rfai.student import ADAPTER_WEIGHTS, Student

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LATEST = "latest"


@dataclass(frozen=True)
class TrainingState:
    step: int  # optimizer steps completed (the next step to run is step + 1)
    run_id: str
    sampler: dict[str, int]
    dataset_offsets: dict[str, int]
    rng_state: list[list[int]]
    extra: dict[str, Any]
    # Byte size of metrics.jsonl at save time, so --resume drops the lines of re-run steps;
    # None in checkpoints written before it was recorded.
    metrics_offset: int | None = None


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not what it should be; names the file."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose files were all read successfully (nothing restored yet)."""

    path: Path
    state: TrainingState
    optimizer: dict[str, mx.array]  # flattened optimizer state


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> list[list[int]]:
    return [np.array(mx.random.state[i]).tolist() for i in range(len(mx.random.state))]


def step_seed(seed: int, step: int) -> int:
    """The MLX seed for a step: a pure function of (seed, step), so resume replays it."""
    return (seed * 1_000_003 + step) % 2**32


def save_checkpoint(
    folder: Path,
    student: Student,
    optimizer: optim.Optimizer,
    state: TrainingState,
    keep_last: int,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{state.step:06d}"
    tmp = folder / f".tmp_step_{state.step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    student.save_adapter(tmp)
    mx.save_safetensors(str(tmp / OPTIMIZER_FILE), dict(tree_flatten(optimizer.state)))
    (tmp / STATE_FILE).write_text(json.dumps(state.__dict__, indent=2))
    for name in os.listdir(tmp):
        with (tmp / name).open("rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_json_atomic(folder / LATEST, {"checkpoint": final.name, "step": state.step})
    # Never prune the checkpoint just written, which `latest` names: after a resume from an
    # older checkpoint, later-numbered folders of the abandoned run sort after it by name.
    others = sorted(p for p in folder.glob("step_*") if p.is_dir() and p != final)
    for old in others[: max(len(others) - (keep_last - 1), 0)]:
        shutil.rmtree(old)
    return final


def _step_folders(folder: Path) -> list[Path]:
    """Checkpoint folders, newest (highest step) first; temporary ones are not included."""
    return sorted((p for p in folder.glob("step_*") if p.is_dir()), reverse=True)


def _pointed(folder: Path) -> Path:
    """The folder `latest` names; CheckpointError naming `latest` when it is unreadable."""
    pointer = folder / LATEST
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is not a valid pointer ({exc!r})") from None
    if not isinstance(name, str) or not name.startswith("step_") or "/" in name:
        raise CheckpointError(f"{pointer} names {name!r}, not a step_NNNNNN folder")
    return folder / name


def latest_checkpoint(folder: Path) -> Path | None:
    """The folder `latest` names, or None when no checkpoint was ever completed.

    Raises CheckpointError when `latest` is unreadable or names a missing folder; use
    `latest_complete_checkpoint` to fall back to an older complete checkpoint instead.
    """
    if not (folder / LATEST).exists():
        return None
    path = _pointed(folder)
    if not (path / STATE_FILE).exists():
        raise CheckpointError(
            f"{folder / LATEST} names {path.name}, which is missing or incomplete"
        )
    return path


def has_checkpoints(folder: Path) -> bool:
    """Whether `folder` holds a `latest` pointer or any step folder (complete or not)."""
    return (folder / LATEST).exists() or bool(_step_folders(folder))


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and check every file of the checkpoint at `path`, restoring nothing.

    Raises CheckpointError naming the first missing or damaged file.
    """
    state_file = path / STATE_FILE
    try:
        data = json.loads(state_file.read_text())
        state = TrainingState(**data)
    except FileNotFoundError:
        raise CheckpointError(f"{state_file} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{state_file} is truncated or corrupt ({exc})") from None
    required = {f.name for f in fields(TrainingState) if f.default is MISSING}
    if not isinstance(data, dict) or not required <= set(data) or not isinstance(state.step, int):
        raise CheckpointError(f"{state_file} lacks the fields of a checkpoint state")
    arrays = {}
    for name in (ADAPTER_WEIGHTS, OPTIMIZER_FILE):
        file = path / name
        if not file.exists():
            raise CheckpointError(f"{file} is missing")
        try:
            arrays[name] = mx.load(str(file))
        except (RuntimeError, ValueError, OSError) as exc:
            # mx.load reads the header and checks every tensor's extent against the file's
            # size, so a truncated file is reported here, before anything is restored.
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{file} is truncated or corrupt ({message})") from None
    return Checkpoint(path, state, arrays[OPTIMIZER_FILE])


def latest_complete_checkpoint(folder: Path, log: Callable[[str], None]) -> Checkpoint | None:
    """The newest checkpoint whose files all read: the one `latest` names, else (each damaged
    one logged in a line naming its file) the next older complete one.

    Returns None when `folder` holds no checkpoint at all; raises CheckpointError listing
    every damaged one when none is complete.
    """
    if not has_checkpoints(folder):
        return None
    candidates = _step_folders(folder)
    problems = []
    if (folder / LATEST).exists():
        try:
            pointed = _pointed(folder)
            candidates = [pointed, *(p for p in candidates if p != pointed)]
        except CheckpointError as exc:
            problems.append(str(exc))
            log(f"checkpoint: {exc}; looking for the newest complete checkpoint")
    for path in candidates:
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            log(f"checkpoint {path.name} is unusable: {exc}; trying an older one")
            continue
        if problems:
            log(f"checkpoint: falling back to {path} (step {checkpoint.state.step})")
        return checkpoint
    raise CheckpointError(
        f"no complete checkpoint in {folder}: " + "; ".join(problems or ["no step_* folder"])
    )


def _assign_leaves(tree: dict, flat: dict[str, mx.array], path: Path) -> None:
    """Put saved leaves into the existing optimizer state tree, in place.

    In place because compiled steps hold a reference to this very dict; leaf by leaf because
    a flatten/unflatten round trip drops the empty sub-trees (modules without trainable
    parameters) that the optimizer's tree_map expects to find.
    """
    expected = {k for k, _ in tree_flatten(tree)}
    if expected and expected != set(flat):
        missing = sorted(expected - set(flat))[:3]
        raise ValueError(
            f"optimizer state in {path} does not match this run's trainable parameters "
            f"(e.g. missing {missing}); was the checkpoint made with other student settings?"
        )
    for key, value in flat.items():
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            child = node[int(part)] if isinstance(node, list) else node.get(part)
            if child is None:
                child = {}
                node[part] = child
            node = child
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value


def discard_after(folder: Path, step: int) -> list[str]:
    """Delete the checkpoint folders past `step` (names returned).

    Called when a run resumes at `step`: later folders belong to the abandoned stretch (or
    are damaged), and their dataset offsets point into rows that were just cut back, so a
    later fallback must never pick one of them.
    """
    removed = []
    for path in _step_folders(folder):
        if path.name > f"step_{step:06d}":
            shutil.rmtree(path)
            removed.append(path.name)
    return removed


def restore_checkpoint(
    checkpoint: Checkpoint, student: Student, optimizer: optim.Optimizer
) -> None:
    """Put a read checkpoint's adapter weights and optimizer state into the live objects."""
    student.load_adapter(checkpoint.path)
    _assign_leaves(optimizer.state, checkpoint.optimizer, checkpoint.path)
    mx.eval(optimizer.state)


def load_checkpoint(path: Path, student: Student, optimizer: optim.Optimizer) -> TrainingState:
    """Restore adapter weights and optimizer state from `path`; returns its state."""
    checkpoint = read_checkpoint(path)
    restore_checkpoint(checkpoint, student, optimizer)
    return checkpoint.state
