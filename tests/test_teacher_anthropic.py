"""The anthropic teacher against a local server speaking the Messages API's JSON."""

import pytest

from rfai.config import TeacherConfig
from rfai.teachers import TeacherError, build_teacher
from scorers.task import Task
from tests.teacher_server import Action, ScriptedServer, anthropic_reply

KEY = "sk-ant-test-SECRET-77"
TASK = Task("t-1", "Write `add(a, b)`.", "python", "add", (), None)


def make_teacher(server, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    config = TeacherConfig(
        backend="anthropic",
        model="claude-test",
        base_url=server.url,
        backoff_seconds=0.01,
        cache_dir=str(tmp_path / "cache"),
        **overrides,
    )
    return build_teacher(config)


def test_messages_api_request_and_answer(tmp_path, monkeypatch):
    text = "Sure.\n```python\ndef add(a, b):\n    return a + b\n```"
    with ScriptedServer([Action(body=anthropic_reply(text))]) as server:
        teacher = make_teacher(server, tmp_path, monkeypatch, max_tokens=300)
        (answer,) = teacher.solve([TASK])
        (request,) = server.requests
    assert answer.code == "def add(a, b):\n    return a + b"
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = request.body
    assert body["model"] == "claude-test" and body["max_tokens"] == 300
    assert body["system"] == TeacherConfig().system_prompt  # top-level, not a message
    assert [m["role"] for m in body["messages"]] == ["user"]
    snap = teacher.stats.snapshot()
    assert (snap["teacher_prompt_tokens"], snap["teacher_completion_tokens"]) == (13, 5)


def test_text_blocks_are_joined_and_other_blocks_ignored(tmp_path, monkeypatch):
    reply = anthropic_reply("```python\ndef add(a, b):\n")
    reply["content"] += [
        {"type": "thinking", "thinking": "```python\nbad\n```"},
        {"type": "text", "text": "    return a + b\n```"},
    ]
    with ScriptedServer([Action(body=reply)]) as server:
        (answer,) = make_teacher(server, tmp_path, monkeypatch).solve([TASK])
    assert answer.code == "def add(a, b):\n    return a + b"


def test_overloaded_529_is_retried(tmp_path, monkeypatch):
    overloaded = Action(529, {"type": "error", "error": {"type": "overloaded_error"}})
    good = Action(body=anthropic_reply("```python\ndef add(a, b):\n    return a + b\n```"))
    with ScriptedServer([overloaded, good]) as server:
        teacher = make_teacher(server, tmp_path, monkeypatch)
        (answer,) = teacher.solve([TASK])
    assert answer.code is not None and teacher.stats.get("retries") == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "message", "content": "text"}, "no content block list"),
        (anthropic_reply(""), "empty answer"),
    ],
)
def test_malformed_and_empty(tmp_path, monkeypatch, body, fragment):
    with ScriptedServer([Action(body=body)]) as server:
        (answer,) = make_teacher(server, tmp_path, monkeypatch).solve([TASK])
    assert answer.code is None and fragment in answer.error


def test_key_is_required(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(TeacherError, match="ANTHROPIC_API_KEY"):
        build_teacher(TeacherConfig(backend="anthropic", model="claude-test"))
