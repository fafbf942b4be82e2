"""The openai teacher against a real `mlx_lm.server` serving the tiny model, and the mlx
teacher on the tiny model. Random weights answer with noise, so these check the protocol
path: an answer per task (code, or a clean "no code" failure), counted, then cached."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from rfai.config import TeacherConfig
from rfai.teachers import build_teacher
from scorers.task import Task

TASKS = [
    Task("t-add", "Write `add(a, b)` returning a + b.", "python", "add", (), None),
    Task("t-neg", "Write `neg(x)` returning -x.", "python", "neg", (), None),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlx_server(tiny_model_dir, tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("mlx_server") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: a full pipe would stall the server
    argv = [sys.executable, "-m", "mlx_lm.server", "--model", str(tiny_model_dir)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlx_lm.server exited: {log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mlx_lm.server did not become ready in 90 s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _check_answers(answers):
    assert [a.task_id for a in answers] == ["t-add", "t-neg"]
    for answer in answers:
        if answer.code is None:
            assert "holds no code" in answer.error
        else:
            assert answer.code.strip() and answer.error is None


def test_openai_backend_against_mlx_lm_server(mlx_server, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a loopback server needs no key
    config = TeacherConfig(
        backend="openai",
        model=str(tiny_model_dir),
        base_url=f"{mlx_server}/v1",
        max_tokens=24,
        timeout_seconds=60,
        cache_dir=str(tmp_path / "cache"),
    )
    teacher = build_teacher(config)
    teacher.check()  # the start-up check against the real server's GET /v1/models
    answers = teacher.solve(TASKS)
    _check_answers(answers)
    snap = teacher.stats.snapshot()
    assert snap["teacher_requests"] == 2 and snap["teacher_cache_misses"] == 2
    assert 0 < snap["teacher_completion_tokens"] <= 2 * 24  # the server reported usage

    assert teacher.solve(TASKS) == answers
    snap = teacher.stats.snapshot()
    assert snap["teacher_requests"] == 2 and snap["teacher_cache_hits"] == 2


def test_mlx_backend_on_the_tiny_model(tiny_model_dir, tmp_path):
    config = TeacherConfig(
        backend="mlx",
        model=str(tiny_model_dir),
        max_tokens=12,
        batch_size=1,  # two batches of one: the chunking path
        cache_dir=str(tmp_path / "cache"),
    )
    teacher = build_teacher(config)
    answers = teacher.solve(TASKS)
    _check_answers(answers)
    snap = teacher.stats.snapshot()
    assert snap["teacher_requests"] == 2
    assert 0 < snap["teacher_completion_tokens"] <= 2 * 12

    # Greedy decoding is deterministic, and a new run on the same cache never loads the model.
    again = build_teacher(config)
    assert again.solve(TASKS) == answers
    assert again._generate._loaded is None
    assert again.stats.snapshot()["teacher_cache_hits"] == 2
