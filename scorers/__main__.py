"""Score one program against one task with the full suite, for debugging tasks and scorers.

    python -m scorers --task-id ID --code FILE [--tasks SOURCE] [--config config.yaml] [--strict]

``--tasks`` takes every task source training takes for ``data.train_file``, read by the same
loader (``rfai/task_sources.py``): an rfai, HumanEval-format or prompts JSONL file (``.gz``
too), ``builtin:python|cpp|rust``, ``humaneval``, or a Hugging Face dataset (``hf:ID[@split]``
or a folder, columns mapped by the config's ``data.fields``). Without ``--tasks`` it reads the
config's ``data.train_file``. As in training, a malformed record is skipped and reported on
stderr (naming ``file:line``); with ``--strict`` it is fatal. Weights, limits, compilers and
the compile cache come from the ``scoring`` section of ``--config`` (default: the built-in
defaults). The teacher baseline for efficiency is the task's reference solution, when it has
one.

Prints one JSON object: ``status``, ``student_score``, ``teacher_score``, ``scores``
(criterion -> value or null), ``tests`` (one outcome per test) and more. Exit status 0 when
the program was scored (whatever its score). Every user error (a missing or unreadable task,
code or config file, an unknown task id, a malformed task file, a bad config value, a missing
compiler) is one line on stderr, ``python -m scorers: error: ...``, and exit status 2.

This file is the one module of ``scorers`` that imports ``rfai``, and nothing imports it: it is
an entry point, like ``train_rfai.py``, that reads tasks and the config the way training does
(``rfai.task_sources``, ``rfai.config``), so a task scores here exactly as in a run. It stays
here rather than under ``rfai/`` because ``python -m scorers`` can only start from this file,
and a thin forwarder to ``rfai`` would be the same exception with the logic one hop away.
The rest of ``scorers`` never imports ``rfai`` (tests/test_architecture.py checks both).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from rfai.config import Config, ConfigError
from rfai.config_load import load_config
from rfai.task_sources import SourceLoad, load_task_source
from rfai.tasks import TaskFormatError
from scorers.languages import ToolchainError
from scorers.suite import ScoringSuite
from scorers.task import Task

PROG = "python -m scorers"
USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in what the user passed; the message says what and where."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tasks",
        default=None,
        help="task source, as data.train_file: a JSONL file (rfai, HumanEval or prompts), "
        "builtin:LANG, humaneval or hf:ID[@split] (default: the config's data.train_file)",
    )
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--code", required=True, help="file holding the program to score")
    parser.add_argument("--config", default=None, help="rfai config YAML (data and scoring)")
    parser.add_argument(
        "--strict", action="store_true", help="a malformed task record is fatal (as training)"
    )
    args = parser.parse_args(argv)
    try:
        out = score_from_args(args)
    except UsageError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return USAGE_ERROR
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def score_from_args(args: argparse.Namespace) -> dict:
    """Load config, task and code, score the code; every user error is a `UsageError`."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(f"config: {exc}") from None
    except OSError as exc:
        raise UsageError(f"config {args.config}: cannot read it: {exc.strerror or exc}") from None
    task = find_task(config, args.tasks or config.data.train_file, args.task_id, args.strict)
    code = read_code(Path(args.code))
    suite = ScoringSuite.from_config(config.scoring)
    try:
        suite.check_environment([task.language])
    except ToolchainError as exc:
        raise UsageError(f"task {task.task_id!r}: {exc}") from None
    baseline = None
    if task.reference_solution:
        baseline = suite.score_teacher(task, task.reference_solution)
    result = suite.score(task, code, baseline=baseline)
    out = {"task_id": task.task_id, "language": task.language, **result.to_json()}
    out["teacher_score"] = baseline.score if baseline is not None else None
    return out


def find_task(config: Config, spec: str, task_id: str, strict: bool) -> Task:
    """The task ``task_id`` of source ``spec``, read as training reads ``data.train_file``."""
    try:
        load = load_task_source(
            spec,
            strict=strict or config.data.strict,
            fields=config.data.fields,
            dataset_language=config.data.dataset_language,
            dataset_subset=config.data.dataset_subset,
        )
    except TaskFormatError as exc:
        raise UsageError(str(exc)) from None
    except ImportError as exc:  # hf: sources need the optional `datasets` package
        raise UsageError(f"task source {spec!r} needs a missing package: {exc}") from None
    except OSError as exc:  # e.g. a Hub dataset without network
        raise UsageError(f"task source {spec!r}: cannot read it: {exc}") from None
    for task in load.tasks:
        if task.task_id == task_id:
            for problem in load.problems:
                print(f"{PROG}: warning: skipped {one_line(problem)}", file=sys.stderr)
            return task
    raise UsageError(unknown_task_message(load, task_id))


def unknown_task_message(load: SourceLoad, task_id: str) -> str:
    ids = [t.task_id for t in load.tasks]
    message = f"no task {task_id!r} in {load.spec} ({load.format} format, {len(ids)} task(s)"
    close = difflib.get_close_matches(task_id, ids, n=3)
    if close:
        message += f"; did you mean {', '.join(map(repr, close))}?"
    elif ids:
        message += f"; the first: {', '.join(map(repr, ids[:5]))}"
    message += ")"
    if load.problems:
        message += f"; {load.skipped} malformed record(s) skipped, the first: {load.problems[0]}"
    return message


def read_code(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--code {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise UsageError(f"--code {path}: cannot read it: {exc.strerror or exc}") from None


def one_line(text: str) -> str:
    """``text`` on one line (YAML and dataset errors span several)."""
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
