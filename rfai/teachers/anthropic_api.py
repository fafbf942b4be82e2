"""The `anthropic` teacher: Anthropic's Messages API.

``POST {base_url}/v1/messages`` with headers ``x-api-key`` (from the variable
``teacher.api_key_env`` names, default ANTHROPIC_API_KEY) and ``anthropic-version``; body
``model``, ``max_tokens``, ``temperature``, ``system`` (the system turn, a top-level field in
this API) and ``messages`` (the user turn). The answer's text is the concatenation of its
``content`` blocks of type ``text``. 529 (overloaded) is retried like any 5xx.
"""

from __future__ import annotations

from typing import Any

from rfai.config import TeacherConfig
from rfai.teachers.api import api_teacher, read_api_key
from rfai.teachers.core import GeneratingTeacher, Messages, Reply
from rfai.teachers.http import RequestFailed, get_json, post_json

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"


def messages_body(config: TeacherConfig, messages: Messages) -> dict[str, Any]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    body: dict[str, Any] = {
        "model": config.model,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "messages": [m for m in messages if m["role"] != "system"],
    }
    if system:
        body["system"] = system
    return body


def parse_message(data: Any, url: str) -> Reply:
    """The text, stop reason and token usage of a Messages API answer."""
    blocks = data.get("content") if isinstance(data, dict) else None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        shape = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise RequestFailed(f"malformed answer from {url}: no content block list (got {shape})")
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    usage = data.get("usage") or {}
    return Reply(
        text=text,
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        finish_reason=data.get("stop_reason"),
    )


def build_anthropic_teacher(config: TeacherConfig) -> GeneratingTeacher:
    base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
    key = read_api_key(config, DEFAULT_KEY_ENV, required=True)
    headers = {"x-api-key": key, "anthropic-version": API_VERSION}
    url = f"{base_url}/v1/messages"

    def send_once(messages: Messages) -> Reply:
        data = post_json(url, headers, messages_body(config, messages), config.timeout_seconds)
        return parse_message(data, url)

    def probe() -> None:
        get_json(f"{base_url}/v1/models", headers, config.timeout_seconds)

    return api_teacher("anthropic", send_once, config, key, base_url, probe)
