"""The HTTP teachers' fault handling, against a real scripted server on 127.0.0.1: 429 with
Retry-After, 5xx, slow answers, garbage, empty answers, auth errors, the budget, the
concurrency limit, the cache, and the key never leaving the request headers."""

import logging
import time

import pytest

from rfai.config import TeacherConfig
from rfai.teachers import TeacherError, build_teacher
from rfai.teachers.http import parse_retry_after
from scorers.task import Task
from tests.teacher_server import Action, ScriptedServer, openai_reply

KEY = "sk-test-SECRET-4f9a1c"
CODE = "def add(a, b):\n    return a + b"
GOOD = Action(body=openai_reply(f"Here it is:\n```python\n{CODE}\n```\n"))


def task(i: int = 0) -> Task:
    return Task(f"t-{i}", f"Write `add(a, b)` number {i}.", "python", "add", (), None)


def teacher(server: ScriptedServer, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("RFAI_TEST_KEY", KEY)
    settings = {
        "backend": "openai",
        "model": "test-model",
        "base_url": f"{server.url}/v1",
        "api_key_env": "RFAI_TEST_KEY",
        "max_retries": 3,
        "backoff_seconds": 0.05,
        "max_backoff_seconds": 2.0,
        "timeout_seconds": 5.0,
        "cache_dir": str(tmp_path / "cache"),
        **overrides,
    }
    return build_teacher(TeacherConfig(**settings))


def test_request_shape_answer_and_cache_across_runs(tmp_path, monkeypatch):
    with ScriptedServer([GOOD]) as server:
        first = teacher(server, tmp_path, monkeypatch)
        (answer,) = first.solve([task()])
        assert answer.code == CODE and answer.error is None
        (request,) = server.requests
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "test-model"
        assert [m["role"] for m in request.body["messages"]] == ["system", "user"]
        assert "```python" in request.body["messages"][1]["content"]
        assert request.body["temperature"] == 0.0 and request.body["max_tokens"] == 2048
        assert first.stats.snapshot()["teacher_prompt_tokens"] == 11

        # A second run (a new teacher on the same cache folder) pays nothing.
        second = teacher(server, tmp_path, monkeypatch)
        assert second.solve([task()]) == [answer]
        assert len(server.requests) == 1
        snap = second.stats.snapshot()
        assert (snap["teacher_cache_hits"], snap["teacher_cache_misses"]) == (1, 0)
        assert snap["teacher_requests"] == 0

        # Another generation setting is another key: asked again.
        teacher(server, tmp_path, monkeypatch, temperature=0.5).solve([task()])
        assert len(server.requests) == 2


def test_429_honours_retry_after_then_succeeds(tmp_path, monkeypatch):
    script = [Action(429, {"error": "slow down"}, {"Retry-After": "1"}), GOOD]
    with ScriptedServer(script) as server:
        t = teacher(server, tmp_path, monkeypatch)
        start = time.monotonic()
        (answer,) = t.solve([task()])
        elapsed = time.monotonic() - start
    assert answer.code == CODE
    assert elapsed >= 1.0  # the server's 1 s, not the 0.05 s backoff
    assert t.stats.get("retries") == 1 and t.stats.get("requests") == 2


def test_5xx_backs_off_exponentially_then_gives_up(tmp_path, monkeypatch, caplog):
    with ScriptedServer([Action(503, {"error": "overloaded"})]) as server:
        t = teacher(server, tmp_path, monkeypatch, max_retries=2, backoff_seconds=0.1)
        caplog.set_level(logging.WARNING, logger="rfai.teachers")
        start = time.monotonic()
        (answer,) = t.solve([task()])
        elapsed = time.monotonic() - start
    # 3 attempts, waits 0.1 and 0.2 s (0.1 x 2**k): at least 0.3 s in all.
    assert len(server.requests) == 3 and elapsed >= 0.3
    assert answer.code is None
    assert "HTTP 503" in answer.error and "after 3 attempt(s)" in answer.error
    assert [r.getMessage().rsplit("; ", 1)[1] for r in caplog.records] == [
        "retry 1/2 in 0.1 s",
        "retry 2/2 in 0.2 s",
    ]
    assert t.stats.get("failures") == 1 and t.stats.get("retries") == 2


def test_slow_answer_times_out_and_is_retried(tmp_path, monkeypatch):
    with ScriptedServer([Action(delay=1.5, body=openai_reply("late")), GOOD]) as server:
        t = teacher(server, tmp_path, monkeypatch, timeout_seconds=0.3)
        (answer,) = t.solve([task()])
    assert answer.code == CODE
    assert t.stats.get("retries") == 1


def test_slow_answers_fail_cleanly_after_retries(tmp_path, monkeypatch):
    with ScriptedServer([Action(delay=1.0, body=openai_reply("late"))]) as server:
        t = teacher(server, tmp_path, monkeypatch, timeout_seconds=0.2, max_retries=1)
        (answer,) = t.solve([task()])
    assert answer.code is None and "within 0.2 s" in answer.error


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        (Action(body=b"<html>oops</html>"), "not JSON"),
        (Action(body={"choices": []}), "no choices[0].message.content"),
        (Action(body=openai_reply(None)), "empty answer"),
        (Action(body=openai_reply("   ")), "empty answer"),
        (Action(body=openai_reply("```python\n```")), "holds no code"),
        (Action(400, {"error": "context too long"}), "HTTP 400"),
    ],
)
def test_malformed_or_empty_answers_are_clean_failures_without_retry(
    tmp_path, monkeypatch, action, fragment
):
    with ScriptedServer([action]) as server:
        t = teacher(server, tmp_path, monkeypatch)
        (answer,) = t.solve([task()])
        assert len(server.requests) == 1
    assert answer.code is None and fragment in answer.error
    assert t.stats.get("failures") == 1
    # A failure is not cached: the next call asks again.
    assert t.stats.snapshot()["teacher_cache_hits"] == 0


def test_retry_after_beyond_the_limit_fails_at_once(tmp_path, monkeypatch):
    with ScriptedServer([Action(429, {}, {"Retry-After": "3600"})]) as server:
        t = teacher(server, tmp_path, monkeypatch)
        (answer,) = t.solve([task()])
        assert len(server.requests) == 1
    assert "retry after 3600 s" in answer.error and "max_backoff_seconds=2" in answer.error


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after({"retry-after": date}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_budget_caps_requests_and_counts_refusals(tmp_path, monkeypatch):
    with ScriptedServer([GOOD]) as server:
        t = teacher(server, tmp_path, monkeypatch, max_requests=2, concurrency=1)
        answers = t.solve([task(0), task(1), task(2)])
        assert len(server.requests) == 2
        # Cached answers cost nothing, so the spent budget does not stop them.
        assert t.solve([task(0)])[0].code == CODE
    assert [a.code is None for a in answers] == [False, False, True]
    assert "max_requests=2 spent" in answers[2].error
    assert t.stats.get("budget_refusals") == 1


def test_token_budget(tmp_path, monkeypatch):
    with ScriptedServer([GOOD]) as server:  # every answer uses 11 + 7 = 18 tokens
        t = teacher(server, tmp_path, monkeypatch, max_total_tokens=30, concurrency=1)
        answers = t.solve([task(0), task(1), task(2)])
    # 18 < 30 after one answer, 36 >= 30 after two: the third is refused.
    assert [a.code is None for a in answers] == [False, False, True]
    assert "max_total_tokens=30 spent" in answers[2].error


def test_concurrency_limit(tmp_path, monkeypatch):
    with ScriptedServer([Action(delay=0.3, body=GOOD.body)]) as server:
        t = teacher(server, tmp_path, monkeypatch, concurrency=2)
        answers = t.solve([task(i) for i in range(6)])
    assert all(a.code == CODE for a in answers)
    assert server.max_in_flight == 2


def test_auth_error_stops_the_run_and_never_shows_the_key(tmp_path, monkeypatch, caplog):
    # The server echoes the header it got, as some proxies do in their error pages.
    def echo(request):
        return {"error": f"invalid key {request.headers['authorization']}"}

    with ScriptedServer([Action(401, echo)]) as server:
        t = teacher(server, tmp_path, monkeypatch)
        with pytest.raises(TeacherError) as err:
            t.solve([task()])
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "HTTP 401" in str(err.value) and "invalid key Bearer ***" in str(err.value)
    assert KEY not in str(err.value)


def test_key_never_in_answers_logs_reprs_or_cache(tmp_path, monkeypatch, caplog):
    def echo(request):
        return {"error": f"upstream saw {request.headers['authorization']}"}

    caplog.set_level(logging.DEBUG)
    script = [Action(500, echo), Action(500, echo), Action(body=echo)]
    with ScriptedServer(script) as server:
        t = teacher(server, tmp_path, monkeypatch, max_retries=1)
        failed = t.solve([task(0)])
        answered = t.solve([task(1)])  # 200 with the echo as a (malformed) body
    assert "upstream saw Bearer ***" in failed[0].error
    assert "***" in caplog.text  # the retry warning carried the redacted body
    texts = [caplog.text, repr(t), repr(failed), repr(answered), str(vars(t))]
    texts += [p.read_text() for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert all(KEY not in text for text in texts)


def test_missing_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("RFAI_UNSET_KEY", raising=False)
    config = TeacherConfig(
        backend="openai",
        model="gpt-x",
        base_url="https://api.example.com/v1",
        api_key_env="RFAI_UNSET_KEY",
    )
    with pytest.raises(TeacherError, match=r"RFAI_UNSET_KEY.*is not set"):
        build_teacher(config)


def test_a_key_pasted_into_api_key_env_is_rejected_without_echo():
    from rfai.config import ConfigError

    with pytest.raises(ConfigError) as err:
        TeacherConfig(backend="openai", model="m", api_key_env=KEY)
    assert "teacher.api_key_env" in str(err.value) and KEY not in str(err.value)


def test_resolved_config_saved_with_a_run_holds_only_the_variable_name(tmp_path, monkeypatch):
    # The run's config.yaml (copied into the dataset and card) names the variable, not the key.
    from rfai.config import Config
    from rfai.config_load import load_config, save_config

    monkeypatch.setenv("RFAI_TEST_KEY", KEY)
    config = Config(teacher=TeacherConfig(backend="openai", model="m", api_key_env="RFAI_TEST_KEY"))
    save_config(config, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "api_key_env: RFAI_TEST_KEY" in text and KEY not in text
    assert load_config(tmp_path / "config.yaml") == config


# --- the start-up check (issue 11, item 9) -----------------------------------------------------


def test_startup_check_asks_the_model_list_with_the_key(tmp_path, monkeypatch):
    with ScriptedServer([Action(body={"object": "list", "data": []})]) as server:
        teacher(server, tmp_path, monkeypatch).check()
    (request,) = server.requests
    assert request.path == "/v1/models" and request.body is None
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_startup_check_passes_for_a_server_without_a_model_list(tmp_path, monkeypatch):
    with ScriptedServer([Action(status=404, body={"error": "no such route"})]) as server:
        teacher(server, tmp_path, monkeypatch).check()  # it answered: it is there


def test_startup_check_passes_when_the_server_answers_even_with_a_5xx(tmp_path, monkeypatch):
    # It is there; a server that fails every request later stops the run through
    # training.stop_after_idle_steps (tests/test_idle_stop.py).
    with ScriptedServer([Action(status=503, body={})]) as server:
        teacher(server, tmp_path, monkeypatch).check()
    assert len(server.requests) == 1


def test_startup_check_names_a_rejected_key_without_showing_it(tmp_path, monkeypatch):
    rejected = pytest.raises(TeacherError, match="start-up check failed: HTTP 401")
    with (
        ScriptedServer([Action(status=401, body={"error": f"bad key {KEY}"})]) as server,
        rejected as err,
    ):
        teacher(server, tmp_path, monkeypatch).check()
    assert KEY not in str(err.value)
    assert len(server.requests) == 1  # a wrong key is not retried


def test_regression_a_wrong_teacher_url_stops_the_run_at_start_up(tmp_path, monkeypatch):
    """Nothing listening at teacher.base_url used to skip every task of every step."""
    with ScriptedServer([GOOD]) as server:
        url = server.url
    # The server is gone: its port no longer answers.
    monkeypatch.setenv("RFAI_TEST_KEY", KEY)
    config = TeacherConfig(
        backend="openai", model="m", base_url=f"{url}/v1", api_key_env="RFAI_TEST_KEY",
        max_retries=1, backoff_seconds=0.01,
    )  # fmt: skip
    with pytest.raises(TeacherError, match=r"cannot reach .*/v1/models.*after 2 attempt"):
        build_teacher(config).check()


def test_reference_teacher_check_is_a_no_op():
    build_teacher(TeacherConfig()).check()
