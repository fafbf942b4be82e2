"""What a model is asked to write: the chat turns the student and the teacher share.

Both are asked the same question, so the teacher's code is an answer to the student's prompt:
an optional system turn (``student.system_prompt`` / ``teacher.system_prompt``) and a user turn
with the task's prompt and the answer format, one fenced block in the task's language, which
`rfai.extract.extract_code` reads back. The student renders these messages with its chat
template (`rfai.student`); a generating teacher sends them to its backend
(`rfai.teachers.prompts`, which also asks for tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scorers.task import Task

# language -> (name in the request, code-fence tag of the answer)
LANGUAGES = {"python": ("Python", "python"), "cpp": ("C++", "cpp"), "rust": ("Rust", "rust")}


def solution_request(task: Task) -> str:
    """The user turn for a task: its statement plus the answer format rfai extracts."""
    name, fence = LANGUAGES[task.language]
    return (
        f"{task.prompt.rstrip()}\n\n"
        f"Write the complete solution in {name} in a single ```{fence} code block."
    )


def chat_messages(system_prompt: str, user: str) -> list[dict[str, str]]:
    """A system turn (left out when `system_prompt` is "") followed by the user turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}]


def solution_messages(task: Task, system_prompt: str) -> list[dict[str, str]]:
    """The chat a student or teacher answers with its solution of `task`."""
    return chat_messages(system_prompt, solution_request(task))
