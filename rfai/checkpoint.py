"""Atomic checkpoints and exact resume.

A checkpoint is a folder `checkpoints/step_NNNNNN/` with:
- `adapters.safetensors` + `adapter_config.json`: mlx-lm's adapter format, so the folder
  works with `mlx_lm.generate --adapter-path`;
- `optimizer.safetensors`: the flattened optimizer state (moments, step count);
- `state.json`: step, MLX and sampler RNG positions, dataset byte offsets, run id.
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
from mlx.utils import tree_flatten, tree_unflatten

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
    return [np.array(s).tolist() for s in mx.random.state]


def set_rng_state(state: list[list[int]]) -> None:
    mx.random.state[:] = [mx.array(np.array(s, dtype=np.uint32)) for s in state]


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
    kept = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in kept[:-keep_last]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["checkpoint"]
    path = folder / name
    if not (path / STATE_FILE).exists():
        raise RuntimeError(
            f"{pointer} names {name}, which is missing or incomplete; delete {pointer} to "
            "resume from an older checkpoint, or start a new run"
        )
    return path


def load_checkpoint(path: Path, student: Student, optimizer: optim.Optimizer) -> TrainingState:
    """Restore adapter weights, optimizer state and RNG from `path`; returns its state."""
    student.load_adapter(path)
    flat = mx.load(str(path / OPTIMIZER_FILE))
    # In place: compiled steps hold a reference to this very dict.
    optimizer.state.clear()
    optimizer.state.update(tree_unflatten(list(flat.items())))
    mx.eval(optimizer.state)
    data = json.loads((path / STATE_FILE).read_text())
    state = TrainingState(**data)
    set_rng_state(state.rng_state)
    return state
