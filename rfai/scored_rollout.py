"""Sample a batch of tasks with the student and score every completion; return data.

Training, validation and evaluation all go through `RolloutRunner.run`: the teacher's code
for each task (scored once per run and cached), one batched generation of G completions per
task, and each finished completion handed to the scoring pool at once (scoring overlaps
generation). The result is a `Rollout`: the completions and their behaviour log-probs, and
a `ScoredSample` per completion, both keyed by completion index. A task that cannot be
scored is marked, never given a made-up score.

Rows are streamed, but not from here: each scored sample's row is built by
`rfai.dataset_schema.make_row` and handed to the caller's `on_row` on the calling (main)
thread, the moment the sample's scoring has finished. The main thread picks finished jobs
up each time generation finishes a completion, and after generation in order of completion,
so rows still reach the file while the batch generates; the caller (the loop) writes them.

Scoring never raises into the trainer. A `ScoringError` (no criterion applies to the task)
marks the sample skipped, with no row. Any other exception from the teacher's or the
student's scoring or the reward is a scorer bug: it is logged with its traceback (once per
distinct reason), the sample's row has status `scorer_error`, null `student_score` and
`reward`, and the reason in `error`, and the sample is counted (`Rollout.scorer_errors`) and
skipped like a `ScoringError`, so its group takes no part in the update. Every row's `error`
goes through `scorers.redact.scrub_error`: it is published, and a program controls what it
says.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field

import mlx.core as mx

from rfai.config import Config, ScoringConfig
from rfai.dataset_schema import SCORER_ERROR, RowContext, make_row
from rfai.extract import ExtractedCode, extract_code
from rfai.rollout import Completion, RolloutStats, generate_groups
from rfai.student import Student
from rfai.teachers import Teacher
from scorers import ProgramScore, ScoringError, ScoringPool, ScoringSuite, compute_reward
from scorers.redact import scrub_error
from scorers.task import Task


@dataclass(frozen=True)
class ScoredSample:
    """The scores of one completion; `Rollout.scored` keys it by the completion's index."""

    extracted: ExtractedCode
    student: ProgramScore | None  # None: this sample's task could not be scored
    teacher: ProgramScore | None
    reward: float | None
    skip_reason: str | None = None
    scorer_error: bool = False  # skipped because scoring raised (a bug), not a ScoringError
    exception: BaseException | None = None  # the scorer bug itself, for the log

    @property
    def has_row(self) -> bool:
        """A scored sample, or a scorer bug; a `ScoringError` sample gets no row."""
        return self.student is not None or self.scorer_error


@dataclass(frozen=True)
class Rollout:
    """One batch of tasks sampled and scored.

    completions: index order, prompt-major (task p, sample s -> p * G + s);
    logprobs: the behaviour log-probs of each completion's tokens, in the same order;
    scored: completion index -> its scores, one per completion.
    """

    tasks: list[Task]
    prompts: list[list[int]]
    completions: list[Completion]
    logprobs: list[tuple[float, ...]]
    scored: dict[int, ScoredSample]
    skipped: int  # tasks the teacher gave no code for
    gen_stats: RolloutStats | None
    generation_seconds: float
    scoring_wait_seconds: float
    generation_peak: int
    scoring_busy_seconds: float = 0.0  # summed wall time of this batch's scoring jobs
    scorer_errors: int = 0  # samples skipped because scoring raised (see the module docstring)
    teacher_codes: list[str] = field(default_factory=list)  # the teacher's code, one per task

    def in_order(self) -> list[ScoredSample]:
        return [self.scored[c.index] for c in self.completions]


def reward_under(scoring: ScoringConfig, student_score: float, teacher_score: float) -> float:
    """The reward the config's ``scoring`` rule gives ``student_score`` against the teacher."""
    return compute_reward(
        student_score,
        teacher_score,
        rule=scoring.reward,
        teacher_floor=scoring.teacher_floor,
        cap=scoring.reward_cap,
    )


def score_completion(
    suite: ScoringSuite,
    scoring: ScoringConfig,
    task: Task,
    teacher_future: Future[ProgramScore],
    completion: Completion,
) -> ScoredSample:
    """Score one completion against the teacher's score; never raises (module docstring)."""
    extracted = extract_code(completion.text, task.language, task.entry_point)
    teacher: ProgramScore | None = None
    try:
        teacher = teacher_future.result()
        # The teacher's measured cost is the baseline of the efficiency criterion.
        student = suite.score(task, extracted.code, baseline=teacher)
        reward = reward_under(scoring, student.score, teacher.score)
    except ScoringError as exc:
        return ScoredSample(extracted, None, None, None, str(exc))
    except Exception as exc:  # a scorer bug: recorded, counted and skipped (module doc)
        reason = scrub_error(f"{SCORER_ERROR}: {type(exc).__name__}: {exc}")
        return ScoredSample(extracted, None, teacher, None, reason, True, exc)
    return ScoredSample(extracted, student, teacher, reward)


def sample_row(
    context: RowContext, task: Task, teacher_code: str, completion: Completion, s: ScoredSample
) -> dict:
    """The dataset row of a sample that has one (`ScoredSample.has_row`)."""
    return make_row(
        context,
        task,
        completion,
        teacher_code=teacher_code,
        extracted=s.extracted,
        student=s.student,
        teacher=s.teacher,
        reward=s.reward,
        scorer_error=s.skip_reason if s.scorer_error else None,
    )


class _BatchJobs:
    """The scoring jobs of one batch: submitted as completions finish, collected by index."""

    def __init__(self, pool, scoring, tasks, teacher_futures) -> None:
        self.pool, self.scoring = pool, scoring
        self.tasks, self.teacher_futures = tasks, teacher_futures
        self.pending: dict[Future[ScoredSample], Completion] = {}
        self.busy: list[float] = []

    def _timed(self, task, teacher_future, completion) -> ScoredSample:
        start = time.perf_counter()
        try:
            return score_completion(self.pool.suite, self.scoring, task, teacher_future, completion)
        finally:
            self.busy.append(time.perf_counter() - start)  # list.append is atomic

    def submit(self, c: Completion) -> None:
        i = c.prompt_index
        future = self.pool.submit_job(self._timed, self.tasks[i], self.teacher_futures[i], c)
        self.pending[future] = c

    def finished(self, wait: bool) -> Iterator[tuple[Completion, ScoredSample]]:
        """Jobs done so far (`wait`: all of them, in order of completion)."""
        done = as_completed(list(self.pending)) if wait else [f for f in self.pending if f.done()]
        for future in done:
            yield self.pending.pop(future), future.result()


class RolloutRunner:
    """Holds what sampling and scoring need; `run` samples and scores one batch."""

    def __init__(
        self,
        config: Config,
        student: Student,
        teacher: Teacher,
        run_id: str,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.student = student
        self.teacher = teacher
        self.run_id = run_id
        self.log = log
        self._teacher_scores: dict[tuple[str, str], Future[ProgramScore]] = {}
        self._reported_bugs: set[str] = set()

    def _teacher_future(self, pool: ScoringPool, task: Task, code: str) -> Future[ProgramScore]:
        key = (task.task_id, code)
        future = self._teacher_scores.get(key)
        # A teacher score that raised (a scorer bug) is not kept: the next step tries again.
        if future is None or (future.done() and future.exception() is not None):
            future = pool.submit_teacher(task, code)
            self._teacher_scores[key] = future
        return future

    def _teacher_code(
        self, batch: list[Task], split: str, step: int
    ) -> tuple[list[Task], list[str], int]:
        """The tasks the teacher answered, its code for each, and how many it did not."""
        tasks, codes = [], []
        for task, answer in zip(batch, self.teacher.solve(batch), strict=True):
            if answer.code is None:
                self.log(f"{split} step {step}: skipping {task.task_id}: {answer.error}")
                continue
            tasks.append(task)
            codes.append(answer.code)
        return tasks, codes, len(batch) - len(tasks)

    def _report_scorer_bug(self, split: str, step: int, task: Task, s: ScoredSample) -> None:
        """Logs a scorer bug's traceback the first time its reason is seen."""
        if s.skip_reason in self._reported_bugs:
            return
        self._reported_bugs.add(s.skip_reason)
        trace = "".join(traceback.format_exception(s.exception)).rstrip()
        self.log(
            f"{split} step {step}: scoring raised on task {task.task_id} (a scorer bug; the "
            f"sample is skipped and its row has status {SCORER_ERROR}; later samples with "
            f"the same reason are counted, not logged):\n{trace}"
        )

    def _generate(self, prompts, group_size, temperature, on_complete):
        cfg = self.config.rollout
        with self.student.adapter_fused() if cfg.fuse_adapter else nullcontext():
            return generate_groups(
                self.student.model,
                self.student.tokenizer,
                prompts,
                group_size,
                max_new_tokens=cfg.max_new_tokens,
                temperature=temperature,
                prefill_batch_size=cfg.prefill_batch_size,
                completion_batch_size=cfg.completion_batch_size,
                on_complete=on_complete,
            )

    def run(
        self,
        batch: list[Task],
        step: int,
        pool: ScoringPool,
        *,
        split: str,
        group_size: int,
        temperature: float,
        on_row: Callable[[dict], None],
        on_progress: Callable[[int, int, int], None] | None = None,
    ) -> Rollout:
        """Teacher answers, one batched generation, every completion scored; each row is
        handed to `on_row` on this thread as soon as its sample is scored. `on_progress`
        (completions generated, scored, total) is called as both counts move."""
        t0 = time.perf_counter()
        tasks, codes, skipped = self._teacher_code(batch, split, step)
        if not tasks:
            return Rollout([], [], [], [], {}, skipped, None, time.perf_counter() - t0, 0.0, 0)
        futures = [self._teacher_future(pool, t, c) for t, c in zip(tasks, codes, strict=True)]
        jobs = _BatchJobs(pool, self.config.scoring, tasks, futures)
        context = RowContext(
            split, step, self.config.student.path, f"{self.teacher.name}:{self.teacher.model}",
            self.run_id,
        )  # fmt: skip
        scored: dict[int, ScoredSample] = {}
        total = len(tasks) * group_size
        generated = 0

        def collect(wait: bool) -> None:
            for c, s in jobs.finished(wait):
                scored[c.index] = s
                task = tasks[c.prompt_index]
                if s.scorer_error:
                    self._report_scorer_bug(split, step, task, s)
                if s.has_row:
                    on_row(sample_row(context, task, codes[c.prompt_index], c, s))
                if on_progress is not None:
                    on_progress(generated, len(scored), total)

        def on_complete(c: Completion) -> None:
            nonlocal generated
            generated += 1
            jobs.submit(c)
            if on_progress is not None:
                on_progress(generated, len(scored), total)
            collect(wait=False)

        prompts = [self.student.prompt_tokens(t) for t in tasks]
        completions, logprobs, gen_stats = self._generate(
            prompts, group_size, temperature, on_complete
        )
        t_gen = time.perf_counter()
        generation_peak = mx.get_peak_memory()
        collect(wait=True)
        return Rollout(
            tasks,
            prompts,
            completions,
            logprobs,
            scored,
            skipped,
            gen_stats,
            t_gen - t0,
            time.perf_counter() - t_gen,
            generation_peak,
            sum(jobs.busy),
            sum(s.scorer_error for s in scored.values()),
            teacher_codes=codes,
        )


def teacher_members(
    rollout: Rollout, student: Student, scoring: ScoringConfig
) -> tuple[list[float | None], list[tuple[int, ...] | None]]:
    """Per task of `rollout`: the teacher member's reward and its answer in the student's
    tokens (`rfai.groups`' guided groups), or None twice where the teacher's code did not pass
    (or its score is unknown). The reward is the teacher scored against itself under the
    reward rule: 1.0 under `ratio` (a teacher at or above the floor), 0 under `difference`,
    the teacher's score under `absolute`."""
    group_size = len(rollout.completions) // len(rollout.tasks) if rollout.tasks else 0
    rewards: list[float | None] = []
    tokens: list[tuple[int, ...] | None] = []
    for g, task in enumerate(rollout.tasks):
        scores = [rollout.scored[g * group_size + s].teacher for s in range(group_size)]
        teacher = next((t for t in scores if t is not None), None)
        if teacher is None or teacher.status != "passed":
            rewards.append(None)
            tokens.append(None)
            continue
        reward = reward_under(scoring, teacher.score, teacher.score)
        rewards.append(reward)
        tokens.append(student.answer_tokens(task, rollout.teacher_codes[g]))
    return rewards, tokens
