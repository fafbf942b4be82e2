"""Sample a batch of tasks with the student and score every completion.

Training, validation and evaluation all go through `RolloutScorer.run`: the teacher's code
for each task (scored once per run and cached), one batched generation of G completions per
task, each finished completion handed to the scoring pool at once (scoring overlaps
generation), and each scored sample written as a dataset row the moment it is scored, from
the worker thread. A task that cannot be scored is marked, never given a made-up score.

Scoring never raises into the trainer. A `ScoringError` (no criterion applies to the task)
marks the sample skipped. Any other exception from the teacher's or the student's scoring or
the reward is a scorer bug: it is logged with its traceback (once per distinct reason), the
sample's row is written with status `scorer_error`, null `student_score` and `reward`, and the
reason in `error`, and the sample is counted (`Rollout.scorer_errors`) and skipped like a
`ScoringError`, so its group takes no part in the update. Every row's `error` goes through
`scorers.redact.scrub_error`: it is published, and a program controls what it says.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import mlx.core as mx

from rfai.config import Config
from rfai.dataset_schema import SCORER_ERROR
from rfai.dataset_writer import DatasetWriter
from rfai.extract import ExtractedCode, extract_code
from rfai.rollout import Completion, RolloutStats, generate_groups
from rfai.student import Student
from rfai.tasks import Task
from rfai.teachers import Teacher
from scorers import ProgramScore, ScoringError, ScoringPool, ScoringSuite, compute_reward
from scorers.redact import scrub_error


@dataclass(frozen=True)
class ScoredSample:
    completion: Completion
    student: ProgramScore | None  # None: this sample's task could not be scored
    teacher: ProgramScore | None
    reward: float | None
    skip_reason: str | None = None
    scorer_error: bool = False  # skipped because scoring raised (a bug), not a ScoringError


@dataclass(frozen=True)
class Rollout:
    """One batch of tasks sampled and scored; `scored` is index-ordered, prompt-major."""

    tasks: list[Task]
    prompts: list[list[int]]
    scored: list[ScoredSample]
    skipped: int
    gen_stats: RolloutStats | None
    generation_seconds: float
    scoring_wait_seconds: float
    generation_peak: int
    scoring_busy_seconds: float = 0.0  # summed wall time of this batch's scoring jobs
    scorer_errors: int = 0  # samples skipped because scoring raised (see the module docstring)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RolloutScorer:
    """Holds what sampling and scoring need; `run` does one batch."""

    def __init__(
        self,
        config: Config,
        student: Student,
        teacher: Teacher,
        suite: ScoringSuite,
        writer: DatasetWriter,
        run_id: str,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.student = student
        self.teacher = teacher
        self.suite = suite
        self.writer = writer
        self.run_id = run_id
        self.log = log
        self._teacher_scores: dict[tuple[str, str], Future[ProgramScore]] = {}
        self._reported_bugs: set[str] = set()
        self._bug_lock = threading.Lock()

    def _teacher_future(self, pool: ScoringPool, task: Task, code: str) -> Future[ProgramScore]:
        key = (task.task_id, code)
        future = self._teacher_scores.get(key)
        # A teacher score that raised (a scorer bug) is not kept: the next step tries again.
        if future is None or (future.done() and future.exception() is not None):
            future = pool.submit_teacher(task, code)
            self._teacher_scores[key] = future
        return future

    def _score(
        self,
        split: str,
        step: int,
        task: Task,
        teacher_code: str,
        teacher_future: Future[ProgramScore],
        completion: Completion,
    ) -> ScoredSample:
        """Runs on a pool thread: score one completion and stream its row."""
        extracted = extract_code(completion.text, task.language, task.entry_point)
        teacher: ProgramScore | None = None
        try:
            teacher = teacher_future.result()
            # The teacher's measured cost is the baseline of the efficiency criterion.
            student = self.suite.score(task, extracted.code, baseline=teacher)
            sc = self.config.scoring
            reward = compute_reward(
                student.score,
                teacher.score,
                rule=sc.reward,
                teacher_floor=sc.teacher_floor,
                cap=sc.reward_cap,
            )
        except ScoringError as exc:
            return ScoredSample(completion, None, None, None, str(exc))
        except Exception as exc:  # a scorer bug: recorded, counted and skipped (module doc)
            reason = self._report_scorer_bug(split, step, task, exc)
            row = self._row(split, step, task, teacher_code, completion, extracted, None, teacher)
            self.writer.write(split, row | {"error": reason})
            return ScoredSample(completion, None, teacher, None, reason, scorer_error=True)
        row = self._row(split, step, task, teacher_code, completion, extracted, student, teacher)
        self.writer.write(split, row | {"reward": reward})
        return ScoredSample(completion, student, teacher, reward)

    def _report_scorer_bug(self, split: str, step: int, task: Task, exc: Exception) -> str:
        """The row's reason for a scorer bug; logs its traceback the first time it is seen."""
        reason = scrub_error(f"{SCORER_ERROR}: {type(exc).__name__}: {exc}")
        with self._bug_lock:
            first = reason not in self._reported_bugs
            self._reported_bugs.add(reason)
        if first:
            trace = "".join(traceback.format_exception(exc)).rstrip()
            self.log(
                f"{split} step {step}: scoring raised on task {task.task_id} (a scorer bug; the "
                f"sample is skipped and its row has status {SCORER_ERROR}; later samples with "
                f"the same reason are counted, not logged):\n{trace}"
            )
        return reason

    def _row(
        self,
        split: str,
        step: int,
        task: Task,
        teacher_code: str,
        completion: Completion,
        extracted: ExtractedCode,
        student: ProgramScore | None,
        teacher: ProgramScore | None,
    ) -> dict:
        """The dataset row (schema: rfai/dataset_schema.py); `student` None: scoring raised."""
        row = {
            "prompt": task.prompt,
            "language": task.language,
            "student_code": extracted.code,
            "teacher_code": teacher_code,
            "student_score": student.score if student else None,
            "teacher_score": teacher.score if teacher else None,
            "reward": None,
            "scoring_breakdown": student.weights if student else {},
            "timestamp": _now(),
            "student_breakdown": student.criteria if student else {},
            "teacher_breakdown": teacher.criteria if teacher else {},
            "task_id": task.task_id,
            "step": step,
            "group_index": completion.prompt_index,
            "sample_index": completion.sample_index,
            "completion_tokens": len(completion.tokens),
            "finish_reason": completion.finish_reason,
            "extraction": extracted.method,
            "status": student.status if student else SCORER_ERROR,
            "tests_passed": student.tests_passed if student else 0,
            "tests_total": len(task.tests),
            "teacher_tests_passed": teacher.tests_passed if teacher else 0,
            # Published: scrubbed again here whatever a scorer put in (scorers/redact.py).
            "error": scrub_error(student.error) if student else None,
            "student_model": self.config.student.path,
            "teacher": f"{self.teacher.name}:{self.teacher.model}",
            "run_id": self.run_id,
            "split": split,
        }
        return row

    def run(
        self,
        batch: list[Task],
        step: int,
        pool: ScoringPool,
        *,
        split: str,
        group_size: int,
        temperature: float,
    ) -> Rollout:
        """Teacher answers, one batched generation, every completion scored and written."""
        rollout_cfg = self.config.rollout
        t0 = time.perf_counter()
        answers = self.teacher.solve(batch)
        tasks: list[Task] = []
        teacher_codes: list[str] = []
        skipped = 0
        for task, answer in zip(batch, answers, strict=True):
            if answer.code is None:
                skipped += 1
                self.log(f"{split} step {step}: skipping {task.task_id}: {answer.error}")
                continue
            tasks.append(task)
            teacher_codes.append(answer.code)
        if not tasks:
            return Rollout([], [], [], skipped, None, time.perf_counter() - t0, 0.0, 0)
        teacher_futures = [
            self._teacher_future(pool, t, c) for t, c in zip(tasks, teacher_codes, strict=True)
        ]
        futures: dict[int, Future[ScoredSample]] = {}
        busy: list[float] = []

        def timed(*args) -> ScoredSample:
            start = time.perf_counter()
            try:
                return self._score(*args)
            finally:
                busy.append(time.perf_counter() - start)  # list.append is atomic

        def on_complete(c: Completion) -> None:
            i = c.prompt_index
            futures[c.index] = pool.submit_job(
                timed, split, step, tasks[i], teacher_codes[i], teacher_futures[i], c
            )

        prompts = [self.student.prompt_tokens(t) for t in tasks]
        with self.student.adapter_fused() if rollout_cfg.fuse_adapter else nullcontext():
            completions, gen_stats = generate_groups(
                self.student.model,
                self.student.tokenizer,
                prompts,
                group_size,
                max_new_tokens=rollout_cfg.max_new_tokens,
                temperature=temperature,
                prefill_batch_size=rollout_cfg.prefill_batch_size,
                completion_batch_size=rollout_cfg.completion_batch_size,
                on_complete=on_complete,
            )
        t_gen = time.perf_counter()
        generation_peak = mx.get_peak_memory()
        scored = [futures[c.index].result() for c in completions]
        # Behaviour log-probs exist only after generation ends; attach them by index.
        scored = [replace(s, completion=c) for c, s in zip(completions, scored, strict=True)]
        return Rollout(
            tasks,
            prompts,
            scored,
            skipped,
            gen_stats,
            t_gen - t0,
            time.perf_counter() - t_gen,
            generation_peak,
            sum(busy),
            sum(s.scorer_error for s in scored),
        )
