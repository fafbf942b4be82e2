"""Teachers: where the code a student is measured against comes from.

A teacher turns tasks into `TeacherAnswer`s (and, when asked, tasks without tests into
`WrittenTests`s). Backends live one per module behind this small interface, so the trainer
never knows which one it has:

    reference   reference.py     the task's own reference solution
    openai      openai_api.py    any OpenAI-compatible chat-completions endpoint
    anthropic   anthropic_api.py Anthropic's Messages API
    mlx         mlx_local.py     a second local model via mlx_lm

The interface (answers, `TeacherStats`, `TeacherError`, `Teacher`, `add_teacher_tests`) is in
base.py and `build_teacher` in build.py; this file only re-exports them, and no module of the
package imports it, so imports run one way (build -> backends -> core/api -> base). The
generating backends share core.py (disk cache, budget), api.py (retries, concurrency) and
prompts.py (what is asked, how answers are read). A task the teacher cannot
answer gets ``code=None`` with an ``error``: the trainer skips it for that step and counts it;
no answer is ever invented. A `TeacherError` is a problem of the whole teacher (a wrong key,
URL or model) and stops the run.
"""

from rfai.teachers.base import (
    Teacher,
    TeacherAnswer,
    TeacherError,
    TeacherStats,
    WrittenTests,
    add_teacher_tests,
)
from rfai.teachers.build import build_teacher

__all__ = [
    "Teacher",
    "TeacherAnswer",
    "TeacherError",
    "TeacherStats",
    "WrittenTests",
    "add_teacher_tests",
    "build_teacher",
]
