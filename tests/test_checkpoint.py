"""Checkpoints: exact round trip of adapter and optimizer; per-step seeds; pruning; crashes."""

import json
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import pytest
from mlx.utils import tree_flatten, tree_map

from rfai.checkpoint import (
    LATEST,
    CheckpointError,
    TrainingState,
    latest_checkpoint,
    latest_complete_checkpoint,
    load_checkpoint,
    restore_checkpoint,
    rng_state,
    save_checkpoint,
    step_seed,
)
from rfai.config import AdapterConfig, StudentConfig
from rfai.student import Student, load_student


def make_student(model_dir: Path) -> Student:
    # q_proj only keeps the arrays few; the layout is what matters here.
    config = StudentConfig(
        path=str(model_dir), adapter=AdapterConfig(rank=4, keys=("self_attn.q_proj",))
    )
    return load_student(config)


def trained_optimizer(student: Student, updates: int) -> optim.AdamW:
    optimizer = optim.AdamW(learning_rate=optim.linear_schedule(1e-2, 1e-3, 10))
    optimizer.init(student.model.trainable_parameters())
    mx.random.seed(7)
    for _ in range(updates):
        grads = tree_map(lambda p: mx.random.normal(p.shape), student.model.trainable_parameters())
        optimizer.update(student.model, grads)
    mx.eval(student.model.parameters(), optimizer.state)
    return optimizer


def state_at(step: int, **changes) -> TrainingState:
    fields = {
        "step": step,
        "run_id": "run-a",
        "sampler": {"epoch": 1, "offset": 3},
        "dataset_offsets": {"train": 120, "validation": 0, "evaluation": 0},
        "rng_state": rng_state(),
        "extra": {"note": "x"},
    }
    return TrainingState(**{**fields, **changes})


def flat(tree) -> dict[str, mx.array]:
    return dict(tree_flatten(tree))


def test_round_trip_restores_adapter_and_optimizer_in_place(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=2)
    saved_params = flat(student.model.trainable_parameters())
    saved_opt = flat(optimizer.state)
    assert saved_opt["step"].item() == 2
    assert any(name.endswith(".m") for name in saved_opt)

    mx.random.seed(99)
    state = state_at(2)
    path = save_checkpoint(tmp_path, student, optimizer, state, keep_last=3)

    fresh = make_student(tiny_model_dir)
    fresh_optimizer = trained_optimizer(fresh, updates=0)
    state_dict = fresh_optimizer.state
    assert latest_checkpoint(tmp_path) == path
    loaded = load_checkpoint(path, fresh, fresh_optimizer)

    # state.json round-trips, including the MLX key recorded at save time (seed 99's key).
    assert loaded == state
    mx.random.seed(99)
    assert loaded.rng_state == rng_state()
    for name, value in flat(fresh.model.trainable_parameters()).items():
        assert mx.array_equal(value, saved_params[name]).item(), name
    restored = flat(fresh_optimizer.state)
    assert set(restored) == set(saved_opt)
    for name, value in restored.items():
        assert mx.array_equal(value, saved_opt[name]).item(), name
    # Compiled training steps hold a reference to the optimizer's state dict: the restore
    # must fill that very dict, not replace it.
    assert fresh_optimizer.state is state_dict


def test_step_seed_replays_the_random_stream_after_a_resume() -> None:
    # MLX 0.32 cannot set its random key (mx.random.state does not support assignment), so
    # exact resume reseeds from (seed, step) at every step instead of restoring a key.
    draws = {}
    for step in (1, 2, 3):
        mx.random.seed(step_seed(0, step))
        draws[step] = mx.random.uniform(shape=(4,)).tolist()
    mx.random.seed(12345)  # whatever happened before the "restart"
    mx.random.seed(step_seed(0, 2))
    assert mx.random.uniform(shape=(4,)).tolist() == draws[2]
    assert draws[1] != draws[2] != draws[3]
    # (seed * 1_000_003 + step) mod 2**32, e.g. seed 7, step 5: 7_000_021 + 5 = 7_000_026.
    assert step_seed(7, 5) == 7_000_026
    # Wraps at 2**32: 5000 * 1_000_003 = 5_000_015_000 - 4_294_967_296 = 705_047_704.
    assert step_seed(5000, 0) == 705_047_704


def test_restored_optimizer_continues_identically(tiny_model_dir: Path, tmp_path: Path) -> None:
    # One more update after the restore equals one more update without the save/restore.
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=2)
    path = save_checkpoint(tmp_path, student, optimizer, state_at(2), keep_last=1)
    grads = tree_map(lambda p: mx.full(p.shape, 0.3), student.model.trainable_parameters())
    optimizer.update(student.model, grads)
    expected = flat(student.model.trainable_parameters())

    fresh = make_student(tiny_model_dir)
    fresh_optimizer = trained_optimizer(fresh, updates=0)
    load_checkpoint(path, fresh, fresh_optimizer)
    fresh_optimizer.update(fresh.model, grads)
    for name, value in flat(fresh.model.trainable_parameters()).items():
        assert mx.allclose(value, expected[name], atol=1e-7).item(), name


def test_keep_last_prunes_oldest(tiny_model_dir: Path, tmp_path: Path) -> None:
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=1)
    for step in range(1, 6):
        save_checkpoint(tmp_path, student, optimizer, state_at(step), keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, "step_000004", "step_000005"]
    assert json.loads((tmp_path / LATEST).read_text()) == {"checkpoint": "step_000005", "step": 5}


def test_regression_pruning_never_deletes_the_checkpoint_just_saved(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Bug: pruning kept the last `keep_last` folders BY NAME. After resuming from an older
    # checkpoint (step 10, with steps 20 and 30 of the abandoned run still there), saving
    # step 15 deleted step_000015 itself, leaving `latest` naming a missing folder.
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=1)
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, student, optimizer, state_at(step), keep_last=3)
    path = save_checkpoint(tmp_path, student, optimizer, state_at(15), keep_last=2)
    assert latest_checkpoint(tmp_path) == path == tmp_path / "step_000015"
    # keep_last=2: the new one and the newest other one.
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000015", "step_000030"]


def test_leftover_tmp_folder_from_a_crash_is_ignored_then_replaced(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=1)
    first = save_checkpoint(tmp_path, student, optimizer, state_at(1), keep_last=3)
    # A crash while writing step 2: a half-written temporary folder, `latest` untouched.
    crashed = tmp_path / ".tmp_step_000002"
    crashed.mkdir()
    (crashed / "adapters.safetensors").write_bytes(b"\x00\x01half")
    (crashed / "junk").write_text("from the crash")

    assert latest_checkpoint(tmp_path) == first
    load_checkpoint(first, make_student(tiny_model_dir), trained_optimizer(student, 0))

    second = save_checkpoint(tmp_path, student, optimizer, state_at(2), keep_last=3)
    assert latest_checkpoint(tmp_path) == second
    assert not crashed.exists()
    assert not (second / "junk").exists()
    assert sorted(p.name for p in second.iterdir()) == [
        "adapter_config.json",
        "adapters.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]


def test_no_checkpoint_yet(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Each way a checkpoint is found damaged after it was written: (damage done to step 2's
# folder, the file the report names, the checkpoint used instead). With `latest` unreadable
# or naming a missing folder, the newest complete one is step 2 itself.
CORRUPTIONS = {
    "truncated_adapter": (
        lambda c: _truncate(c / "adapters.safetensors"),
        "adapters.safetensors",
        "step_000001",
    ),
    "truncated_optimizer": (
        lambda c: _truncate(c / "optimizer.safetensors"),
        "optimizer.safetensors",
        "step_000001",
    ),
    "truncated_state": (lambda c: _truncate(c / "state.json"), "state.json", "step_000001"),
    "missing_state": (lambda c: (c / "state.json").unlink(), "state.json", "step_000001"),
    "garbage_in_latest": (
        lambda c: (c.parent / LATEST).write_bytes(b"\x00garbage{"),
        LATEST,
        "step_000002",
    ),
    "latest_names_a_missing_folder": (
        lambda c: (c.parent / LATEST).write_text('{"checkpoint": "step_000009", "step": 9}'),
        "step_000009",
        "step_000002",
    ),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_regression_corrupt_checkpoint_falls_back_to_the_previous_complete_one(
    tiny_model_dir: Path, tmp_path: Path, kind: str
) -> None:
    # Bug: a truncated adapter, optimizer or state.json, or garbage in `latest`, ended --resume
    # in a raw traceback that did not name the file, with no fallback to the checkpoint
    # before it. Now each is reported in one line naming the file, and the newest complete
    # checkpoint is used.
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=1)
    save_checkpoint(tmp_path, student, optimizer, state_at(1), keep_last=3)
    second = save_checkpoint(tmp_path, student, optimizer, state_at(2), keep_last=3)
    corrupt, named, used = CORRUPTIONS[kind]
    corrupt(second)
    logged: list[str] = []
    checkpoint = latest_complete_checkpoint(tmp_path, logged.append)
    assert checkpoint is not None and checkpoint.path == tmp_path / used
    step = int(used[-1])
    assert checkpoint.state == state_at(step, rng_state=checkpoint.state.rng_state)
    problem = next(line for line in logged if named in line)
    assert "\n" not in problem and "Traceback" not in problem
    assert logged[-1].startswith(f"checkpoint: falling back to {tmp_path / used}")
    # What was read restores for real.
    restore_checkpoint(checkpoint, make_student(tiny_model_dir), trained_optimizer(student, 0))


def test_regression_no_complete_checkpoint_is_one_error_naming_every_damaged_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=1)
    first = save_checkpoint(tmp_path, student, optimizer, state_at(1), keep_last=3)
    second = save_checkpoint(tmp_path, student, optimizer, state_at(2), keep_last=3)
    _truncate(second / "optimizer.safetensors")
    _truncate(first / "adapters.safetensors")
    with pytest.raises(CheckpointError) as info:
        latest_complete_checkpoint(tmp_path, lambda line: None)
    message = str(info.value)
    assert f"no complete checkpoint in {tmp_path}" in message and "\n" not in message
    assert str(second / "optimizer.safetensors") in message
    assert str(first / "adapters.safetensors") in message


def test_read_checkpoint_reads_everything_before_restoring_anything(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A damaged optimizer file must be found before the adapter is loaded into the student,
    # so a fallback starts from untouched weights.
    student = make_student(tiny_model_dir)
    optimizer = trained_optimizer(student, updates=2)
    path = save_checkpoint(tmp_path, student, optimizer, state_at(2), keep_last=3)
    _truncate(path / "optimizer.safetensors")
    fresh = make_student(tiny_model_dir)
    before = flat(fresh.model.trainable_parameters())
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors is truncated or corrupt"):
        load_checkpoint(path, fresh, trained_optimizer(fresh, 0))
    for name, value in flat(fresh.model.trainable_parameters()).items():
        assert mx.array_equal(value, before[name]).item(), name
