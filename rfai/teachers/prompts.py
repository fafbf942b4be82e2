"""What a generating teacher (openai, anthropic, mlx) is asked, and how its answer is read.

Solutions: the same chat the student is given (`rfai.prompts.solution_messages`, with
``teacher.system_prompt``), so the teacher answers the student's question; the code is taken
out with `rfai.extract.extract_code`, the rule the student's completions go through.

Tests, for tasks that have none (``teacher.write_tests``): the user turn below asks for one
fenced block of assertions that call the task's entry point. They are split into the task's
``tests`` format (``rfai/tasks.py``):

* Python: every top-level ``assert`` statement is one snippet; top-level imports are put in
  front of every snippet (an assert may need ``math``); anything else (helper definitions,
  prints, a re-definition of the function) is dropped, so tests cannot replace the solution.
* C++ and Rust: every statement that starts with ``assert`` (``assert(...)``, ``assert!``,
  ``assert_eq!``, ``assert_ne!``) and ends with ``;`` is one snippet, the body of one test.
"""

from __future__ import annotations

import ast
import re

from rfai.extract import extract_code
from rfai.prompts import LANGUAGES, chat_messages
from scorers.task import Task

ASSERT_FORMS = {
    "python": "`assert` statements",
    "cpp": "`assert(...);` statements",
    "rust": "`assert!`, `assert_eq!` or `assert_ne!` statements",
}
TESTS_SYSTEM_PROMPT = "You are an expert programmer who writes precise unit tests."


def messages_for_tests(task: Task) -> list[dict[str, str]]:
    name, fence = LANGUAGES[task.language]
    target = f"`{task.entry_point}`" if task.entry_point else "the solution's function"
    user = (
        f"Here is a programming task:\n\n{task.prompt.rstrip()}\n\n"
        f"Do not solve it. Write 5 to 8 tests in {name} that check a correct solution of it: "
        f"{ASSERT_FORMS[task.language]}, one per line, each calling {target} with concrete "
        f"inputs and comparing with the exact expected result. Cover edge cases. Answer with "
        f"a single ```{fence} code block that contains only those statements (and imports "
        f"they need)."
    )
    return chat_messages(TESTS_SYSTEM_PROMPT, user)


class AnswerError(ValueError):
    """A teacher's answer holds no usable code or tests; the message says what it held."""


def solution_code(text: str, task: Task) -> str:
    extracted = extract_code(text, task.language, task.entry_point)
    if not extracted.code.strip():
        raise AnswerError(f"the teacher's answer holds no code ({_excerpt(text)})")
    return extracted.code


def parse_tests(text: str, task: Task) -> tuple[str, ...]:
    """The test snippets in a teacher's answer (rules in the module docstring)."""
    code = extract_code(text, task.language, None).code
    if task.language == "python":
        tests = _python_asserts(code)
    else:
        tests = tuple(
            m.group(0).strip() for m in re.finditer(r"(?ms)^\s*assert\w*!?\s*\(.*?\)\s*;", code)
        )
    if not tests:
        raise AnswerError(
            f"the teacher's answer holds no {ASSERT_FORMS[task.language]} ({_excerpt(text)})"
        )
    return tests


def _python_asserts(code: str) -> tuple[str, ...]:
    try:
        module = ast.parse(code)
    except SyntaxError as exc:
        raise AnswerError(f"the teacher's tests are not valid Python: {exc.msg}") from exc
    imports = [
        ast.get_source_segment(code, node)
        for node in module.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    prefix = "".join(f"{line}\n" for line in imports if line)
    return tuple(
        prefix + (ast.get_source_segment(code, node) or "")
        for node in module.body
        if isinstance(node, ast.Assert)
    )


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "it was empty"
    return f"it began {flat[:limit]!r}" if len(flat) > limit else f"it was {flat!r}"
