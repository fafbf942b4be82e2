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
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from rfai.student import Student

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


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["checkpoint"]
    path = folder / name
    if not (path / STATE_FILE).exists():
        # Deleting `latest` would make the folder look checkpoint-free, so the advice is to
        # point it at a complete checkpoint instead.
        complete = sorted(p.name for p in folder.glob("step_*") if (p / STATE_FILE).exists())
        raise RuntimeError(
            f"{pointer} names {name}, which is missing or incomplete. To resume from an "
            f"older checkpoint, edit {pointer} to name one of {complete or 'none left'} "
            f'(e.g. {{"checkpoint": "step_000050", "step": 50}}), or start a new run in '
            "another training.output_dir"
        )
    return path


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


def load_checkpoint(path: Path, student: Student, optimizer: optim.Optimizer) -> TrainingState:
    """Restore adapter weights and optimizer state from `path`; returns its state."""
    student.load_adapter(path)
    flat = mx.load(str(path / OPTIMIZER_FILE))
    _assign_leaves(optimizer.state, flat, path)
    mx.eval(optimizer.state)
    data = json.loads((path / STATE_FILE).read_text())
    return TrainingState(**data)
