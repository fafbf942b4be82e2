"""Coding tasks: the schema, language aliases and the JSONL loader.

The `Task` type itself (and `SUPPORTED_LANGUAGES`) lives in ``scorers/task.py``, so that
``scorers`` needs nothing of ``rfai``; this module reads files into it.

A task file is JSONL: one JSON object per line; blank lines are skipped. Fields:

    task_id             str, required, unique within the file ("py-run-length-encode")
    prompt              str, required, non-empty: the natural-language statement, including the
                        signature of the function the tests call
    language            str, required: "python" ("py", "Python"), "cpp" ("c++", "C++", "cxx")
                        or "rust" ("rs"); stored in its canonical spelling
    entry_point         str, optional: the name of the function the tests call
    tests               list of str, optional (default []): self-contained test snippets
    reference_solution  str, optional: a known-good program
    difficulty          int, optional: 1 (easy) to 3 (harder), informational

Any other field is an error, so a misspelt ``test`` is not silently dropped. Every error is a
``TaskFormatError`` naming ``file:line`` and the field.

Test snippets, per language:

* Python: statements, usually one or more ``assert`` lines, executed after the solution's
  definitions in a copy of the solution's namespace, e.g. ``assert rle("aab") == "a2b1"``.
  Each snippet passes when it runs without raising.
* C++ and Rust: each snippet is the body of one test function, placed after the solution in
  the same translation unit/crate, e.g. ``assert(rle("aab") == "a2b1");`` for C++ (each test
  runs in its own forked child, see scorers/harness.py), or ``assert_eq!(rle("aab"), "a2b1");``
  inside a ``#[test] fn`` for Rust (built with ``rustc --test``).

``load_tasks("builtin:python")`` (also ``builtin:cpp``, ``builtin:rust``) loads a set shipped in
``rfai/builtin_tasks/``.
`load_tasks` reads rfai's schema only and stops at the first error. Other formats (plain
prompt files, HumanEval, Hugging Face datasets), skip-and-count validation and ``--strict`` are
in ``rfai/task_sources.py``; filters, curriculum and overlap in ``rfai/task_selection.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from scorers.task import Task

_LANGUAGE_ALIASES = {
    "python": "python",
    "py": "python",
    "python3": "python",
    "cpp": "cpp",
    "c++": "cpp",
    "cxx": "cpp",
    "rust": "rust",
    "rs": "rust",
}

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin_tasks"
BUILTIN_PREFIX = "builtin:"


def canonical_language(name: str) -> str:
    """Map a language spelling (case-insensitive alias) to one of
    `scorers.task.SUPPORTED_LANGUAGES`."""
    if not isinstance(name, str):
        raise ValueError(f"language must be a string, got {type(name).__name__}: {name!r}")
    canonical = _LANGUAGE_ALIASES.get(name.strip().lower())
    if canonical is None:
        accepted = ", ".join(sorted(_LANGUAGE_ALIASES))
        raise ValueError(
            f"unknown language {name!r}; accepted spellings (case-insensitive): {accepted}"
        )
    return canonical


class TaskFormatError(ValueError):
    """A task file is malformed; the message names file, line, field and the fix."""


_REQUIRED = ("task_id", "prompt", "language")
_OPTIONAL = ("entry_point", "tests", "reference_solution", "difficulty")


def builtin_path(spec: str) -> Path:
    """The file of a ``builtin:<name>`` task set, or a TaskFormatError listing the shipped ones."""
    path = BUILTIN_DIR / f"{spec[len(BUILTIN_PREFIX) :]}.jsonl"
    if not path.is_file():
        shipped = sorted(p.stem for p in BUILTIN_DIR.glob("*.jsonl"))
        raise TaskFormatError(
            f"no built-in task set {spec!r}; shipped sets: "
            + ", ".join(f"{BUILTIN_PREFIX}{s}" for s in shipped)
        )
    return path


def load_tasks(spec: str) -> list[Task]:
    """Load tasks from a JSONL path or ``builtin:<language>`` (e.g. ``builtin:python``)."""
    if spec.startswith(BUILTIN_PREFIX):
        path = builtin_path(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise TaskFormatError(
                f"task file {spec!r} does not exist; pass a JSONL path or builtin:python"
            )
    return _load_jsonl(path)


def _load_jsonl(path: Path) -> list[Task]:
    tasks: list[Task] = []
    first_line_of: dict[str, int] = {}
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            task = _parse_task(line, where)
            if task.task_id in first_line_of:
                raise TaskFormatError(
                    f"{where}: duplicate task_id {task.task_id!r}, first defined at "
                    f"{path}:{first_line_of[task.task_id]}; task ids must be unique in a file"
                )
            first_line_of[task.task_id] = lineno
            tasks.append(task)
    return tasks


def parse_json_line(line: str | bytes, where: str) -> dict:
    """One JSONL line as a JSON object, or a `TaskFormatError` naming `where`.

    `line` as bytes is decoded here, so that a byte that is not UTF-8 costs its own line and
    not the whole file. Columns in messages count characters from 1, as editors do.
    """
    if isinstance(line, bytes):
        line = decode_line(line, where)
    line = line.removeprefix("\ufeff")  # a byte-order mark some editors write first
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TaskFormatError(f"{where}: {_json_problem(line, exc)}") from exc
    if not isinstance(record, dict):
        raise TaskFormatError(
            f"{where}: expected a JSON object, got {type(record).__name__}; "
            "each non-blank line must be one JSON object"
        )
    _check_unicode(record, where)
    return record


def decode_line(raw: bytes, where: str) -> str:
    """`raw` as UTF-8, or a `TaskFormatError` naming the first bad byte and its column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8")) + 1
        raise TaskFormatError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
            "task files must be saved as UTF-8"
        ) from None


def _json_problem(line: str, exc: json.JSONDecodeError) -> str:
    """`exc` in words, at the column of the character at fault, with that character quoted.

    `json` reports where it gave up; for a trailing comma that is the bracket after it, so
    the comma itself is named instead."""
    position = exc.pos
    problem = exc.msg
    before = line[:position].rstrip()
    if line[position : position + 1] in ("}", "]") and before.endswith(","):
        position = len(before) - 1
        problem = f"trailing comma before {line[exc.pos]!r}"
    found = line[position : position + 1]
    at = "the end of the line" if found in ("", "\n", "\r") else repr(found)
    problem = problem.removesuffix(" at")  # "Invalid control character at"
    return (
        f"invalid JSON at column {position + 1} ({at}): {problem}; "
        "each non-blank line must be one JSON object"
    )


def _check_unicode(value: object, where: str, field: str = "") -> None:
    """Refuse lone surrogates (``"\\ud800"`` with no pair): valid JSON, but not text, so
    every later step that encodes it (tokenizer, sandbox, dataset rows) would fail."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            what = f"field {field!r}" if field else "a field name"
            raise TaskFormatError(
                f"{where}: {what} holds a lone surrogate "
                f"\\u{ord(value[exc.start]):04x} at character {exc.start + 1}; a \\u escape "
                "in the range d800-dfff must be one half of a pair: fix or remove it"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, where)
            _check_unicode(item, where, f"{field}.{key}" if field else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, where, f"{field}[{i}]")


def _parse_task(line: str | bytes, where: str) -> Task:
    return task_from_record(parse_json_line(line, where), where)


def task_from_record(record: dict, where: str, *, has_id: bool = True) -> Task:
    """Validate one rfai-schema record. ``has_id=False``: a plain prompt record, which must
    not carry a ``task_id``; the task gets ``task_id=""`` for the caller to fill in."""
    required = _REQUIRED if has_id else _REQUIRED[1:]
    allowed = required + _OPTIONAL
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise TaskFormatError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed fields: {', '.join(allowed)}"
        )
    for field in required:
        if field not in record:
            raise TaskFormatError(f"{where}: missing required field {field!r}")

    task_id = _string(record, "task_id", where, required=True) if has_id else ""
    prompt = _string(record, "prompt", where, required=True)
    try:
        language = canonical_language(record["language"])
    except ValueError as exc:
        raise TaskFormatError(f"{where}: field 'language': {exc}") from exc

    tests = record.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise TaskFormatError(f"{where}: field 'tests' must be a list of strings")
    difficulty = record.get("difficulty")
    # bool is an int subclass; `"difficulty": true` is a mistake, not level 1.
    if difficulty is not None and (not isinstance(difficulty, int) or isinstance(difficulty, bool)):
        raise TaskFormatError(f"{where}: field 'difficulty' must be an integer, got {difficulty!r}")
    return Task(
        task_id=task_id,
        prompt=prompt,
        language=language,
        entry_point=_string(record, "entry_point", where, required=False),
        tests=tuple(tests),
        reference_solution=_string(record, "reference_solution", where, required=False),
        difficulty=difficulty,
        source=where,
    )


def _string(record: dict, field: str, where: str, *, required: bool) -> str | None:
    value = record.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise TaskFormatError(
            f"{where}: field {field!r} must be a string, got {type(value).__name__}"
        )
    if required and not value.strip():
        raise TaskFormatError(f"{where}: field {field!r} must not be empty")
    return value
