"""Code quality from static measures, mapped to [0, 1].

Python (radon for the metrics, ruff for lint):

    quality = 0.4 * mi + 0.3 * complexity + 0.3 * lint

* ``mi``: radon's maintainability index (``mi_visit``, multi-line strings as comments), / 100.
* ``complexity``: 1 - mean over functions of ``clamp((cc - 5) / 15, 0, 1)``, with ``cc`` each
  function's cyclomatic complexity: up to 5 costs nothing, 20 or more costs everything.
  A program without functions scores 1.
* ``lint``: ``max(0, 1 - 0.1 * findings)``, findings from ruff (pinned in pyproject.toml, run
  ``--isolated`` so no user config changes the rules, and ``--ignore-noqa`` so no ``# noqa``
  in the solution hides a finding) with the rules in ``RUFF_RULES``.

C++ and Rust (lizard for the metrics, the compiler's warnings as lint):

    quality = 0.4 * complexity + 0.2 * size + 0.4 * lint

* ``complexity`` as above, from lizard's cyclomatic complexity (on the code with its comments
  blanked: lizard obeys ``#lizard forgive`` and ``GENERATED CODE`` comments);
* ``size``: 1 - mean over functions of ``clamp((nloc - 30) / 70, 0, 1)`` (long functions);
* ``lint``: ``max(0, 1 - 0.1 * warnings)``, the warnings ``g++ -Wall -Wextra`` / ``rustc``
  report in the solution's own lines (the compile is the correctness build, from the cache;
  C++ diagnostic pragmas and Rust ``allow``/``expect`` attributes are refused by the harness).

A program that does not parse (Python) or compile (C++/Rust) scores 0; an empty one 0.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import lizard
from radon.complexity import cc_visit
from radon.metrics import mi_visit

from scorers.harness import without_comments
from scorers.languages import SOURCE_NAME, Toolchain, compile_program
from scorers.sandbox import SandboxLimits
from scorers.sandbox_io import EXEC_FILES
from scorers.task import Task

# pyflakes (F), pycodestyle errors that are not layout (E7, E9), bugbear (B), simplify (SIM),
# comprehensions (C4), returns (RET): correctness smells and needless complexity, not style.
RUFF_RULES = "F,E7,E9,B,SIM,C4,RET"


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def complexity_part(values: list[float]) -> float:
    if not values:
        return 1.0
    return 1.0 - sum(clamp01((cc - 5) / 15) for cc in values) / len(values)


def lint_part(findings: int) -> float:
    return max(0.0, 1.0 - 0.1 * findings)


def ruff_findings(code: str) -> list[str]:
    """Ruff's findings for ``code`` (as ``CODE line: message``); ruff is not run on the
    program but reads it, so it runs outside the sandbox."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        raise RuntimeError("ruff not found: install rfai's dependencies (pip install -e .)")
    # --ignore-noqa: a noqa comment in the solution (per line or for the file) would switch
    # the lint off.
    argv = [ruff, "check", "--isolated", "--ignore-noqa", "--select", RUFF_RULES]
    argv += ["--output-format", "json"]
    argv += ["--stdin-filename", "solution.py", "-"]
    pipe = subprocess.PIPE
    with EXEC_FILES.forking():  # the child must not keep a sandbox binary open (sandbox_io)
        # Its own session: a Ctrl-C at the terminal must not kill it in the middle of a scoring.
        ruff_run = subprocess.Popen(
            argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True, start_new_session=True
        )
    try:
        stdout, stderr = ruff_run.communicate(code, timeout=60)
    finally:
        if ruff_run.poll() is None:  # timed out (or interrupted): as subprocess.run does
            ruff_run.kill()
            ruff_run.communicate()
    if ruff_run.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed (exit {ruff_run.returncode}): {stderr[:300]}")
    return [f"{f['code']} {f['location']['row']}: {f['message']}" for f in json.loads(stdout)]


def python_quality(code: str) -> tuple[float, dict]:
    try:
        ast.parse(code)
        mi = mi_visit(code, multi=True)
        blocks = cc_visit(code)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return 0.0, {"error": f"does not parse: {type(exc).__name__}"}
    functions = [b.complexity for b in blocks if type(b).__name__ == "Function"]
    findings = ruff_findings(code)
    parts = {
        "mi": clamp01(mi / 100),
        "complexity": complexity_part(functions),
        "lint": lint_part(len(findings)),
    }
    value = 0.4 * parts["mi"] + 0.3 * parts["complexity"] + 0.3 * parts["lint"]
    return value, {**parts, "findings": findings[:10]}


def compiled_quality(task: Task, code: str, toolchain: Toolchain) -> tuple[float, dict]:
    build = compile_program(toolchain, task.language, code, task.tests)
    if not build.ok:
        return 0.0, {"error": "does not compile"}
    # Comments blanked: lizard obeys `#lizard forgive` and `GENERATED CODE` in them.
    bare = without_comments(task.language, code)
    analysis = lizard.analyze_file.analyze_source_code(SOURCE_NAME[task.language], bare)
    functions = analysis.function_list
    sizes = [f.nloc for f in functions]
    parts = {
        "complexity": complexity_part([f.cyclomatic_complexity for f in functions]),
        "size": 1.0 - sum(clamp01((n - 30) / 70) for n in sizes) / len(sizes) if sizes else 1.0,
        "lint": lint_part(len(build.warnings)),
    }
    value = 0.4 * parts["complexity"] + 0.2 * parts["size"] + 0.4 * parts["lint"]
    return value, {**parts, "findings": list(build.warnings[:10])}


class QualityScorer:
    """Static code quality in [0, 1]; see the module docstring for the formula."""

    name = "code_quality"

    def __init__(self, limits: SandboxLimits, toolchain: Toolchain | None = None) -> None:
        self.limits = limits
        self.toolchain = toolchain or Toolchain.discover()

    def score(self, task: Task, code: str) -> tuple[float | None, dict]:
        if not code.strip():
            return 0.0, {"error": "empty program"}
        if task.language == "python":
            value, details = python_quality(code)
        else:
            value, details = compiled_quality(task, code, self.toolchain)
        return clamp01(value), details
