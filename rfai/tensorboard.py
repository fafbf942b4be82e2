"""TensorBoard event files that mirror `metrics.jsonl` (`logging.tensorboard`).

`metrics.jsonl` is the source of truth. When a run starts (after `--resume` has cut
`metrics.jsonl` back to its checkpoint), `<output_dir>/tensorboard/` is rebuilt from the lines
that file holds, then every new line is added as it is logged; so a resumed run's TensorBoard
log holds each step once, as `metrics.jsonl` does. Training steps are under `train/<key>`,
validation and evaluation passes under `validation/<key>` and `evaluation/<key>`; every
finite number of a line is a scalar (booleans, strings and nulls are left out). Written with
tensorboardX's event file writer (no TensorFlow, no PyTorch), one event per line.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

FOLDER = "tensorboard"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard tags and values of one metrics.jsonl line."""
    prefix = record.get("event") or "train"
    return {
        f"{prefix}/{key}": float(value)
        for key, value in record.items()
        if key not in ("step", "event")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class TensorBoardLog:
    """Writes each record as one event, synchronously: when `add` returns, the line is in
    the file (tensorboardX's SummaryWriter queues events for a background thread instead)."""

    def __init__(self, folder: Path, metrics: Path) -> None:
        """Rebuild `folder` from the lines of `metrics` (the run's metrics.jsonl)."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self._writer = EventsWriter(str(folder / "events"))
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                if line.strip():
                    self._add(json.loads(line))
        self._writer.flush()

    def _add(self, record: dict[str, Any]) -> None:
        values = [
            Summary.Value(tag=tag, simple_value=value) for tag, value in scalars(record).items()
        ]
        if values:
            event = Event(
                wall_time=time.time(), step=int(record["step"]), summary=Summary(value=values)
            )
            self._writer.write_event(event)

    def add(self, record: dict[str, Any]) -> None:
        """One new metrics.jsonl line, in the file when this returns (a running TensorBoard
        shows it at its next reload)."""
        self._add(record)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
