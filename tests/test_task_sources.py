"""Task sources (prompt files, HumanEval, datasets), load-time validation, and the selection
the trainer gets: filters, seeded sampling, curriculum, overlap."""

import dataclasses
import gzip
import json

import pytest

from rfai.config import ConfigError, DataConfig
from rfai.task_selection import find_overlap, load_task_splits, select_tasks
from rfai.task_sources import load_task_source
from rfai.tasks import TaskFormatError, load_tasks
from scorers.correctness import run_python_tests
from scorers.sandbox import SandboxLimits
from scorers.task import Task

HUMANEVAL_RECORD = {
    "task_id": "HumanEval/0",
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "entry_point": "add",
    "canonical_solution": "    return a + b\n",
    "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n"
    "    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
}


def write_lines(path, records):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def task(task_id, prompt, language="python", difficulty=None):
    return Task(task_id, prompt, language, None, (), None, difficulty)


def test_prompt_file_aliases_and_stable_generated_ids(tmp_path):
    spellings = ["python", "py", "cpp", "c++", "C++", "rust", "rs"]
    records = [{"prompt": f"Task {i}.", "language": s} for i, s in enumerate(spellings)]
    load = load_task_source(write_lines(tmp_path / "prompts.jsonl", records))
    assert load.format == "prompts" and load.skipped == 0
    assert [t.language for t in load.tasks] == ["python"] * 2 + ["cpp"] * 3 + ["rust"] * 2
    assert all(t.task_id.startswith("prompts-") and len(t.task_id) == 18 for t in load.tasks)
    # Ids hash (language, prompt), not the line: moving lines keeps every id.
    moved = load_task_source(write_lines(tmp_path / "prompts.jsonl", records[::-1]))
    assert {t.task_id for t in moved.tasks} == {t.task_id for t in load.tasks}
    assert load.tasks[0].source == f"{tmp_path / 'prompts.jsonl'}:1"


def test_rfai_files_load_as_before(tmp_path):
    assert load_task_source("builtin:python").tasks == load_tasks("builtin:python")


def test_bad_records_are_skipped_and_counted_or_fatal_in_strict_mode(tmp_path):
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"prompt": "Fine.", "language": "py"},
            "{not json",
            {"language": "python"},
            {"prompt": "Cobol!", "language": "cobol"},
            {"prompt": "Fine.", "language": "python"},  # the same task as line 1
            {"prompt": "Also fine.", "language": "rs"},
        ],
    )
    load = load_task_source(path)
    assert [t.prompt for t in load.tasks] == ["Fine.", "Also fine."]
    assert load.skipped == 4
    assert [m.split(": ", 1)[0] for m in load.problems] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "invalid JSON" in load.problems[0]
    assert "missing required field 'prompt'" in load.problems[1]
    assert "unknown language 'cobol'" in load.problems[2]
    assert (
        f"duplicate prompt (task_id '{load.tasks[0].task_id}'), first at {path}:1"
        in (load.problems[3])
    )
    with pytest.raises(TaskFormatError, match=rf"{path}:2: invalid JSON.*strict mode"):
        load_task_source(path, strict=True)


def test_missing_source_names_what_is_accepted(tmp_path):
    with pytest.raises(TaskFormatError, match=r"does not exist.*hf:<dataset id>.*humaneval"):
        load_task_source(str(tmp_path / "nope.jsonl"))


def _score(code, tests):
    return run_python_tests(code, tests, SandboxLimits(wall_seconds=10, cpu_seconds=10))


def test_humaneval_jsonl_gz_maps_to_one_check_test(tmp_path):
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({**HUMANEVAL_RECORD, "plus_input": [[1, 1]]}) + "\n")
    load = load_task_source(str(path))
    (t,) = load.tasks
    assert load.format == "humaneval" and t.task_id == "HumanEval/0"
    assert t.language == "python" and t.entry_point == "add"
    assert "```python\ndef add(a, b):" in t.prompt
    assert t.tests == (HUMANEVAL_RECORD["test"].rstrip() + "\n\ncheck(add)\n",)
    # The converted test really runs: the reference passes it, a wrong program fails it.
    assert _score(t.reference_solution, t.tests).tests_passed == 1
    assert _score("def add(a, b):\n    return a - b\n", t.tests).tests_passed == 0


def test_humaneval_package_source():
    load = load_task_source("humaneval")
    assert len(load.tasks) == 164 and load.skipped == 0
    first = load.tasks[0]
    assert first.task_id == "HumanEval/0" and first.entry_point == "has_close_elements"
    assert _score(first.reference_solution, first.tests).tests_passed == 1


def test_humaneval_package_missing_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TaskFormatError, match=r"pip install 'rfai\[humaneval\]'.*not installed"):
        load_task_source("humaneval")


def test_dataset_folder_saved_to_disk_with_field_mapping(tmp_path):
    import datasets

    rows = [
        {"id": 7, "text": "Write `inc(x)`.", "checks": ["assert inc(1) == 2"], "level": 2},
        {"id": 8, "text": "Write `dec(x)`.", "checks": ["assert dec(1) == 0"], "level": 1},
        {"id": 9, "text": "", "checks": [], "level": 1},
    ]
    folder = tmp_path / "ds"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])}
    ).save_to_disk(str(folder))
    fields = {"task_id": "id", "prompt": "text", "tests": "checks", "difficulty": "level"}
    load = load_task_source(str(folder), fields=fields, dataset_language="py")
    assert [(t.task_id, t.language, t.tests, t.difficulty) for t in load.tasks] == [
        ("7", "python", ("assert inc(1) == 2",), 2),
        ("8", "python", ("assert dec(1) == 0",), 1),
    ]
    assert load.problems == (f"{folder}[row 2]: field 'prompt' must not be empty",)
    test_split = load_task_source(f"hf:{folder}@test", fields=fields, dataset_language="py")
    assert [t.task_id for t in test_split.tasks] == ["7"]
    with pytest.raises(TaskFormatError, match="no split 'dev'; the dataset has train, test"):
        load_task_source(f"hf:{folder}@dev", fields=fields)
    with pytest.raises(TaskFormatError, match=r"column.*'question'.*its columns: id, text"):
        load_task_source(str(folder), fields={"prompt": "question"})


def test_dataset_folder_of_jsonl_files_via_load_dataset(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [HUMANEVAL_RECORD])
    load = load_task_source(f"hf:{folder}")
    assert load.format == "dataset"
    assert [t.task_id for t in load.tasks] == ["HumanEval/0"]
    assert load.tasks[0].tests[0].endswith("check(add)\n")


def test_select_filters_samples_and_orders():
    tasks = [task(f"t{i}", f"p{i}", "python" if i % 2 else "rust", 3 - i % 3) for i in range(9)]
    python = select_tasks(tasks, languages=["py"])
    assert [t.task_id for t in python] == ["t1", "t3", "t5", "t7"]
    a = select_tasks(tasks, max_samples=4, shuffle=True, seed=1)
    assert a == select_tasks(tasks, max_samples=4, shuffle=True, seed=1)
    assert a != select_tasks(tasks, max_samples=4, shuffle=True, seed=2)
    assert select_tasks(tasks, max_samples=2) == tasks[:2]
    ordered = select_tasks([*tasks, task("none", "x")], curriculum=True)
    assert [t.difficulty for t in ordered] == [1, 1, 1, 2, 2, 2, 3, 3, 3, None]
    assert [t.task_id for t in ordered[:3]] == ["t2", "t5", "t8"]  # stable within a level


def test_overlap_is_found_by_normalised_prompt():
    report = find_overlap(
        {
            "train": [task("a", "Write  f(x).\n"), task("b", "Other")],
            "validation": [task("v", "write f(x).")],
            "evaluation": [task("e", "OTHER"), task("e2", "write F(X).")],
        }
    )
    assert report.pairs == {
        ("train", "validation"): (("a", "v"),),
        ("train", "evaluation"): (("a", "e2"), ("b", "e")),
        ("validation", "evaluation"): (("v", "e2"),),
    }
    assert report.total == 4
    assert report.lines()[0].startswith("overlap train/validation: 1 task(s)")


def test_load_task_splits_end_to_end(tmp_path):
    train = write_lines(
        tmp_path / "train.jsonl",
        [
            {"prompt": "Hard one.", "language": "py", "difficulty": 3},
            {"prompt": "Easy one.", "language": "py", "difficulty": 1},
            {"prompt": "Rusty.", "language": "rs", "difficulty": 1},
            {"prompt": "Shared task.", "language": "py", "difficulty": 2},
            "garbage",
        ],
    )
    evaluation = write_lines(
        tmp_path / "eval.jsonl", [{"prompt": "shared  TASK.", "language": "py"}]
    )
    data = DataConfig(
        train_file=train,
        evaluation_file=evaluation,
        languages=("python",),
        curriculum=True,
        remove_overlap=True,
    )
    splits = load_task_splits(data)
    assert [t.prompt for t in splits.train] == ["Easy one.", "Hard one."]
    assert splits.train_shuffle is False  # the sampler must keep the curriculum order
    assert len(splits.evaluation) == 1 and splits.validation == []
    assert splits.skipped_records == 1 and splits.overlap.removed_from_train == 1
    summary = "\n".join(splits.summary())
    assert "train: " in summary and "5 record(s)" not in summary
    assert "4 task(s) read, 1 record(s) skipped, 2 kept" in summary
    assert f"skipped {train}:5: invalid JSON" in summary and "overlap train/evaluation" in summary
    with pytest.raises(TaskFormatError, match=f"{train}:5"):
        load_task_splits(dataclasses.replace(data, strict=True))
    with pytest.raises(TaskFormatError, match="no training task left"):
        load_task_splits(DataConfig(train_file=train, languages=("cpp",)))


def test_data_config_checks_languages():
    with pytest.raises(ConfigError, match=r"data.languages: unknown language 'cobol'"):
        DataConfig(languages=("py", "cobol"))
    with pytest.raises(ConfigError, match=r"data.dataset_language"):
        DataConfig(dataset_language="klingon")
