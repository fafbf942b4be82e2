"""From `data:` config to the final task lists: load, filter, sample, order, check overlap.

`load_task_splits(config.data)` is the one entry point the trainer calls. For each split it
loads the source (`rfai.task_sources`), then:

1. keeps the tasks whose language is in ``data.languages`` (all when null);
2. train only: with ``data.shuffle`` a seeded permutation (seed ``data.seed``), then the first
   ``data.max_samples`` tasks (0 = all), so the subset is a seeded random sample, or the first
   N tasks of the file without shuffling;
3. train only, with ``data.curriculum``: a stable sort by difficulty, easiest first, tasks
   without a difficulty last. The sampler must then keep this order, so
   `TaskSplits.train_shuffle` is False and the trainer passes it to `TaskSampler`; each epoch
   then walks easy to hard again (within a level, in the seeded order of step 2);
4. overlap: tasks of two splits whose normalised prompts (case folded, whitespace collapsed)
   are equal are reported; with ``data.remove_overlap`` they are dropped from train.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rfai.config import DataConfig
from rfai.dataset_writer import SPLITS
from rfai.task_sources import SourceLoad, load_task_source
from rfai.tasks import TaskFormatError, canonical_language
from scorers.task import Task


def normalise_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@dataclass(frozen=True)
class OverlapReport:
    """Tasks shared between splits: (split_a, split_b) -> ((task_id in a, task_id in b), ...)."""

    pairs: dict[tuple[str, str], tuple[tuple[str, str], ...]] = field(default_factory=dict)
    removed_from_train: int = 0

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.pairs.values())

    def lines(self) -> list[str]:
        out = []
        for (a, b), shared in self.pairs.items():
            example = ", ".join(f"{x}={y}" for x, y in shared[:3])
            out.append(f"overlap {a}/{b}: {len(shared)} task(s) share a prompt (e.g. {example})")
        if self.removed_from_train:
            out.append(f"removed {self.removed_from_train} overlapping task(s) from train")
        return out


def find_overlap(splits: dict[str, Sequence[Task]]) -> OverlapReport:
    """Pairs of tasks in different splits whose normalised prompts are equal."""
    names = [n for n in SPLITS if n in splits] + [n for n in splits if n not in SPLITS]
    pairs: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            by_prompt: dict[str, list[str]] = {}
            for task in splits[b]:
                by_prompt.setdefault(normalise_prompt(task.prompt), []).append(task.task_id)
            shared = tuple(
                (task.task_id, other)
                for task in splits[a]
                for other in by_prompt.get(normalise_prompt(task.prompt), ())
            )
            if shared:
                pairs[(a, b)] = shared
    return OverlapReport(pairs)


def select_tasks(
    tasks: Sequence[Task],
    *,
    languages: Sequence[str] | None = None,
    max_samples: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    curriculum: bool = False,
) -> list[Task]:
    """Steps 1 to 3 of the module docstring, on one task list."""
    selected = list(tasks)
    if languages is not None:
        wanted = {canonical_language(name) for name in languages}
        selected = [t for t in selected if t.language in wanted]
    if shuffle:
        random.Random(f"select:{seed}").shuffle(selected)
    if max_samples > 0:
        selected = selected[:max_samples]
    if curriculum:
        # Stable: equal difficulties keep the order above. No difficulty sorts last.
        selected.sort(key=lambda t: (t.difficulty is None, t.difficulty or 0))
    return selected


@dataclass(frozen=True)
class TaskSplits:
    """The final task lists and what loading them found."""

    train: list[Task]
    validation: list[Task]
    evaluation: list[Task]
    train_shuffle: bool  # pass to TaskSampler(shuffle=...): False keeps a curriculum's order
    loads: dict[str, SourceLoad]  # split name -> what its source gave, for configured splits
    overlap: OverlapReport

    @property
    def skipped_records(self) -> int:
        return sum(load.skipped for load in self.loads.values())

    def summary(self) -> list[str]:
        """Lines for the run log: counts per split, every skipped record, the overlap."""
        lines = []
        for name, load in self.loads.items():
            kept = len(getattr(self, name))
            lines.append(
                f"{name}: {load.spec} ({load.format}): {len(load.tasks)} task(s) read, "
                f"{load.skipped} record(s) skipped, {kept} kept after filters"
            )
            lines.extend(f"  skipped {message}" for message in load.problems)
        return lines + self.overlap.lines()


def load_task_splits(data: DataConfig) -> TaskSplits:
    """Load and prepare the train/validation/evaluation tasks of `data`.

    Raises `TaskFormatError` when a source cannot be read, or, with ``data.strict`` (the
    CLI's ``--strict`` sets it), at the first bad record, and when no training task is left
    after the filters.
    """
    specs = {
        "train": data.train_file,
        "validation": data.validation_file,
        "evaluation": data.evaluation_file,
    }
    loads = {
        name: load_task_source(
            spec,
            strict=data.strict,
            fields=data.fields,
            dataset_language=data.dataset_language,
            dataset_subset=data.dataset_subset,
        )
        for name, spec in specs.items()
        if spec is not None
    }
    lists = {
        name: select_tasks(load.tasks, languages=data.languages) for name, load in loads.items()
    }
    train = select_tasks(
        lists["train"],
        max_samples=data.max_samples,
        shuffle=data.shuffle,
        seed=data.seed,
        curriculum=data.curriculum,
    )
    lists["train"] = train
    overlap = find_overlap(lists)
    if data.remove_overlap and overlap.total:
        shared = {
            ids[0] for (a, _), pairs in overlap.pairs.items() if a == "train" for ids in pairs
        }
        train = [t for t in train if t.task_id not in shared]
        overlap = OverlapReport(overlap.pairs, removed_from_train=len(shared))
    if not train:
        load = loads["train"]
        raise TaskFormatError(
            f"data.train_file {load.spec!r}: no training task left ({len(load.tasks)} read, "
            f"{load.skipped} skipped, languages={data.languages}, "
            f"max_samples={data.max_samples}, remove_overlap={data.remove_overlap})"
            + _skip_reasons(load.problems)
        )
    return TaskSplits(
        train=train,
        validation=lists.get("validation", []),
        evaluation=lists.get("evaluation", []),
        train_shuffle=data.shuffle and not data.curriculum,
        loads=loads,
        overlap=overlap,
    )


def _skip_reasons(problems: Sequence[str], shown: int = 3) -> str:
    """The first `shown` skipped records' messages (each names file:line), for an error that
    would otherwise say only how many were skipped."""
    if not problems:
        return ""
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; skipped: " + "; ".join(problems[:shown]) + more
