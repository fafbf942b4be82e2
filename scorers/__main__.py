"""Score one program against one task with the full suite, for debugging tasks and scorers.

    python -m scorers --tasks FILE --task-id ID --code FILE [--config config.yaml]

``--tasks`` takes anything ``data.train_file`` accepts (a JSONL path or ``builtin:cpp``).
Weights, limits and compilers come from the ``scoring`` section of ``--config`` (default:
the built-in defaults). The teacher baseline for efficiency is the task's reference
solution, when it has one. Prints one JSON object: ``status``, ``student_score``, ``scores``
(criterion -> value or null), ``tests`` (one outcome per test) and more; exit status 0 when
the program was scored (whatever its score), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rfai.config import load_config
from rfai.tasks import load_tasks
from scorers.suite import ScoringSuite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorers", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", required=True, help="task file (JSONL) or builtin:LANG")
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--code", required=True, help="file holding the program to score")
    parser.add_argument("--config", default=None, help="rfai config YAML (scoring section)")
    args = parser.parse_args(argv)
    tasks = {t.task_id: t for t in load_tasks(args.tasks)}
    task = tasks.get(args.task_id)
    if task is None:
        parser.error(f"no task {args.task_id!r} in {args.tasks}; ids: {', '.join(sorted(tasks))}")
    code = Path(args.code).read_text(encoding="utf-8")
    suite = ScoringSuite.from_config(load_config(args.config).scoring)
    suite.check_environment([task.language])
    baseline = None
    if task.reference_solution:
        baseline = suite.score_teacher(task, task.reference_solution)
    result = suite.score(task, code, baseline=baseline)
    out = {"task_id": task.task_id, "language": task.language, **result.to_json()}
    out["teacher_score"] = baseline.score if baseline is not None else None
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
