"""Weights & Biases logging (rfai/wandb_log.py): a clear error without the package, and a
real run logged by the real `wandb` in offline mode, its records read back from the file."""

import json
import struct
import sys

import pytest

from rfai.config_load import load_config
from rfai.run import TrainingError, build_run
from rfai.tensorboard import scalars
from rfai.wandb_log import MISSING, WandbMissing, require_wandb
from tests.helpers import REPO, run_cli, tiny_run_args

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of framed chunks


def wandb_history(path) -> list[dict[str, float]]:
    """The history records of an offline `run-<id>.wandb` file, as {key: value}."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    at, pending, records = 7, b"", []
    while at + 7 <= len(data):
        if BLOCK - at % BLOCK < 7:  # a block's tail too short for a header is padding
            at += BLOCK - at % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[at + 4 : at + 7])
        chunk = data[at + 7 : at + 7 + length]
        at += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL, FIRST / MIDDLE, LAST
        if kind in (1, 4):
            records.append(pending)
    history = []
    for raw in records:
        record = Record.FromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                     for i in record.history.item}  # fmt: skip
            history.append(items)
    return history


def test_without_the_package_the_run_stops_before_anything_with_what_to_do(
    tiny_model_dir, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(WandbMissing, match="pip install wandb"):
        require_wandb()
    config = load_config(
        REPO / "configs" / "tiny.yaml",
        [f"training.output_dir={tmp_path / 'run'}", "logging.wandb=true",
         f"huggingface.dataset_output_dir={tmp_path / 'datasets'}"],
        model=str(tiny_model_dir),
    )  # fmt: skip
    with pytest.raises(TrainingError) as error:
        build_run(config)
    assert str(error.value) == MISSING
    assert not (tmp_path / "run").exists()


def test_a_run_logs_every_metric_line_to_an_offline_wandb_run(
    tiny_model_dir, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = tiny_run_args(tiny_model_dir, tmp_path, "--set", "logging.wandb=true",
                         "--set", "training.steps=2")  # fmt: skip
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    (path,) = (tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    logged = wandb_history(path)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    expected = {}
    for line in lines:
        expected.setdefault(line["step"], {}).update(scalars(line))
    got = {}
    for items in logged:
        step = items.pop("_step")
        got.setdefault(step, {}).update({k: v for k, v in items.items() if not k.startswith("_")})
    assert got.keys() == expected.keys() == {1, 2}
    for step, values in expected.items():
        assert got[step] == pytest.approx(values)
