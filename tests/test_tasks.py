"""The task schema and JSONL loader: the built-in set, aliases, and every format error."""

import json

import pytest

from rfai.tasks import TaskFormatError, canonical_language, load_tasks
from scorers.task import SUPPORTED_LANGUAGES, Task

GOOD = {"task_id": "t-1", "prompt": "Write f.", "language": "py", "tests": ["assert f() == 1"]}


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_builtin_python_set_loads_with_unique_ids():
    tasks = load_tasks("builtin:python")
    assert len(tasks) >= 40
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert {t.language for t in tasks} == {"python"}
    for t in tasks:
        assert t.entry_point and f"`{t.entry_point}(" in t.prompt, t.task_id
        assert 4 <= len(t.tests) <= 8, t.task_id
        assert t.reference_solution and t.difficulty in (1, 2, 3), t.task_id
        assert t.source.endswith(tuple(f":{n}" for n in range(1, len(tasks) + 1)))


def test_unknown_builtin_set_names_the_shipped_ones():
    with pytest.raises(TaskFormatError, match="builtin:python"):
        load_tasks("builtin:cobol")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(TaskFormatError, match="does not exist"):
        load_tasks(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("python", "python"),
        ("py", "python"),
        ("Python", "python"),
        ("cpp", "cpp"),
        ("c++", "cpp"),
        ("C++", "cpp"),
        ("cxx", "cpp"),
        ("rust", "rust"),
        ("rs", "rust"),
    ],
)
def test_language_aliases(alias, canonical):
    assert canonical_language(alias) == canonical
    assert canonical in SUPPORTED_LANGUAGES


def test_unknown_language_lists_accepted_spellings():
    with pytest.raises(ValueError, match=r"'cobol'.*c\+\+.*py.*rs"):
        canonical_language("cobol")


def test_loads_fields_defaults_and_skips_blank_lines(tmp_path):
    full = {
        "task_id": "t-2",
        "prompt": "Write g.",
        "language": "C++",
        "entry_point": "g",
        "tests": ["assert(g() == 2);"],
        "reference_solution": "int g() { return 2; }",
        "difficulty": 3,
    }
    path = write_jsonl(tmp_path / "tasks.jsonl", [json.dumps(GOOD), "", "   ", json.dumps(full)])
    first, second = load_tasks(path)
    assert first == Task(
        task_id="t-1",
        prompt="Write f.",
        language="python",
        entry_point=None,
        tests=("assert f() == 1",),
        reference_solution=None,
        difficulty=None,
        source=f"{path}:1",
    )
    assert second.language == "cpp"
    assert second.tests == ("assert(g() == 2);",)
    assert second.difficulty == 3
    assert second.source == f"{path}:4"  # blank lines still count


def test_tests_default_to_empty(tmp_path):
    record = {k: v for k, v in GOOD.items() if k != "tests"}
    (task,) = load_tasks(write_jsonl(tmp_path / "t.jsonl", [json.dumps(record)]))
    assert task.tests == ()


def _error_for(tmp_path, lines):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(TaskFormatError) as info:
        load_tasks(path)
    return path, str(info.value)


def test_bad_json_names_file_and_line(tmp_path):
    path, message = _error_for(tmp_path, [json.dumps(GOOD), '{"task_id": "x",'])
    assert f"{path}:2" in message
    assert "invalid JSON" in message


def test_non_object_line(tmp_path):
    path, message = _error_for(tmp_path, ["[1, 2]"])
    assert f"{path}:1" in message and "JSON object" in message


@pytest.mark.parametrize("field", ["task_id", "prompt", "language"])
def test_missing_required_field(tmp_path, field):
    record = {k: v for k, v in GOOD.items() if k != field}
    path, message = _error_for(tmp_path, [json.dumps(record)])
    assert f"{path}:1" in message
    assert f"missing required field '{field}'" in message


def test_empty_prompt(tmp_path):
    path, message = _error_for(tmp_path, [json.dumps({**GOOD, "prompt": "  "})])
    assert f"{path}:1" in message and "'prompt'" in message


def test_unknown_field_is_named(tmp_path):
    path, message = _error_for(tmp_path, [json.dumps({**GOOD, "test": ["assert 1"]})])
    assert f"{path}:1" in message
    assert "unknown field(s) 'test'" in message
    assert "tests" in message  # the list of allowed fields points at the likely fix


def test_unknown_language(tmp_path):
    path, message = _error_for(tmp_path, [json.dumps({**GOOD, "language": "cobol"})])
    assert f"{path}:1" in message and "'language'" in message and "cobol" in message


def test_duplicate_id_names_both_lines(tmp_path):
    other = {**GOOD, "prompt": "Another."}
    path, message = _error_for(tmp_path, [json.dumps(GOOD), "", json.dumps(other)])
    assert f"{path}:3" in message
    assert f"{path}:1" in message
    assert "duplicate task_id 't-1'" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tests", "assert f() == 1"),
        ("tests", [1]),
        ("difficulty", "easy"),
        ("difficulty", True),
        ("entry_point", 3),
        ("task_id", 7),
    ],
)
def test_wrong_types(tmp_path, field, value):
    path, message = _error_for(tmp_path, [json.dumps({**GOOD, field: value})])
    assert f"{path}:1" in message and f"'{field}'" in message
