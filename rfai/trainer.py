"""The training loop: wires tasks, teacher, student, rollout, scoring, update and output.

One step (see README "How it works"):
1-3. B tasks from the sampler, sampled G times each and scored, every sample written as a
   row the moment it is scored (rfai/scored_rollout.py);
4. groups whose task could not be scored are dropped (counted, never given a made-up score;
   a sample whose scoring raised, a scorer bug, drops its group too and is counted as
   `scorer_errors`); group-relative advantages; the policy update;
5. metrics, and a checkpoint every `checkpoint.every_steps`.

Departures from GRPO as published (Shao et al. 2024), each a config choice documented in
config.yaml:
1. The loss defaults to DAPO's token-level normalisation and clip-higher (Yu et al. 2025).
2. The KL reference is the student with its adapter at identity, not a separate frozen copy.
3. Old log-probs are the behaviour log-probs recorded while sampling, not a fresh forward
   pass, so the first iteration's ratio measures the sampler/trainer numerical mismatch
   (logged as `logprob_mismatch`).
4. The reward is relative to a teacher (student_score / teacher_score), not absolute.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from rfai.advantages import group_advantages, zero_variance_groups
from rfai.card import write_dataset_card
from rfai.checkpoint import (
    TrainingState,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    step_seed,
)
from rfai.config import Config, save_config
from rfai.dataset_writer import DatasetWriter
from rfai.hub import check_upload_ready, publish_dataset, publish_model
from rfai.metrics import MetricsLogger
from rfai.sampler import TaskSampler
from rfai.scored_rollout import RolloutScorer, ScoredSample
from rfai.student import Student, load_student
from rfai.task_selection import TaskSplits, load_task_splits
from rfai.tasks import Task
from rfai.teachers import add_teacher_tests, build_teacher
from rfai.update import PolicyUpdater, Sample
from scorers import (
    ScoringPool,
    ScoringSuite,
    validate_tasks,
)


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


class Trainer:
    def __init__(
        self,
        config: Config,
        *,
        resume: bool = False,
        student: Student | None = None,
        strict: bool | None = None,
    ) -> None:
        """`student`: an already prepared student (benchmarks); default: load `config.student`."""
        self.config = config
        self.paths = RunPaths.from_config(config)
        self.paths.output_dir.mkdir(parents=True, exist_ok=True)
        # Fail before hours of training, not after: repo ids and a token (no network call).
        check_upload_ready(config)
        existing = latest_checkpoint(self.paths.checkpoints)
        if resume and existing is None:
            raise TrainingError(
                f"--resume: no checkpoint in {self.paths.checkpoints}; start without --resume"
            )
        if not resume and existing is not None:
            raise TrainingError(
                f"{self.paths.output_dir} already holds checkpoints of a run (latest "
                f"{existing.name}); pass --resume to continue it, or choose another "
                "training.output_dir"
            )
        save_config(config, self.paths.output_dir / "config.yaml")
        self.logger = MetricsLogger(
            self.paths.metrics,
            config.logging.every_steps,
            config.logging.rich,
            config.training.steps,
        )
        mx.random.seed(config.training.seed)
        splits = load_task_splits(config.data, strict=strict)
        for line in splits.summary():
            self.logger.info(line)
        self.teacher = build_teacher(config.teacher)
        self.tasks = splits.train
        if config.teacher.write_tests:
            self.tasks, written = add_teacher_tests(self.teacher, self.tasks)
            for w in written:
                if w.error:
                    self.logger.info(f"teacher wrote no tests for {w.task_id}: {w.error}")
        self.suite = ScoringSuite.from_config(config.scoring)
        self.workers = config.scoring.workers or os.cpu_count() or 1
        self._check_scoring(splits)
        # train_shuffle is False under a curriculum: the sampler then keeps easy-to-hard order.
        self.sampler = TaskSampler(self.tasks, splits.train_shuffle, config.data.seed)
        self.student: Student = student or load_student(config.student, seed=config.training.seed)
        self.student.model.eval()
        self.updater = PolicyUpdater(
            self.student,
            config.grpo,
            config.training,
            config.rollout.temperature,
            total_updates=config.training.steps * config.grpo.num_iterations,
        )
        self.writer = DatasetWriter(self.paths.dataset_dir)
        self.start_step = 0
        self.run_id = uuid.uuid4().hex[:12]
        if existing is not None:
            state = load_checkpoint(existing, self.student, self.updater.optimizer)
            self.start_step = state.step
            self.run_id = state.run_id
            self.sampler.load_state_dict(state.sampler)
            removed = self.writer.rollback(state.dataset_offsets, self.run_id)
            self.logger.info(
                f"resumed {existing} at step {state.step}; rolled back rows written after it: "
                f"{removed}"
            )
        self.rollouts = RolloutScorer(
            config,
            self.student,
            self.teacher,
            self.suite,
            self.writer,
            self.run_id,
            self.logger.info,
        )

    def _check_scoring(self, splits: TaskSplits) -> None:
        """Compilers present, sandbox set up, and every reference passing its own tests.

        A task whose reference fails its tests is dropped with a warning naming it (rewards
        against a broken reference would be noise); a missing compiler stops the run here
        rather than scoring every program 0.
        """
        languages = {t.language for t in [*self.tasks, *splits.validation, *splits.evaluation]}
        self.logger.info(self.suite.check_environment(languages))
        checked = {}
        for name, tasks in (
            ("train", self.tasks),
            ("validation", splits.validation),
            ("evaluation", splits.evaluation),
        ):
            good, problems = validate_tasks(tasks, self.suite, self.workers)
            for message in problems:
                self.logger.info(f"{name}: {message}")
            checked[name] = good
        if not checked["train"]:
            raise TrainingError("no training task is left after checking the references")
        self.tasks = checked["train"]
        self.splits = dataclasses.replace(
            splits, validation=checked["validation"], evaluation=checked["evaluation"]
        )

    # -- one step ---------------------------------------------------------------------------
    def run_step(self, step: int, pool: ScoringPool) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        mx.reset_peak_memory()
        mx.random.seed(step_seed(cfg.training.seed, step))
        batch = self.sampler.next_batch(cfg.rollout.batch_size)
        rollout = self.rollouts.run(
            batch,
            step,
            pool,
            split="train",
            group_size=cfg.rollout.group_size,
            temperature=cfg.rollout.temperature,
        )
        if not rollout.tasks:
            return {"skipped_tasks": rollout.skipped, "scorer_errors": 0, "updated": False}
        tasks, prompts, scored, skipped = (
            rollout.tasks,
            rollout.prompts,
            rollout.scored,
            rollout.skipped,
        )
        completions = [s.completion for s in scored]
        gen_stats, generation_peak = rollout.gen_stats, rollout.generation_peak
        t_score = time.perf_counter()

        samples, group_rewards, dropped_equal = self._select_groups(scored, prompts, step)
        skipped += len(tasks) - len(group_rewards) - dropped_equal
        update = None
        mx.reset_peak_memory()
        if samples:
            update = self.updater.step(samples)
        update_peak = mx.get_peak_memory()
        t_update = time.perf_counter()

        valid = [s for s in scored if s.student is not None]
        metrics: dict[str, Any] = {
            "updated": update is not None,
            "reward": _mean(s.reward for s in valid),
            "reward_std": float(np.std([s.reward for s in valid])) if valid else None,
            "student_score": _mean(s.student.score for s in valid),
            "teacher_score": _mean(s.teacher.score for s in valid),
            "pass_rate": _mean(s.student.status == "passed" for s in valid),
            "completion_tokens": _mean(len(c.tokens) for c in completions),
            "truncated_fraction": _mean(c.finish_reason == "length" for c in completions),
            "skipped_tasks": skipped,
            "scorer_errors": rollout.scorer_errors,
            "zero_variance_groups_dropped": dropped_equal,
            "generation_seconds": rollout.generation_seconds,
            "scoring_wait_seconds": rollout.scoring_wait_seconds,
            # What scoring alone would take on this pool: its busy time spread over workers.
            "scoring_seconds": rollout.scoring_busy_seconds / self.workers,
            "update_seconds": t_update - t_score,
            "step_seconds": t_update - t0,
            "generation_tps": gen_stats.tokens_per_second,
            "generated_tokens": gen_stats.generated_tokens,
            **self.teacher.stats.snapshot(),
            "peak_memory_gb": max(generation_peak, update_peak) / 1e9,
            "generation_peak_memory_gb": generation_peak / 1e9,
            "update_peak_memory_gb": update_peak / 1e9,
        }
        if update is not None:
            metrics.update(
                loss=update.loss,
                kl=update.kl,
                ratio_mean=update.ratio_mean,
                clipped_low=update.clipped_low,
                clipped_high=update.clipped_high,
                grad_norm=update.grad_norm,
                learning_rate=update.learning_rate,
                trained_tokens=update.tokens,
                logprob_mismatch=update.logprob_mismatch,
            )
        return metrics

    def _select_groups(
        self, scored: list[ScoredSample], prompts: list[list[int]], step: int
    ) -> tuple[list[Sample], list[list[float]], int]:
        """Advantages over the groups that can be trained on; returns samples and counts."""
        g = self.config.rollout.group_size
        groups = [scored[i : i + g] for i in range(0, len(scored), g)]
        usable = []
        for group in groups:
            reasons = {s.skip_reason for s in group if s.skip_reason}
            if reasons:
                self.logger.info(f"step {step}: task skipped: {sorted(reasons)[0]}")
                continue
            usable.append(group)
        if not usable:
            return [], [], 0
        rewards = mx.array([[s.reward for s in group] for group in usable], mx.float32)
        dropped = 0
        if self.config.grpo.drop_zero_variance_groups:
            equal = zero_variance_groups(rewards.reshape(-1), g).tolist()
            dropped = sum(equal)
            usable = [grp for grp, eq in zip(usable, equal, strict=True) if not eq]
            if not usable:
                return [], [], dropped
            rewards = mx.array([[s.reward for s in group] for group in usable], mx.float32)
        advantages = group_advantages(
            rewards.reshape(-1), g, self.config.grpo.scale_rewards, self.config.grpo.advantage_eps
        ).tolist()
        samples = []
        flat = [s for group in usable for s in group]
        for s, adv in zip(flat, advantages, strict=True):
            c = s.completion
            samples.append(
                Sample(
                    prompt=prompts[c.prompt_index],
                    completion=c.tokens,
                    behaviour_logprobs=c.logprobs,
                    advantage=adv,
                    truncated=c.finish_reason == "length",
                )
            )
        return samples, [[s.reward for s in grp] for grp in usable], dropped

    # -- the run ----------------------------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        state = TrainingState(
            step=step,
            run_id=self.run_id,
            sampler=self.sampler.state_dict(),
            dataset_offsets=self.writer.offsets(),
            rng_state=rng_state(),
            extra={},
        )
        return save_checkpoint(
            self.paths.checkpoints,
            self.student,
            self.updater.optimizer,
            state,
            self.config.checkpoint.keep_last,
        )

    def evaluate(self, split: str, tasks: list[Task], step: int, pool: ScoringPool) -> dict:
        """Sample and score `tasks` without updating; rows go to `{split}.jsonl`.

        `step` is the number of optimizer steps completed (0 before training). The random
        stream is seeded from a range of its own, so an evaluation never shifts training's.
        """
        ev, cfg = self.config.evaluation, self.config
        scored: list[ScoredSample] = []
        scorer_errors = 0
        size = cfg.rollout.batch_size
        for i in range(0, len(tasks), size):
            mx.random.seed(step_seed(cfg.training.seed, 10**7 + step * 1000 + i // size))
            rollout = self.rollouts.run(
                tasks[i : i + size],
                step,
                pool,
                split=split,
                group_size=ev.samples_per_task,
                temperature=ev.temperature,
            )
            scored.extend(s for s in rollout.scored if s.student is not None)
            scorer_errors += rollout.scorer_errors
        return {
            f"{split}_reward": _mean(s.reward for s in scored),
            f"{split}_student_score": _mean(s.student.score for s in scored),
            f"{split}_teacher_score": _mean(s.teacher.score for s in scored),
            f"{split}_pass_rate": _mean(s.student.status == "passed" for s in scored),
            f"{split}_samples": len(scored),
            f"{split}_scorer_errors": scorer_errors,
        }

    def _log_evaluation(self, split: str, step: int, metrics: dict) -> None:
        self.logger.log_event(step, split, metrics)
        shown = "  ".join(
            f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and v is not None
        )
        self.logger.info(f"step {step}: {shown}")

    def train(self) -> dict[str, Any]:
        cfg = self.config
        last: dict[str, Any] = {}
        self.logger.info(
            f"rfai run {self.run_id}: student {cfg.student.path}, teacher {self.teacher.name}, "
            f"{len(self.tasks)} tasks, {cfg.rollout.batch_size} x {cfg.rollout.group_size} "
            f"samples/step, rows -> {self.writer.path('train')}"
        )
        validation, evaluation = self.splits.validation, self.splits.evaluation
        with ScoringPool(self.suite, self.workers) as pool:
            if evaluation and cfg.evaluation.baseline_evaluation and self.start_step == 0:
                self._log_evaluation(
                    "evaluation", 0, self.evaluate("evaluation", evaluation, 0, pool)
                )
            for step in range(self.start_step + 1, cfg.training.steps + 1):
                last = self.run_step(step, pool)
                self.logger.log(step, last)
                if validation and (
                    step % cfg.evaluation.eval_steps == 0 or step == cfg.training.steps
                ):
                    self._log_evaluation(
                        "validation", step, self.evaluate("validation", validation, step, pool)
                    )
                if step % cfg.checkpoint.every_steps == 0 or step == cfg.training.steps:
                    path = self.checkpoint(step)
                    self.logger.info(f"checkpoint {path}")
            if evaluation:
                steps = cfg.training.steps
                self._log_evaluation(
                    "evaluation", steps, self.evaluate("evaluation", evaluation, steps, pool)
                )
        final = self.paths.output_dir / "adapters"
        self.student.save_adapter(final)
        self.writer.close()
        self.logger.info(f"adapter saved to {final} (mlx_lm.generate --adapter-path {final})")
        self._publish()
        return last

    def _publish(self) -> None:
        """Dataset card, then the uploads the config asks for (same code as the commands)."""
        hf = self.config.huggingface
        if hf.upload_datasets:
            url = publish_dataset(self.config, self.paths.output_dir, self.paths.dataset_dir)
            self.logger.info(f"dataset uploaded: {url}")
        else:
            card = write_dataset_card(self.paths.dataset_dir, run_dir=self.paths.output_dir)
            self.logger.info(f"dataset card written: {card}")
        if hf.upload_model:
            url = publish_model(self.config, self.paths.output_dir)
            self.logger.info(f"model uploaded: {url}")


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else None
