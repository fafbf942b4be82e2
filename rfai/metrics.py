"""Per-step metrics: one JSON line per step in `metrics.jsonl`, and a line on the console.

Every line also goes to the sinks attached with `attach` (TensorBoard: `rfai.tensorboard`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console

# What the console line shows, in order, with its format.
_CONSOLE = (
    ("reward", "reward {:.3f}"),
    ("reward_std", "± {:.3f}"),
    ("student_score", "student {:.3f}"),
    ("teacher_score", "teacher {:.3f}"),
    ("pass_rate", "pass {:.2f}"),
    ("teacher_token_prob", "teacher tok p {:.3f}"),  # teacher-guided groups only
    ("distill_kl", "distill kl {:.3f}"),  # on-policy distillation only
    ("loss", "loss {:+.4f}"),
    ("kl", "kl {:.4f}"),
    ("clip", "clip {:.3f}"),  # the fraction of tokens clipped, low and high together
    ("learning_rate", "lr {:.1e}"),
    ("completion_tokens", "len {:.0f}"),
    ("generation_tps", "gen {:.0f} tok/s"),
    ("step_seconds", "{:.1f}s"),
    ("time_split", "({})"),  # generation, scoring wait, update
    ("peak_memory_gb", "{:.2f} GB"),
)


def console_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` plus the console line's derived values (clip fraction, time split)."""
    shown = dict(metrics)
    low, high = metrics.get("clipped_low"), metrics.get("clipped_high")
    if low is not None and high is not None:
        shown["clip"] = low + high
    parts = ("generation_seconds", "scoring_wait_seconds", "update_seconds")
    if all(metrics.get(k) is not None for k in parts):
        g, w, u = (metrics[k] for k in parts)
        shown["time_split"] = f"gen {g:.1f}s, score wait {w:.1f}s, update {u:.1f}s"
    return shown


class MetricsLogger:
    def __init__(self, path: Path, every_steps: int, use_rich: bool, total_steps: int) -> None:
        self.path = path
        self.every_steps = every_steps
        self.total_steps = total_steps
        self.console = Console(highlight=False) if use_rich else None
        self._sinks: list[Any] = []

    def attach(self, sink: Any) -> None:
        """Also hand every line written from now on to `sink.add(record)`; `close` closes it."""
        self._sinks.append(sink)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()
        self._sinks.clear()

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for sink in self._sinks:
            sink.add(record)

    def offset(self) -> int:
        """Byte size of metrics.jsonl (what a checkpoint and the run record keep)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def rollback(self, offset: int) -> int:
        """Cut metrics.jsonl back to `offset` bytes, so steps re-run after a resume are not
        logged twice; returns the lines removed."""
        size = self.offset()
        if not self.path.exists() and offset == 0:
            return 0
        if size < offset:
            raise RuntimeError(
                f"{self.path} has {size} bytes, fewer than the {offset} recorded; it was "
                "modified since"
            )
        with self.path.open("rb") as f:
            f.seek(offset)
            removed = f.read().count(b"\n")
        os.truncate(self.path, offset)
        return removed

    def info(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, soft_wrap=True)
        else:
            print(message, flush=True)

    def log_event(self, step: int, event: str, metrics: dict[str, Any]) -> None:
        """A metrics.jsonl line that is not a training step ("validation", "evaluation")."""
        self._write({"step": step, "event": event, **metrics})

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in metrics.items()
        }
        self._write({"step": step, **clean})
        if step % self.every_steps and step != self.total_steps:
            return
        shown = console_values(clean)
        parts = [fmt.format(shown[key]) for key, fmt in _CONSOLE if shown.get(key) is not None]
        if clean.get("skipped_tasks"):
            parts.append(f"skipped {clean['skipped_tasks']}")
        if clean.get("scorer_errors"):
            parts.append(f"scorer errors {clean['scorer_errors']}")
        line = f"step {step}/{self.total_steps}  " + "  ".join(parts)
        if self.console is not None:
            self.console.print(f"[bold]{line}[/bold]", soft_wrap=True)
        else:
            print(line, flush=True)
