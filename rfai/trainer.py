"""The training loop, top to bottom, on a `Run` that `rfai.run.build_run` assembled.

One step (see README "How it works"):
1. sample: B tasks from the sampler, G completions each, in one batched generation;
2. score: every completion scored as it finishes (rfai/scored_rollout.py), its row handed
   back to the loop, which writes it the moment it is scored;
3. select groups: groups whose task could not be scored are dropped (counted, never given
   a made-up score; a sample whose scoring raised, a scorer bug, drops its group too and is
   counted as `scorer_errors`), then group-relative advantages (rfai/groups.py), with the
   teacher's answer as `grpo.teacher_guidance` extra members where its code passed;
4. update: the policy update (rfai/update.py);
5. record: the step's metrics;
6. checkpoint: every `checkpoint.every_steps` and after the last step.
Validation and evaluation passes are rfai/evaluation.py; publishing is `publish` below.

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

import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from rfai.card import write_dataset_card
from rfai.checkpoint import TrainingState, rng_state, save_checkpoint, step_seed
from rfai.evaluation import evaluate, log_pass, mean, validation_due
from rfai.groups import GroupSelection, select_groups, training_samples
from rfai.hub import publish_dataset, publish_model
from rfai.interrupt import RunInterrupted, StopSignals, stopped_status
from rfai.plots import plot_run
from rfai.progress import StepProgress
from rfai.resume import mark_finished
from rfai.run import Run, TrainingError
from rfai.scored_rollout import Rollout, teacher_members
from rfai.summary import write_summary
from rfai.update import UpdateStats
from scorers import ScoringPool


def train(run: Run) -> dict[str, Any]:
    """Baseline evaluation, the steps, final evaluation, adapter, publishing; returns the
    last step's metrics."""
    cfg = run.config
    run.logger.info(
        f"rfai run {run.run_id}: student {cfg.student.path}, teacher {run.teacher.name}, "
        f"{len(run.tasks.train)} tasks, {cfg.rollout.batch_size} x {cfg.rollout.group_size} "
        f"samples/step, rows -> {run.writer.path('train')}"
    )
    started = time.monotonic()
    try:
        view = StepProgress(run.logger.console, cfg.training.steps, run.start_step)
        with run.scoring_pool() as pool, StopSignals() as stop, view:
            last = _train_steps(run, pool, stop, view)
            _evaluation_pass(run, pool, "evaluation", cfg.training.steps, view)
        final = run.paths.output_dir / "adapters"
        run.student.save_adapter(final)
        run.writer.close()
        # From here on, --resume says the run is finished instead of evaluating it again.
        mark_finished(run.paths.output_dir, cfg.training.steps)
        run.logger.info(f"adapter saved to {final} (mlx_lm.generate --adapter-path {final})")
        _summarize(run, f"Finished: {cfg.training.steps} steps", started)
        publish(run)
        return last
    except RunInterrupted as exc:
        _summarize(run, exc.status, started)
        raise
    except KeyboardInterrupt:
        _summarize(run, "Aborted by a second Ctrl-C or SIGTERM", started, draw=False)
        raise
    finally:
        run.logger.close()  # the TensorBoard writer


def _summarize(run: Run, status: str, started: float, draw: bool = True) -> None:
    """The charts (unless `draw` is False or `logging.plots` is off) and summary.md."""
    out = run.paths.output_dir
    if draw and run.config.logging.plots and run.paths.metrics.is_file():
        charts = plot_run(out, run.paths.dataset_dir)
        run.logger.info(f"plots: {', '.join(p.name for p in charts)} in {charts[0].parent}")
    path, short = write_summary(out, run.paths.dataset_dir, status, time.monotonic() - started)
    run.logger.info(f"summary: {path}")
    for line in short:
        run.logger.info(f"  {line}")


def _train_steps(
    run: Run, pool: ScoringPool, stop: StopSignals, view: StepProgress
) -> dict[str, Any]:
    """The baseline evaluation and the steps, with validation and checkpoints; stops early on
    a signal (`RunInterrupted`) or after `training.stop_after_idle_steps` idle steps."""
    cfg = run.config
    if cfg.evaluation.baseline_evaluation and run.start_step == 0:
        _evaluation_pass(run, pool, "evaluation", 0, view)
    if stop.received:
        status = stopped_status(stop.received, run.start_step, None)
        raise RunInterrupted(status, run.paths.output_dir, stop.signum)
    last: dict[str, Any] = {}
    repeats_evaluation = run.tasks.validation == run.tasks.evaluation
    idle: list[dict[str, Any]] = []  # the metrics of consecutive steps that trained nothing
    for step in range(run.start_step + 1, cfg.training.steps + 1):
        last = run_step(run, step, pool, view)
        run.logger.log(step, last)
        view.step_done()
        idle = [*idle, last] if last["trained_samples"] == 0 else []
        if 0 < cfg.training.stop_after_idle_steps <= len(idle):
            run.logger.info(f"checkpoint {save_run_checkpoint(run, step)}")
            raise TrainingError(idle_message(step, idle))
        if validation_due(step, cfg, repeats_evaluation):
            _evaluation_pass(run, pool, "validation", step, view)
        saved = None
        if step % cfg.checkpoint.every_steps == 0 or step == cfg.training.steps:
            view.phase(f"step {step}: saving a checkpoint")
            saved = save_run_checkpoint(run, step)
            run.logger.info(f"checkpoint {saved}")
        if stop.received:
            saved = saved or save_run_checkpoint(run, step)
            status = stopped_status(stop.received, step, saved)
            raise RunInterrupted(status, run.paths.output_dir, stop.signum)
    return last


def _evaluation_pass(
    run: Run, pool: ScoringPool, split: str, step: int, view: StepProgress | None = None
) -> None:
    """One validation or evaluation pass, when that split has tasks; logged."""
    tasks = getattr(run.tasks, split)
    if tasks:
        metrics = evaluate(
            run.rollouts, pool, run.config, split=split, tasks=tasks, step=step,
            write=run.writer.write,
            on_progress=view.rollout(f"{split} pass, {len(tasks)} tasks") if view else None,
        )  # fmt: skip
        log_pass(run.logger, split, step, metrics)


def run_step(
    run: Run, step: int, pool: ScoringPool, view: StepProgress | None = None
) -> dict[str, Any]:
    """One training step: sample, score (rows written), select groups, update; metrics.
    `view`: the live terminal view, told what the step is doing."""
    cfg = run.config
    t0 = time.perf_counter()
    teacher_before = run.teacher.stats.snapshot()
    mx.reset_peak_memory()
    mx.random.seed(step_seed(cfg.training.seed, step))
    batch = run.sampler.next_batch(cfg.rollout.batch_size)
    rollout = run.rollouts.run(
        batch,
        step,
        pool,
        split="train",
        group_size=cfg.rollout.group_size,
        temperature=cfg.rollout.temperature,
        on_row=lambda row: run.writer.write("train", row),
        on_progress=view.rollout(f"step {step}") if view else None,
    )
    if not rollout.tasks:
        return {
            "skipped_tasks": rollout.skipped, "scorer_errors": 0, "updated": False,
            "trained_samples": 0,
        }  # fmt: skip
    t_score = time.perf_counter()
    scored = rollout.in_order()
    guided = cfg.grpo.teacher_guidance > 0
    teacher_rewards, teacher_tokens = (
        teacher_members(rollout, run.student, cfg.scoring) if guided else (None, ())
    )
    selection = select_groups(
        [s.reward for s in scored], [s.skip_reason for s in scored], cfg.rollout.group_size,
        cfg.grpo, teacher_rewards,
    )  # fmt: skip
    for reason in selection.skipped.values():
        run.logger.info(f"step {step}: task skipped: {reason}")
    samples = training_samples(
        selection, rollout.completions, rollout.logprobs, rollout.prompts, teacher_tokens,
        cfg.grpo.teacher_guidance,
    )  # fmt: skip
    mx.reset_peak_memory()
    if view is not None:
        view.phase(f"step {step}: updating on {len(samples)} samples")
    update = run.updater.step(samples) if samples else None
    update_peak = mx.get_peak_memory()
    t_update = time.perf_counter()
    timing = {"update_seconds": t_update - t_score, "step_seconds": t_update - t0}
    # This step's teacher requests, tokens, failures, cache hits...: not running totals.
    teacher = {k: v - teacher_before[k] for k, v in run.teacher.stats.snapshot().items()}
    return step_metrics(rollout, selection, update, run, {**timing, **teacher}, update_peak)


def step_metrics(
    rollout: Rollout,
    selection: GroupSelection,
    update: UpdateStats | None,
    run: Run,
    counts: dict[str, float],
    update_peak: int,
) -> dict[str, Any]:
    """What a step's rollout, group selection and update measured (metrics.jsonl); `counts`:
    the step's timings and teacher counters, as they are."""
    valid = [s for s in rollout.in_order() if s.student is not None]
    completions = rollout.completions
    metrics: dict[str, Any] = {
        # True only when the weights moved: an update whose advantages were all 0 leaves them.
        "updated": update is not None and update.update_norm > 0,
        # Samples that carry a learning signal: a non-zero advantage, or any under distillation.
        "trained_samples": signal_samples(selection, run) if update is not None else 0,
        "reward": mean(s.reward for s in valid),
        "reward_std": float(np.std([s.reward for s in valid])) if valid else None,
        "student_score": mean(s.student.score for s in valid),
        "teacher_score": mean(s.teacher.score for s in valid),
        "pass_rate": mean(s.student.status == "passed" for s in valid),
        "completion_tokens": mean(len(c.tokens) for c in completions),
        "truncated_fraction": mean(c.finish_reason == "length" for c in completions),
        "skipped_tasks": rollout.skipped + len(selection.skipped),
        "scorer_errors": rollout.scorer_errors,
        "zero_variance_groups_dropped": selection.zero_variance,
        # Guided groups (rfai/groups.py): teacher members trained on, their mean advantage.
        "teacher_members": len(selection.teacher) * run.config.grpo.teacher_guidance,
        "teacher_advantage": mean(selection.teacher.values()) if selection.teacher else None,
        "generation_seconds": rollout.generation_seconds,
        "scoring_wait_seconds": rollout.scoring_wait_seconds,
        # What scoring alone would take on this pool: its busy time spread over workers.
        "scoring_seconds": rollout.scoring_busy_seconds / run.workers,
        **counts,
        "generation_tps": rollout.gen_stats.tokens_per_second,
        "generated_tokens": rollout.gen_stats.generated_tokens,
        "peak_memory_gb": max(rollout.generation_peak, update_peak) / 1e9,
        "generation_peak_memory_gb": rollout.generation_peak / 1e9,
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
            update_norm=update.update_norm,
            trained_tokens=update.tokens,
            logprob_mismatch=update.logprob_mismatch,
            teacher_token_prob=update.teacher_token_prob,
            distill_kl=update.distill_kl,
        )
    return metrics


def signal_samples(selection: GroupSelection, run: Run) -> int:
    """How many of the step's training samples can move the weights: those with a non-zero
    advantage (teacher members included), or all of them when distilling."""
    grpo = run.config.grpo
    members = [a for a in selection.teacher.values() for _ in range(grpo.teacher_guidance)]
    if grpo.distill_weight > 0:
        return len(selection.advantages) + len(members)
    return sum(a != 0 for a in [*selection.advantages, *members])


def idle_message(step: int, idle: list[dict[str, Any]]) -> str:
    """Why the run stops: `idle` holds the metrics of the consecutive steps up to `step` that
    trained on nothing."""
    skipped = sum(m["skipped_tasks"] for m in idle)
    dropped = sum(m.get("zero_variance_groups_dropped", 0) for m in idle)
    errors = sum(m["scorer_errors"] for m in idle)
    return (
        f"no training in {len(idle)} consecutive steps ({step - len(idle) + 1}-{step}): "
        f"{skipped} task(s) skipped (the teacher gave no code, or scoring failed: the "
        f"reasons are logged above), {dropped} group(s) dropped for equal rewards, "
        f"{errors} scorer error(s), and every other sample had advantage 0 (all samples of "
        "a task earned the same reward, e.g. the student and the teacher all failed: see "
        "teacher_score). Fix the cause and resume with --resume, or set "
        "training.stop_after_idle_steps: 0 to keep such a run going"
    )


def save_run_checkpoint(run: Run, step: int) -> Path:
    """The student, optimizer, sampler position, dataset and metrics offsets after `step`."""
    state = TrainingState(
        step=step,
        run_id=run.run_id,
        sampler=run.sampler.state_dict(),
        dataset_offsets=run.writer.offsets(),
        rng_state=rng_state(),
        extra={},
        metrics_offset=run.logger.offset(),
    )
    return save_checkpoint(
        run.paths.checkpoints,
        run.student,
        run.updater.optimizer,
        state,
        run.config.checkpoint.keep_last,
    )


def publish(run: Run) -> None:
    """Dataset card, then the uploads the config asks for (same code as the commands)."""
    hf, paths, log = run.config.huggingface, run.paths, run.logger.info
    if hf.upload_datasets:
        url = publish_dataset(run.config, paths.output_dir, paths.dataset_dir)
        log(f"dataset uploaded: {url}")
    else:
        card = write_dataset_card(paths.dataset_dir, run_dir=paths.output_dir)
        log(f"dataset card written: {card}")
    if hf.upload_model:
        log(f"model uploaded: {publish_model(run.config, paths.output_dir)}")
