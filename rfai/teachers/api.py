"""The request loop shared by the HTTP teachers (openai, anthropic): concurrency, retries with
backoff, the budget, and what counts as a failed answer.

Per conversation: reserve a request from the budget (refused: `Failed`), send it; on a
retryable failure (timeout, connection error, 408/409/429/5xx) wait and retry up to
``teacher.max_retries`` times; a Retry-After longer than ``teacher.max_backoff_seconds`` fails
the conversation at once rather than stall training. 401/403/404 mean the key, URL or model is
wrong for every request, so they raise `TeacherError` and stop the run. An answer that is not
the protocol's JSON, or holds no text, is a `Failed` without retry. Every message is redacted
of the key before it is raised, logged or returned.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rfai.config import TeacherConfig
from rfai.teachers.base import TeacherError, TeacherStats
from rfai.teachers.cache import TeacherCache
from rfai.teachers.core import Budget, Failed, GeneratingTeacher, Messages, Reply
from rfai.teachers.http import RequestFailed, RetryPolicy, redact

logger = logging.getLogger("rfai.teachers")

SendOnce = Callable[[Messages], Reply]  # one attempt; raises RequestFailed


class ApiGenerate:
    """`Generate` for an HTTP backend: `send_once` under the loop described above."""

    def __init__(
        self,
        name: str,
        send_once: SendOnce,
        config: TeacherConfig,
        stats: TeacherStats,
        *,
        secret: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._send_once = send_once
        self._secret = secret
        self._sleep = sleep
        self.concurrency = config.concurrency
        self.policy = RetryPolicy(
            config.max_retries, config.backoff_seconds, config.max_backoff_seconds
        )
        self.stats = stats
        self.budget = Budget(config.max_requests, config.max_total_tokens, stats)

    def __repr__(self) -> str:
        return f"ApiGenerate({self.name!r})"

    def __call__(self, conversations: list[Messages]) -> list[Reply | Failed]:
        if not conversations:
            return []
        workers = min(self.concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rfai-teacher") as pool:
            return list(pool.map(self._one, conversations))

    def _one(self, messages: Messages) -> Reply | Failed:
        retry = 0
        while True:
            refused = self.budget.take_request()
            if refused is not None:
                return Failed(refused)
            self.stats.add(requests=1)
            try:
                reply = self._send_once(messages)
            except RequestFailed as exc:
                message = redact(str(exc), [self._secret])
                if exc.fatal:
                    raise TeacherError(
                        f"teacher {self.name}: {message}; check teacher.base_url, "
                        "teacher.model and the key in the variable teacher.api_key_env names"
                    ) from None
                if not exc.retryable or retry >= self.policy.max_retries:
                    tries = retry + 1
                    return Failed(f"teacher {self.name}: {message} (after {tries} attempt(s))")
                wait = self.policy.delay(retry, exc.retry_after)
                if wait > self.policy.max_backoff_seconds:
                    return Failed(
                        f"teacher {self.name}: {message}; the server asked to retry after "
                        f"{wait:g} s, more than teacher.max_backoff_seconds="
                        f"{self.policy.max_backoff_seconds:g}"
                    )
                logger.warning(
                    "teacher %s: %s; retry %d/%d in %.3g s",
                    self.name,
                    message,
                    retry + 1,
                    self.policy.max_retries,
                    wait,
                )
                self.stats.add(retries=1)
                self._sleep(wait)
                retry += 1
                continue
            tokens = reply.prompt_tokens + reply.completion_tokens
            self.budget.add_tokens(tokens)
            self.stats.add(
                prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens
            )
            if not reply.text.strip():
                return Failed(
                    f"teacher {self.name}: empty answer (finish_reason {reply.finish_reason!r})"
                )
            return reply


def read_api_key(config: TeacherConfig, default_env: str, *, required: bool) -> str:
    """The key from the environment variable ``teacher.api_key_env`` names ("" = none)."""
    env = config.api_key_env or default_env
    key = os.environ.get(env, "").strip()
    if required and not key:
        raise TeacherError(
            f"teacher.backend {config.backend}: the environment variable {env} "
            f"(teacher.api_key_env) is not set; export the API key in it"
        )
    return key


def settings(config: TeacherConfig, base_url: str) -> dict[str, object]:
    """The generation settings that change an answer, for the cache key."""
    return {
        "base_url": base_url,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }


def health_check(
    name: str, probe: Callable[[], None], config: TeacherConfig, key: str, sleep=time.sleep
) -> None:
    """One cheap request (the API's model list) before training, retried like any request:
    a URL nothing answers at, or a rejected key, raises `TeacherError` now rather than skip
    every task of every step. Any other HTTP answer (e.g. a server without a model list)
    shows the server is there, which is all this checks."""
    policy = RetryPolicy(config.max_retries, config.backoff_seconds, config.max_backoff_seconds)
    for retry in range(config.max_retries + 1):
        try:
            probe()
            return
        except RequestFailed as exc:
            if exc.status is not None and exc.status not in (401, 403):
                return  # the server answered
            message = redact(str(exc), [key])
            if exc.status in (401, 403) or not exc.retryable or retry == config.max_retries:
                raise TeacherError(
                    f"teacher {name}: start-up check failed: {message} (after {retry + 1} "
                    "attempt(s)); check teacher.base_url, that the server is running, and the "
                    "key in the variable teacher.api_key_env names"
                ) from None
            sleep(policy.delay(retry, exc.retry_after))


def api_teacher(
    backend: str,
    send_once: Callable[[Messages], Reply],
    config: TeacherConfig,
    key: str,
    base_url: str,
    probe: Callable[[], None] | None = None,
) -> GeneratingTeacher:
    """A teacher that asks an HTTP API through ``send_once`` (one request, no retries):
    retries, budgets and concurrency from ``ApiGenerate``, answers cached on disk.
    ``probe``: one request that shows the server is reachable (`health_check`)."""
    cache = TeacherCache(config.cache_dir or None)
    stats = TeacherStats(cache)
    check = (lambda: health_check(backend, probe, config, key)) if probe else None
    return GeneratingTeacher(
        backend,
        config.model,
        ApiGenerate(backend, send_once, config, stats, secret=key),
        cache=cache,
        stats=stats,
        system_prompt=config.system_prompt,
        settings=settings(config, base_url),
        check=check,
    )
