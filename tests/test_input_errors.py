"""Bad input gets one line that names the file, line or key and says what to do (issue 11,
items 12-15 and 17). Each test is named after the defect it guards; where the defect was in
a command, the test drives the real command in a subprocess (tests/helpers.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rfai.config import ConfigError
from rfai.config_load import load_config
from rfai.task_sources import load_task_source
from rfai.tasks import TaskFormatError
from tests.helpers import REPO, cli_env, run_cli, tiny_run_args

TRAIN = [sys.executable, str(REPO / "train_rfai.py")]
SCORERS = [sys.executable, "-m", "scorers"]
GOOD_RECORD = {"task_id": "t-ok", "prompt": "Write f.", "language": "python"}


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    """The command failed with exit status 2 and exactly one line on stderr, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _write_bytes(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _record(**fields) -> bytes:
    return json.dumps({**GOOD_RECORD, **fields}).encode()


# -- item 12: tracebacks instead of one-line errors -----------------------------------------


def test_regression_non_utf8_config_is_one_line_naming_line_and_column(tmp_path):
    config = _write_bytes(tmp_path / "latin1.yaml", b"training:", b"  steps: 5", b"# caf\xe9")
    line = _one_line_error(run_cli([*TRAIN, "--config", str(config)]))
    assert f"{config}:3:6: not UTF-8 text (byte 0xe9)" in line
    assert "save the file as UTF-8" in line
    # The scorer CLI reads configs through the same loader.
    args = [*SCORERS, "--config", str(config), "--task-id", "x", "--code", "x.py"]
    line = _one_line_error(run_cli(args))
    assert line.startswith("python -m scorers: error: ") and f"{config}:3:6" in line


def test_regression_set_value_that_is_not_yaml_is_one_line():
    line = _one_line_error(run_cli([*TRAIN, "--set", "training.steps=[4"]))
    assert line.startswith("config error: --set training.steps=[4: the value '[4' is not valid")
    assert "quote a string" in line


def test_regression_non_utf8_byte_in_a_task_file_costs_its_line_only(tmp_path):
    tasks = _write_bytes(
        tmp_path / "tasks.jsonl",
        _record(task_id="a"),
        _record(task_id="b\xff").replace(b"\\u00ff", b"\xff"),  # a raw Latin-1 byte
        _record(task_id="c"),
    )
    load = load_task_source(str(tasks))
    assert [t.task_id for t in load.tasks] == ["a", "c"]
    # column 15: `{"task_id": "b` is 14 characters.
    assert load.problems == (
        f"{tasks}:2: not UTF-8 text (byte 0xff at column 15); task files must be saved as UTF-8",
    )
    # Strict: the same line is fatal, named, through the real scorer CLI.
    args = [*SCORERS, "--tasks", str(tasks), "--task-id", "a", "--code", "x.py", "--strict"]
    line = _one_line_error(run_cli(args))
    assert f"{tasks}:2: not UTF-8 text" in line and "strict mode" in line


def test_regression_lone_surrogate_in_a_task_file_is_refused_naming_line_and_field(tmp_path):
    tasks = _write_bytes(
        tmp_path / "tasks.jsonl",
        _record(task_id="a"),
        b'{"task_id": "b", "prompt": "ab\\ud800", "language": "python"}',
        _record(task_id="c", tests=["assert True", "x = '\\udc80'"]).replace(b"\\\\", b"\\"),
    )
    load = load_task_source(str(tasks))
    assert [t.task_id for t in load.tasks] == ["a"]
    assert load.problems[0].startswith(
        f"{tasks}:2: field 'prompt' holds a lone surrogate \\ud800 at character 3;"
    )
    assert load.problems[1].startswith(
        f"{tasks}:3: field 'tests[1]' holds a lone surrogate \\udc80 at character 6;"
    )
    with pytest.raises(TaskFormatError, match=rf"^{re.escape(str(tasks))}:2: .*lone surrogate"):
        load_task_source(str(tasks), strict=True)


def test_regression_scorer_cli_missing_code_file_is_one_line(tmp_path):
    missing = tmp_path / "missing.py"
    args = [*SCORERS, "--tasks", "builtin:python", "--task-id", "py-run-length-encode"]
    line = _one_line_error(run_cli([*args, "--code", str(missing)]))
    assert line == (
        f"python -m scorers: error: --code {missing}: cannot read it: No such file or directory"
    )


# -- item 13: duplicate YAML keys, YAML error locations, JSON columns -----------------------


def test_regression_duplicate_yaml_key_is_an_error_naming_file_line_and_key(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("training:\n  steps: 50\n  seed: 1\n  steps: 5\n")
    line = _one_line_error(run_cli([*TRAIN, "--config", str(config)]))
    assert line == (
        f"config error: {config}:4: duplicate key 'training.steps' (first at line 2); "
        "keep one of them"
    )
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(None, ["data.fields={a: b, a: c}"])


def test_regression_yaml_syntax_error_names_the_file_not_unicode_string(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  steps: [5\n")
    line = _one_line_error(run_cli([*TRAIN, "--config", str(config)]))
    assert "<unicode string>" not in line
    assert line.startswith(f"config error: {config}:3:1: not valid YAML: expected ',' or ']'")
    assert "(while parsing a flow sequence at line 2, column 10)" in line


@pytest.mark.parametrize(
    ("text", "at"),
    [
        # A trailing comma is the mistake; json reports the `}` or `]` after it instead.
        ('{"task_id": "a", "prompt": "p", "language": "python",}', '"python"'),
        ("[1, 2,]", "2"),
        ('{"task_id": "a" "prompt": "p"}', '"a" '),
        ('{"task_id": "a", "prompt": tru}', 'prompt": '),
        ('{"task_id": "é", "prompt": 1,,}', "1,"),  # columns count characters, not bytes
    ],
)
def test_regression_json_error_column_is_the_real_one(tmp_path, text, at):
    # The character at fault is the one right after the `at` marker; columns count from 1.
    column = text.index(at) + len(at) + 1
    tasks = _write_bytes(tmp_path / "tasks.jsonl", _record(task_id="ok"), text.encode())
    (problem,) = load_task_source(str(tasks)).problems
    assert f":2: invalid JSON at column {column} ({text[column - 1]!r})" in problem, problem


# -- item 14: a relative --model folder that does not exist ---------------------------------


def test_regression_missing_relative_model_folder_says_no_such_folder(tmp_path):
    model = "models/rfai-test-no-such-model"
    assert not (REPO / model).exists()
    result = run_cli(tiny_run_args(Path(model), tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert f"Could not load the student model {model}: there is no such local folder" in line
    assert "as a Hugging Face Hub id it could not be fetched" in line
    assert "Qwen" not in line


# -- item 15: every task record skipped -----------------------------------------------------


def test_regression_no_training_task_left_says_why_with_file_and_line(tmp_path):
    tasks = _write_bytes(
        tmp_path / "tasks.jsonl", _record(task_id="a", language="cobol"), b"{bad json"
    )
    # The task file is read before the model is loaded: no model is needed to get there.
    result = run_cli(
        tiny_run_args(tmp_path / "no-model", tmp_path, "--set", f"data.train_file={tasks}")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "no training task left (0 read, 2 skipped" in line
    assert "; skipped: " in line
    assert f"{tasks}:1: field 'language': unknown language 'cobol'" in line
    assert f"{tasks}:2: invalid JSON at column 2" in line


# -- item 17: the README's commands run as written ------------------------------------------


def test_regression_readme_says_to_activate_the_venv_before_python():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    activate = readme.find("source .venv/bin/activate")
    assert activate != -1
    assert activate < readme.index("python train_rfai.py --config config.yaml --set")


def test_regression_readme_scorer_example_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    (snippet,) = [b for b in blocks if "python -m scorers --tasks" in b]
    # Run in an empty folder, with `python` the test's interpreter (what `.venv` provides).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "passed" and out["scores"]["correctness"] == 1.0
