"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal asks the run to stop at the end of the current step: the trainer finishes
it (rows, metrics, its validation pass), saves a checkpoint and raises `RunInterrupted`,
whose message names the checkpoint and the exact `--resume` command; the process exits with
128 + the signal's number and no traceback. A second signal aborts at once
(`KeyboardInterrupt`): what the unfinished step wrote is rolled back by `--resume`, as after
a crash. Sandboxed programs, compilers and linters run in their own sessions, so a Ctrl-C at
the terminal reaches the trainer only, never a program that is being scored.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):
    """The run stopped at a step boundary on a signal. `status` says where it stopped, the
    message adds the resume command; `exit_code` is 128 + the signal's number."""

    def __init__(self, status: str, output_dir: Path, signum: int) -> None:
        super().__init__(f"{status}. Resume with: {resume_command(output_dir)}")
        self.status = status
        self.exit_code = 128 + signum


def resume_command(output_dir: Path) -> str:
    return f"python train_rfai.py --config {output_dir / 'config.yaml'} --resume"


def stopped_status(signame: str, step: int, checkpoint: Path | None) -> str:
    """Where a run stopped by `signame` after `step` stands (checkpoint None: before step 1)."""
    if checkpoint is None:
        where = f"stopped before step {step + 1}, with no checkpoint (resuming restarts at step 0)"
    else:
        where = f"stopped after step {step}; checkpoint {checkpoint}"
    return f"{signame}: {where}"


def aborted_message(output_dir: Path, checkpoint: Path | None) -> str:
    """What a run aborted by a second signal says, naming its last checkpoint if any."""
    if checkpoint is None:
        last = "it has no checkpoint yet (resuming restarts at step 0)"
    else:
        last = f"its last checkpoint is {checkpoint}"
    return f"aborted: {last}. Resume with: {resume_command(output_dir)}"


class StopSignals:
    """While active, SIGINT and SIGTERM set `received` (the signal's name) instead of
    stopping the process; a second one raises KeyboardInterrupt. Installed only in the main
    thread (Python delivers signals there); elsewhere it does nothing."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt(name)
        self.received, self.signum = name, signum
        # os.write, not print: a handler can run in the middle of another write to stderr.
        os.write(
            2,
            f"\n{name}: stopping at the end of this step, with a checkpoint "
            f"({name} or Ctrl-C again stops at once)\n".encode(),
        )
