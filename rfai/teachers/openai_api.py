"""The `openai` teacher: any OpenAI-compatible chat-completions endpoint.

OpenAI itself, or a local server that speaks the protocol (``mlx_lm.server``, Ollama, vLLM,
LM Studio): ``POST {base_url}/chat/completions`` with ``model``, ``messages``,
``temperature`` and ``max_tokens`` (the field every such server accepts; OpenAI's reasoning
models want ``max_completion_tokens`` instead and are not supported here). The key, from the
variable ``teacher.api_key_env`` names, goes in ``Authorization: Bearer``; a server on a
loopback address (127.0.0.1, localhost, ::1) may run without one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from rfai.config import TeacherConfig
from rfai.teachers.api import api_teacher, read_api_key
from rfai.teachers.core import GeneratingTeacher, Messages, Reply
from rfai.teachers.http import RequestFailed, get_json, post_json

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_chat_completion(data: Any, url: str) -> Reply:
    """The text, finish reason and token usage of a chat-completions answer."""
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        shape = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise RequestFailed(
            f"malformed answer from {url}: no choices[0].message.content (got {shape})"
        ) from None
    if content is not None and not isinstance(content, str):
        raise RequestFailed(f"malformed answer from {url}: message.content is not text")
    usage = data.get("usage") or {}
    return Reply(
        text=content or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
    )


def build_openai_teacher(config: TeacherConfig) -> GeneratingTeacher:
    base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
    local = urlparse(base_url).hostname in LOOPBACK_HOSTS
    key = read_api_key(config, DEFAULT_KEY_ENV, required=not local)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{base_url}/chat/completions"

    def send_once(messages: Messages) -> Reply:
        body = {
            "model": config.model,
            "messages": messages,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
        }
        return parse_chat_completion(post_json(url, headers, body, config.timeout_seconds), url)

    def probe() -> None:
        get_json(f"{base_url}/models", headers, config.timeout_seconds)

    return api_teacher("openai", send_once, config, key, base_url, probe)
