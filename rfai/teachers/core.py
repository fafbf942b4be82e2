"""What every generating teacher (openai, anthropic, mlx) shares: the cache in front of the
backend, the counters, the per-run budget, and turning answer text into code or tests.

A backend is one function, ``generate(conversations) -> [Reply | Failed]``, one result per
chat conversation in order; `GeneratingTeacher` asks it only for the cache misses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rfai.prompts import solution_messages
from rfai.teachers.base import TeacherAnswer, TeacherError, TeacherStats, WrittenTests
from rfai.teachers.cache import TeacherCache, cache_key
from rfai.teachers.prompts import AnswerError, messages_for_tests, parse_tests, solution_code
from scorers.task import Task

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class Failed:
    """A conversation the backend could not answer; `error` is safe to log (no key)."""

    error: str


Generate = Callable[[list[Messages]], list["Reply | Failed"]]


class Budget:
    """The per-run limit on requests and tokens (0 = no limit). A request is refused once
    either is spent; tokens are known only after an answer, so the last request in flight
    may overshoot the token limit by one answer."""

    def __init__(self, max_requests: int, max_total_tokens: int, stats: TeacherStats) -> None:
        self.max_requests = max_requests
        self.max_total_tokens = max_total_tokens
        self.stats = stats
        self._lock = threading.Lock()
        self._requests = 0
        self._tokens = 0

    def take_request(self) -> str | None:
        """Reserve one request; None if allowed, else why not."""
        with self._lock:
            if self.max_requests and self._requests >= self.max_requests:
                reason = f"teacher.max_requests={self.max_requests} spent"
            elif self.max_total_tokens and self._tokens >= self.max_total_tokens:
                reason = f"teacher.max_total_tokens={self.max_total_tokens} spent"
            else:
                self._requests += 1
                return None
        self.stats.add(budget_refusals=1)
        return f"teacher budget exhausted ({reason}); the task is skipped"

    def add_tokens(self, tokens: int) -> None:
        with self._lock:
            self._tokens += tokens


class GeneratingTeacher:
    """A `Teacher` over a `Generate` backend with a cache in front of it."""

    def __init__(
        self,
        name: str,
        model: str,
        generate: Generate,
        *,
        cache: TeacherCache,
        stats: TeacherStats,
        system_prompt: str,
        settings: dict[str, Any],
        check: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._check = check
        self.model = model
        self.stats = stats
        self._generate = generate
        self._cache = cache
        self._system_prompt = system_prompt
        self._settings = settings  # generation settings that change an answer: in the key

    def __repr__(self) -> str:  # the default repr would show closures holding the key
        return f"GeneratingTeacher(name={self.name!r}, model={self.model!r})"

    def check(self) -> None:
        """Raise `TeacherError` if the backend cannot be reached (API teachers: one cheap
        request); nothing to check for a local model, which loads at its first use."""
        if self._check is not None:
            self._check()

    def solve(self, tasks: Sequence[Task]) -> list[TeacherAnswer]:
        conversations = [solution_messages(t, self._system_prompt) for t in tasks]
        answers = []
        for task, result in zip(tasks, self._texts(conversations, "solution"), strict=True):
            try:
                if isinstance(result, Failed):
                    raise AnswerError(result.error)
                answers.append(TeacherAnswer(task.task_id, solution_code(result, task)))
            except AnswerError as exc:
                self.stats.add(failures=1)
                answers.append(TeacherAnswer(task.task_id, None, error=str(exc)))
        return answers

    def write_tests(self, tasks: Sequence[Task]) -> list[WrittenTests]:
        conversations = [messages_for_tests(t) for t in tasks]
        answers = []
        for task, result in zip(tasks, self._texts(conversations, "tests"), strict=True):
            try:
                if isinstance(result, Failed):
                    raise AnswerError(result.error)
                answers.append(WrittenTests(task.task_id, parse_tests(result, task)))
            except AnswerError as exc:
                self.stats.add(failures=1)
                answers.append(WrittenTests(task.task_id, None, error=str(exc)))
        return answers

    def _texts(self, conversations: list[Messages], kind: str) -> list[str | Failed]:
        """Answer text per conversation: from the cache, else from the backend (and cached)."""
        keys = [
            cache_key(
                backend=self.name,
                model=self.model,
                kind=kind,
                messages=messages,
                settings=self._settings,
            )
            for messages in conversations
        ]
        results: list[str | Failed | None] = []
        for key in keys:
            hit = self._cache.get(key)
            results.append(hit["text"] if hit is not None and "text" in hit else None)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            replies = self._generate([conversations[i] for i in missing])
            if len(replies) != len(missing):
                raise TeacherError(
                    f"teacher {self.name}: backend returned {len(replies)} answers for "
                    f"{len(missing)} prompts"
                )
            for i, reply in zip(missing, replies, strict=True):
                if isinstance(reply, Reply):
                    self._cache.put(
                        keys[i],
                        {
                            "text": reply.text,
                            "finish_reason": reply.finish_reason,
                            "prompt_tokens": reply.prompt_tokens,
                            "completion_tokens": reply.completion_tokens,
                        },
                    )
                    results[i] = reply.text
                else:
                    results[i] = reply
        return [r for r in results if r is not None]
