"""Which tasks each step trains on: seeded epochs over the task list, resumable exactly."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from scorers.task import Task


@dataclass
class SamplerState:
    epoch: int = 0
    offset: int = 0


class TaskSampler:
    """Yields batches of tasks epoch by epoch; epoch e is a permutation seeded by (seed, e).

    A batch that crosses an epoch boundary takes the rest of one epoch and the start of the
    next, so every task is seen once per epoch. The position (epoch, offset) is all the state
    there is, which is what makes `--resume` exact.
    """

    def __init__(self, tasks: Sequence[Task], shuffle: bool, seed: int) -> None:
        if not tasks:
            raise ValueError("no tasks to train on")
        self.tasks = list(tasks)
        self.shuffle = shuffle
        self.seed = seed
        self.state = SamplerState()

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.tasks)))
        if self.shuffle:
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def next_batch(self, size: int) -> list[Task]:
        batch: list[Task] = []
        while len(batch) < size:
            order = self._order(self.state.epoch)
            take = order[self.state.offset : self.state.offset + size - len(batch)]
            batch.extend(self.tasks[i] for i in take)
            self.state.offset += len(take)
            if self.state.offset >= len(order):
                self.state = SamplerState(self.state.epoch + 1, 0)
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "offset": self.state.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.state = SamplerState(int(state["epoch"]), int(state["offset"]))
