"""Weights & Biases logging (`logging.wandb: true`), used only when `wandb` is installed.

Every metrics.jsonl line goes to the W&B run as it is written, with the tags TensorBoard
gets (`train/<key>`, `validation/<key>`, `evaluation/<key>`: `rfai.tensorboard.scalars`) at
the line's step. The W&B run's id is rfai's run id, so `--resume` continues the same W&B run;
W&B keeps the points it has and ignores a step logged again, and since a resumed run replays
the same samples those are the points it would have logged. Offline use:
`WANDB_MODE=offline` (then `wandb sync` later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rfai.tensorboard import scalars

MISSING = (
    "logging.wandb is true but the wandb package is not installed: pip install wandb "
    "(and wandb login, or WANDB_MODE=offline), or set logging.wandb: false"
)


class WandbMissing(RuntimeError):
    """`logging.wandb: true` without the `wandb` package."""


def require_wandb() -> Any:
    """The `wandb` module; WandbMissing with what to do when it is not installed."""
    try:
        import wandb
    except ImportError:
        raise WandbMissing(MISSING) from None
    return wandb


class WandbLog:
    def __init__(self, project: str, run_id: str, output_dir: Path, config: dict[str, Any]) -> None:
        self._wandb = require_wandb()
        self._run = self._wandb.init(
            project=project, id=run_id, name=run_id, dir=str(output_dir), config=config,
            resume="allow",
        )  # fmt: skip

    def add(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if values:
            self._run.log(values, step=int(record["step"]))

    def close(self) -> None:
        self._run.finish()
