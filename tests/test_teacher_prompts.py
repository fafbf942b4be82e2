"""What generating teachers are asked, how tests are parsed, and the disk cache."""

import json
import multiprocessing

import pytest

from rfai.prompts import solution_messages
from rfai.teachers import WrittenTests, add_teacher_tests
from rfai.teachers.cache import TeacherCache, cache_key
from rfai.teachers.prompts import AnswerError, messages_for_tests, parse_tests, solution_code
from rfai.teachers.reference import ReferenceTeacher
from scorers.task import Task

PY = Task("p", "Write `rle(s)`.", "python", "rle", (), None)


def test_solution_prompt_asks_for_one_block_in_the_language():
    rust = Task("r", "Write `add`.", "rust", "add", (), None)
    system, user = solution_messages(rust, "Be good.")
    assert system == {"role": "system", "content": "Be good."}
    assert user["content"].startswith("Write `add`.")
    assert "in Rust in a single ```rust code block" in user["content"]
    assert [m["role"] for m in solution_messages(rust, "")] == ["user"]
    assert "`rle`" in messages_for_tests(PY)[1]["content"]


def test_solution_code_uses_the_student_extraction_rule():
    text = "```python\nprint(rle('a'))\n```\n```python\ndef rle(s):\n    return s\n```"
    assert solution_code(text, PY) == "def rle(s):\n    return s"
    with pytest.raises(AnswerError, match="holds no code"):
        solution_code("```python\n\n```", PY)


def test_python_tests_are_top_level_asserts_with_imports_in_front():
    answer = (
        "```python\nimport math\n"
        "def rle(s):\n    return 'cheat'\n"
        "assert rle('aab') == 'a2b1'\n"
        "assert rle('') == ''\n"
        "print('done')\n```"
    )
    assert parse_tests(answer, PY) == (
        "import math\nassert rle('aab') == 'a2b1'",
        "import math\nassert rle('') == ''",
    )


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ("```python\nprint(1)\n```", "no `assert` statements"),
        ("```python\nassert (\n```", "not valid"),
    ],
)
def test_python_tests_errors(answer, fragment):
    with pytest.raises(AnswerError, match=fragment):
        parse_tests(answer, PY)


def test_cpp_and_rust_tests_are_assert_statements():
    cpp = Task("c", "Write `add`.", "cpp", "add", (), None)
    text = "```cpp\nassert(add(1, 2) == 3);\nint x = 0;\nassert(add(0,\n  0) == 0);\n```"
    assert parse_tests(text, cpp) == ("assert(add(1, 2) == 3);", "assert(add(0,\n  0) == 0);")
    rust = Task("r", "Write `add`.", "rust", "add", (), None)
    text = "```rust\nassert_eq!(add(1, 2), 3);\nassert!(add(0, 0) == 0);\n```"
    assert parse_tests(text, rust) == ("assert_eq!(add(1, 2), 3);", "assert!(add(0, 0) == 0);")


def test_add_teacher_tests_fills_only_tasks_without_tests():
    class Writer:
        def write_tests(self, tasks):
            return [WrittenTests(t.task_id, ("assert True",)) for t in tasks]

    has = Task("h", "x", "python", None, ("assert 1",), None)
    tasks, answers = add_teacher_tests(Writer(), [PY, has])
    assert [t.tests for t in tasks] == [("assert True",), ("assert 1",)]
    assert [a.task_id for a in answers] == ["p"]
    # The reference teacher cannot write tests: tasks stay as they were, failures counted.
    reference = ReferenceTeacher()
    tasks, answers = add_teacher_tests(reference, [PY])
    assert tasks == [PY] and answers[0].tests is None
    assert reference.stats.snapshot()["teacher_failures"] == 1


def test_cache_key_is_canonical_and_sensitive():
    base = {"backend": "openai", "model": "m", "kind": "solution", "messages": [{"a": 1}]}
    assert cache_key(**base) == cache_key(**dict(reversed(base.items())))
    assert cache_key(**base) != cache_key(**{**base, "model": "n"})


def test_cache_hits_misses_and_corrupt_files(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache_key(x=1)
    assert cache.get(key) is None
    cache.put(key, {"text": "hello"})
    assert TeacherCache(tmp_path).get(key) == {"text": "hello"}  # from disk, another object
    path = tmp_path / key[:2] / f"{key}.json"
    assert json.loads(path.read_text()) == {"text": "hello"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    path.write_text("{trunc")
    fresh = TeacherCache(tmp_path)
    assert fresh.get(key) is None
    assert fresh.stats.corrupt == 1 and fresh.stats.misses == 1
    assert cache.stats.hits == 0 and cache.stats.misses == 1 and cache.stats.writes == 1


def _hammer(directory: str, worker: int, rounds: int) -> int:
    cache = TeacherCache(directory)
    bad = 0
    for i in range(rounds):
        shared = cache_key(shared=i % 5)
        cache.put(shared, {"text": "x" * 5000, "by": worker})
        value = TeacherCache(directory).get(shared)  # read back from disk, not memory
        bad += value is None or value["text"] != "x" * 5000
    return bad


def test_two_processes_share_the_cache_without_torn_files(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        bad = pool.starmap(_hammer, [(str(tmp_path), w, 200) for w in range(2)])
    assert bad == [0, 0]
    assert len(list(tmp_path.rglob("*.json"))) == 5
