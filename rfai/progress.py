"""The live terminal view of a run: a progress bar over the steps, with elapsed time, ETA and
what the step is doing now (generating n/N completions, scoring, updating, evaluating).

Shown only when the console is a terminal and `logging.rich` is on; the per-step lines and
messages print above the bar (they go through the same rich `Console`). Anywhere else (CI,
`nohup`, a pipe) every method does nothing, and the run writes plain lines with no control
codes. A phase update costs a few microseconds (`bench/step.py` measures it against the step).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StepProgress:
    def __init__(self, console: Console | None, total_steps: int, done_steps: int) -> None:
        self.enabled = console is not None and console.is_terminal
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]steps"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=console,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task(
                "starting", total=total_steps, completed=done_steps
            )

    def __enter__(self) -> StepProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, text: str) -> None:
        """What the run is doing now, shown after the bar."""
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def rollout(self, what: str):
        """An `on_progress(generated, scored, total)` callback for `RolloutRunner.run`."""

        def show(generated: int, scored: int, total: int) -> None:
            if generated < total:
                self.phase(f"{what}: generating {generated}/{total}, scored {scored}")
            else:
                self.phase(f"{what}: scoring {scored}/{total}")

        return show

    def refresh(self) -> None:
        """Redraw now (the view also redraws itself 4 times a second)."""
        if self._progress is not None:
            self._progress.refresh()

    def step_done(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1)
