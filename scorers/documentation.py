"""Documentation: doc coverage of public functions, comment density and (Python) type hints.

Python (``ast`` and ``tokenize``):

    documentation = 0.5 * docstrings + 0.2 * comments + 0.3 * type_hints

* ``docstrings``: the fraction of public functions and classes (name not starting with
  ``_``, at module level or methods of module-level classes) that have a docstring;
* ``comments``: ``min(1, density / 0.15)``, density = lines holding a comment or docstring
  over non-blank lines: about one such line in seven gets full marks;
* ``type_hints``: the fraction of public functions whose parameters (bar ``self``/``cls``)
  and return value are all annotated.

C++ and Rust (lizard finds the functions):

    documentation = 0.7 * doc_comments + 0.3 * comments

* ``doc_comments``: the fraction of public functions (Rust: ``pub fn``, or every ``fn`` if
  none is ``pub``; C++: every function; ``main`` excluded) whose definition is directly
  preceded by a comment (``///``, ``//!``, ``/** */``, or for C++ any ``//`` / ``/* */``);
* ``comments``: as for Python, counting lines holding ``//`` or ``/* */`` comments.

A program without public functions is judged on comments alone; one that does not parse
scores 0.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize

import lizard

from scorers.languages import SOURCE_NAME
from scorers.quality import clamp01
from scorers.sandbox import SandboxLimits
from scorers.task import Task

DENSITY_TARGET = 0.15


def density_part(comment_lines: int, code: str) -> float:
    nonblank = sum(1 for line in code.splitlines() if line.strip())
    return clamp01(comment_lines / nonblank / DENSITY_TARGET) if nonblank else 0.0


def _public_definitions(tree: ast.Module) -> list[ast.AST]:
    found: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not node.name.startswith("_"):
                found.append(node)
            if isinstance(node, ast.ClassDef):
                found += [
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not item.name.startswith("_")
                ]
    return found


def _fully_annotated(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = node.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    params = [p for p in params if p.arg not in ("self", "cls")]
    params += [p for p in (args.vararg, args.kwarg) if p is not None]
    return node.returns is not None and all(p.annotation is not None for p in params)


def python_documentation(code: str) -> tuple[float, dict]:
    try:
        tree = ast.parse(code)
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (SyntaxError, ValueError, RecursionError, tokenize.TokenError) as exc:
        return 0.0, {"error": f"does not parse: {type(exc).__name__}"}
    lines = {t.start[0] for t in tokens if t.type == tokenize.COMMENT}
    documentable = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, documentable) and ast.get_docstring(node, clean=False) is not None:
            lines.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    comments = density_part(len(lines), code)
    public = _public_definitions(tree)
    functions = [n for n in public if not isinstance(n, ast.ClassDef)]
    if not public:
        return comments, {"comments": comments, "public": 0}
    docstrings = sum(ast.get_docstring(n) is not None for n in public) / len(public)
    hints = sum(map(_fully_annotated, functions)) / len(functions) if functions else 1.0
    parts = {"docstrings": docstrings, "comments": comments, "type_hints": hints}
    return 0.5 * docstrings + 0.2 * comments + 0.3 * hints, parts


_DOC_BEFORE = {
    "rust": re.compile(r"^\s*(///|//!|/\*\*|\*|\*/|#\[doc)"),
    "cpp": re.compile(r"^\s*(//|/\*|\*|\*/)"),
}
_SKIP_BEFORE = re.compile(r"^\s*(#\[|template\s*<|$)")  # attributes, templates, blank lines


def _comment_lines(code: str) -> int:
    count, in_block = 0, False
    for line in code.splitlines():
        has = in_block or "//" in line or "/*" in line
        if "/*" in line:
            in_block = "*/" not in line.split("/*", 1)[1]
        elif in_block and "*/" in line:
            in_block = False
        count += has
    return count


def compiled_documentation(language: str, code: str) -> tuple[float, dict]:
    lines = code.splitlines()
    functions = lizard.analyze_file.analyze_source_code(SOURCE_NAME[language], code).function_list
    functions = [f for f in functions if f.name != "main"]
    if language == "rust":
        public = [f for f in functions if re.search(r"\bpub\b", lines[f.start_line - 1])]
        functions = public or functions
    comments = density_part(_comment_lines(code), code)
    if not functions:
        return comments, {"comments": comments, "public": 0}
    documented = 0
    for function in functions:
        index = function.start_line - 2
        while index >= 0 and _SKIP_BEFORE.match(lines[index]) and lines[index].strip():
            index -= 1  # attributes (#[inline]) or template<...> between doc and definition
        documented += index >= 0 and bool(_DOC_BEFORE[language].match(lines[index]))
    coverage = documented / len(functions)
    return 0.7 * coverage + 0.3 * comments, {"doc_comments": coverage, "comments": comments}


class DocumentationScorer:
    """Documentation in [0, 1]; see the module docstring for the formula."""

    name = "documentation"

    def __init__(self, limits: SandboxLimits, toolchain: object = None) -> None:
        self.limits = limits

    def score(self, task: Task, code: str) -> tuple[float | None, dict]:
        if not code.strip():
            return 0.0, {"error": "empty program"}
        if task.language == "python":
            value, details = python_documentation(code)
        else:
            value, details = compiled_documentation(task.language, code)
        return clamp01(value), details
