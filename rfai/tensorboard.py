"""TensorBoard event files that mirror `metrics.jsonl` (`logging.tensorboard`).

`metrics.jsonl` is the source of truth. When a run starts (after `--resume` has cut
`metrics.jsonl` back to its checkpoint), `<output_dir>/tensorboard/` is rebuilt from the lines
that file holds, then every new line is added as it is logged; so a resumed run's TensorBoard
log holds each step once, as `metrics.jsonl` does. Training steps are under `train/<key>`,
validation and evaluation passes under `validation/<key>` and `evaluation/<key>`; every
finite number of a line is a scalar (booleans, strings and nulls are left out). Written with
tensorboardX, which needs neither TensorFlow nor PyTorch.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

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
    def __init__(self, folder: Path, metrics: Path) -> None:
        """Rebuild `folder` from the lines of `metrics` (the run's metrics.jsonl)."""
        shutil.rmtree(folder, ignore_errors=True)
        self.folder = folder
        self._writer = SummaryWriter(str(folder))
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                if line.strip():
                    self._add(json.loads(line))
        self._writer.flush()

    def _add(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, record["step"])

    def add(self, record: dict[str, Any]) -> None:
        """One new metrics.jsonl line, flushed so a running TensorBoard shows it."""
        self._add(record)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
