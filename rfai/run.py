"""Assembly of a training run from its config: every check, then every part, as data.

`build_run` checks in order from cheap to expensive, so a mistake is reported before the
slow work behind it:
1. paths and config: the upload settings (repo ids, a token; no network call) and the resume
   state (rfai/resume.py: without --resume the output folder must hold no run; with it, the
   config must match the saved one in every key that shapes the samples, a complete
   checkpoint or the run record must be there, and the run must not have finished);
2. the task files (read and filtered, no program run);
3. the student model loads (a typo in --model is reported here, before any sandbox work),
   then the teacher (an API teacher reads its key; a local teacher loads its model at its
   first use) and, with `grpo.distill_weight` > 0, the distillation model (refused here if
   its tokenizer differs from the student's);
4. the compilers and the sandbox the tasks' languages need;
5. tests the teacher writes for tasks without any (`teacher.write_tests`: network);
6. every task's reference solution run against its tests in the sandbox. A task whose
   reference fails is dropped with a warning naming it: the kept tasks are returned as
   `CheckedTasks`, nothing is reassigned behind the caller's back.
Then the sampler, the updater, the dataset writer and, with --resume, the checkpoint's state,
with the dataset files and `metrics.jsonl` cut back to it. Only then, the run accepted, does
the output folder get `config.yaml` and the run record `run.json`: a run that fails to start
leaves no files behind, and a refused resume leaves the run's own untouched.

Nothing here runs a training step: `rfai.trainer` runs the loop on the returned `Run`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx

from rfai.card import public_value
from rfai.checkpoint import discard_after, restore_checkpoint
from rfai.config import Config
from rfai.config_load import config_to_dict, save_config
from rfai.dataset_writer import SPLITS, DatasetWriter
from rfai.hub import check_upload_ready
from rfai.metrics import MetricsLogger
from rfai.resume import (
    SAVED_CONFIG,
    ResumeError,
    ResumePoint,
    RunRecord,
    plan_resume,
    read_record,
    refuse_fresh_start,
    write_record,
)
from rfai.sampler import TaskSampler
from rfai.scored_rollout import RolloutRunner
from rfai.student import Student, load_student, tasks_that_fit
from rfai.task_selection import TaskSplits, load_task_splits
from rfai.teachers import Teacher, add_teacher_tests, build_teacher
from rfai.tensorboard import FOLDER as TENSORBOARD
from rfai.tensorboard import TensorBoardLog
from rfai.update import PolicyUpdater
from rfai.wandb_log import WandbLog, WandbMissing, require_wandb
from scorers import ScoringPool, ScoringSuite, validate_tasks
from scorers.task import Task


class TrainingError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass(frozen=True)
class RunPaths:
    output_dir: Path
    checkpoints: Path
    metrics: Path
    dataset_dir: Path

    @classmethod
    def from_config(cls, config: Config) -> RunPaths:
        out = Path(config.training.output_dir)
        hf = config.huggingface
        # Rows always stream somewhere (resume and upload read them); with
        # save_datasets_locally false they stay inside the run folder only.
        dataset_dir = Path(hf.dataset_output_dir) if hf.save_datasets_locally else out / "datasets"
        return cls(out, out / "checkpoints", out / "metrics.jsonl", dataset_dir)


@dataclass(frozen=True)
class CheckedTasks:
    """The tasks of each split whose reference passed its tests (or that cannot be checked)."""

    train: list[Task]
    validation: list[Task]
    evaluation: list[Task]


@dataclass
class Run:
    """Everything a training run is made of, assembled and checked by `build_run`."""

    config: Config
    paths: RunPaths
    logger: MetricsLogger
    student: Student
    teacher: Teacher
    suite: ScoringSuite
    workers: int  # scoring threads
    tasks: CheckedTasks
    sampler: TaskSampler
    updater: PolicyUpdater
    writer: DatasetWriter
    rollouts: RolloutRunner
    run_id: str
    start_step: int  # optimizer steps already done (from the checkpoint with --resume)

    def scoring_pool(self) -> ScoringPool:
        """A pool of `workers` threads scoring with this run's suite (a context manager)."""
        return ScoringPool(self.suite, self.workers)


def check_paths(config: Config, resume: bool, log) -> tuple[RunPaths, ResumePoint | None]:
    """Step 1: the upload settings and the resume state; creates nothing.

    Returns the paths and where to resume (None for a new run).
    """
    paths = RunPaths.from_config(config)
    # Fail before hours of training, not after: repo ids and a token (no network call),
    # and folders rfai could not write its rows, checkpoints or metrics into.
    check_upload_ready(config)
    dataset_key = (
        "huggingface.dataset_output_dir"
        if config.huggingface.save_datasets_locally
        else "training.output_dir"
    )
    for key, folder in (
        ("training.output_dir", paths.output_dir),
        ("training.output_dir", paths.checkpoints),
        (dataset_key, paths.dataset_dir),
    ):
        check_writable(key, folder)
    try:
        if not resume:
            refuse_fresh_start(paths.output_dir, paths.checkpoints)
            if not config.huggingface.append_datasets:
                refuse_foreign_rows(paths.dataset_dir)
            return paths, None
        return paths, plan_resume(config, paths.output_dir, paths.checkpoints, log)
    except ResumeError as exc:
        raise TrainingError(str(exc)) from None


def check_writable(key: str, folder: Path) -> None:
    """TrainingError naming `key` unless `folder` is, or can be created as, a folder rfai can
    write into: tried with a temporary file in it or in its nearest existing parent, removed
    at once, so nothing is left behind."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    else:
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            problem = f"cannot write in {existing}: {exc.strerror or exc}"
    if problem is not None:
        raise TrainingError(
            f"{key}: {folder} cannot be used: {problem}; choose a writable folder "
            f"(--set {key}=PATH)"
        )


def refuse_foreign_rows(dataset_dir: Path) -> None:
    """A new run's rows go into split files that hold no rows yet, unless
    `huggingface.append_datasets` says to add them after another run's (TrainingError)."""
    held = {}
    for split in SPLITS:
        path = dataset_dir / f"{split}.jsonl"
        if path.is_file() and path.stat().st_size > 0:
            with path.open("rb") as f:
                held[split] = sum(1 for line in f if line.strip())
    if any(held.values()):
        counts = ", ".join(f"{split}.jsonl {n}" for split, n in held.items() if n)
        raise TrainingError(
            f"{dataset_dir} already holds rows of another run ({counts} rows); a new run "
            "does not mix its rows into them. Use a fresh folder (--set "
            "huggingface.dataset_output_dir=PATH), move those files away, or set "
            "huggingface.append_datasets: true to add this run's rows after them"
        )


def check_references(
    splits: TaskSplits, train: list[Task], suite: ScoringSuite, workers: int, log
) -> CheckedTasks:
    """Step 6: every reference against its own tests; returns the tasks kept per split.

    Rewards against a broken reference would be noise, so such a task is dropped with a
    warning naming it. Raises `TrainingError` when no training task is left.
    """
    checked = {}
    for name, tasks in (
        ("train", train),
        ("validation", splits.validation),
        ("evaluation", splits.evaluation),
    ):
        good, problems = validate_tasks(tasks, suite, workers)
        for message in problems:
            log(f"{name}: {message}")
        checked[name] = good
    if not checked["train"]:
        raise TrainingError("no training task is left after checking the references")
    return CheckedTasks(**checked)


def with_teacher_tests(teacher: Teacher, tasks: list[Task], log) -> list[Task]:
    """Step 5: `tasks`, those without tests given the teacher's (when it wrote any)."""
    tasks, written = add_teacher_tests(teacher, tasks)
    for w in written:
        if w.error:
            log(f"teacher wrote no tests for {w.task_id}: {w.error}")
    return tasks


def load_distiller(config: Config, student: Student) -> tuple[Any, tuple[Any, Any] | None]:
    """Step 3's distillation teacher (`grpo.distill_weight` > 0): (its model or None, and the
    loaded (model, tokenizer) pair when it is also the mlx teacher's model, else None)."""
    grpo, teacher = config.grpo, config.teacher
    if grpo.distill_weight == 0:
        return None, None
    from rfai.teachers.mlx_local import load_distill_teacher

    shared = teacher.backend == "mlx" and grpo.distill_model.strip() in ("", teacher.model)
    model_id, key = (
        (teacher.model, "teacher.model") if shared else (grpo.distill_model, "grpo.distill_model")
    )
    loaded = load_distill_teacher(model_id, key, student.tokenizer, config.student.path)
    return loaded[0], loaded if shared else None


def build_run(
    config: Config,
    *,
    resume: bool = False,
    student: Student | None = None,
) -> Run:
    """Check and assemble a run (module docstring). `student`: an already prepared student
    (benchmarks); default: load `config.student`."""
    logger = MetricsLogger(
        RunPaths.from_config(config).metrics, config.logging.every_steps,
        config.logging.rich, config.training.steps,
    )  # fmt: skip
    if config.logging.wandb:
        try:
            require_wandb()
        except WandbMissing as exc:
            raise TrainingError(str(exc)) from None
    paths, point = check_paths(config, resume, logger.info)
    mx.random.seed(config.training.seed)
    splits = load_task_splits(config.data)
    for line in splits.summary():
        logger.info(line)
    student = student or load_student(config.student, seed=config.training.seed)
    student.model.eval()
    distill_model, mlx_loaded = load_distiller(config, student)
    teacher = build_teacher(config.teacher, mlx_loaded)
    teacher.check()  # an API teacher nothing answers at stops the run here
    suite = ScoringSuite.from_config(config.scoring)
    workers = config.scoring.workers or os.cpu_count() or 1
    languages = {t.language for t in [*splits.train, *splits.validation, *splits.evaluation]}
    logger.info(suite.check_environment(languages))
    fit = partial(tasks_that_fit, student, max_new_tokens=config.rollout.max_new_tokens,
                  log=logger.info)  # fmt: skip
    splits = replace(
        splits,
        train=fit(splits.train, split="train"),
        validation=fit(splits.validation, split="validation"),
        evaluation=fit(splits.evaluation, split="evaluation"),
    )
    if not splits.train:
        raise TrainingError("no training task fits the model's context (reasons logged above)")
    train = splits.train
    if config.teacher.write_tests:
        train = with_teacher_tests(teacher, train, logger.info)
    tasks = check_references(splits, train, suite, workers, logger.info)
    # train_shuffle is False under a curriculum: the sampler then keeps easy-to-hard order.
    sampler = TaskSampler(tasks.train, splits.train_shuffle, config.data.seed)
    updater = PolicyUpdater(
        student,
        config.grpo,
        config.training,
        config.rollout.temperature,
        total_updates=config.training.steps * config.grpo.num_iterations,
        max_new_tokens=config.rollout.max_new_tokens,
        distill_teacher=distill_model,
    )
    writer = DatasetWriter(paths.dataset_dir)
    if point is None:
        run_id, start_step = uuid.uuid4().hex[:12], 0
    else:
        resume_at(point, paths, student, updater, sampler, writer, logger)
        run_id, start_step = point.run_id, point.step
    start_run_folder(config, paths, run_id, writer, logger, fresh=point is None)
    rollouts = RolloutRunner(config, student, teacher, run_id, logger.info)
    return Run(
        config, paths, logger, student, teacher, suite, workers, tasks, sampler, updater,
        writer, rollouts, run_id, start_step,
    )  # fmt: skip


def resume_at(
    point: ResumePoint,
    paths: RunPaths,
    student: Student,
    updater: PolicyUpdater,
    sampler: TaskSampler,
    writer: DatasetWriter,
    logger: MetricsLogger,
) -> None:
    """Restore the checkpoint (if any) and cut rows and metric lines back to `point`."""
    try:
        if point.checkpoint is not None:
            restore_checkpoint(point.checkpoint, student, updater.optimizer)
            sampler.load_state_dict(point.checkpoint.state.sampler)
        if point.metrics_offset is not None and logger.offset() < point.metrics_offset:
            # Checked before any dataset file is cut, so a refusal changes nothing.
            raise RuntimeError(f"{logger.path} is shorter than recorded; it was modified since")
        removed = writer.rollback(point.dataset_offsets, point.run_id)
        if point.metrics_offset is None:
            logger.info("checkpoint predates metrics offsets: metrics.jsonl is not rolled back")
        else:
            removed["metrics lines"] = logger.rollback(point.metrics_offset)
    except (ValueError, RuntimeError) as exc:
        # A checkpoint that does not fit the student, or dataset files changed by hand.
        raise TrainingError(f"--resume: {exc}") from None
    discarded = discard_after(paths.checkpoints, point.step)
    if discarded:
        logger.info(f"deleted checkpoints past step {point.step}: {', '.join(discarded)}")
    where = point.checkpoint.path if point.checkpoint is not None else "the run's start"
    logger.info(f"resumed {where} at step {point.step}; rolled back what came after: {removed}")


def start_run_folder(
    config: Config,
    paths: RunPaths,
    run_id: str,
    writer: DatasetWriter,
    logger: MetricsLogger,
    *,
    fresh: bool,
) -> None:
    """The run is accepted: write `config.yaml` and the run record (rfai/resume.py).

    A fresh run records where its rows and metric lines begin, so that --resume before its
    first checkpoint can cut them back exactly; a resumed run keeps its record, marked
    unfinished again (a resume past a finished run's steps).
    """
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, paths.output_dir / SAVED_CONFIG)
    if config.logging.tensorboard:
        # After any --resume rollback: rebuilt from the metric lines that are kept.
        logger.attach(TensorBoardLog(paths.output_dir / TENSORBOARD, paths.metrics))
    if config.logging.wandb:
        public = public_value(config_to_dict(config))
        logger.attach(WandbLog(config.logging.wandb_project, run_id, paths.output_dir, public))
    record = None if fresh else read_record(paths.output_dir)
    if record is None:
        # Resuming a run folder made before run records: its start offsets are unknown.
        offsets = writer.offsets() if fresh else None
        metrics = logger.offset() if fresh else None
        record = RunRecord(run_id, offsets, metrics)
    write_record(paths.output_dir, RunRecord(record.run_id, record.dataset_offsets,
                                             record.metrics_offset, None))  # fmt: skip
