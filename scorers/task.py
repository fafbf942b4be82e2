"""The task a program is scored against: the input type of every scorer.

It lives in ``scorers`` so that the scorers are usable and testable without ``rfai``
(``scorers`` never imports ``rfai``; see tests/test_architecture.py). Reading task files (the
JSONL schema, aliases, errors naming ``file:line``) is rfai's: ``rfai/tasks.py`` and
``rfai/task_sources.py`` build these objects.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_LANGUAGES = ("python", "cpp", "rust")


@dataclass(frozen=True)
class Task:
    """One coding task.

    ``language`` is one of `SUPPORTED_LANGUAGES` (canonical spelling); ``tests`` are the
    snippets described in ``rfai/tasks.py`` (Python statements, or the body of one C++/Rust
    test function each); ``source`` is the ``file:line`` it came from, for error messages.
    """

    task_id: str
    prompt: str
    language: str
    entry_point: str | None
    tests: tuple[str, ...]
    reference_solution: str | None
    difficulty: int | None = None
    source: str = ""
