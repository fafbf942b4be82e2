"""`build_teacher`: the backend ``teacher.backend`` names, each imported only when chosen
(the reference teacher needs neither the network modules nor `mlx_lm`)."""

from __future__ import annotations

from typing import Any

from rfai.config import TeacherConfig
from rfai.teachers.base import Teacher


def build_teacher(config: TeacherConfig, mlx_loaded: tuple[Any, Any] | None = None) -> Teacher:
    """The teacher ``teacher.backend`` names. Reads the API key from the environment now,
    so a missing key fails before training starts; no request is made here.
    `mlx_loaded`: for the mlx backend, its (model, tokenizer) when already loaded."""
    if config.backend == "reference":
        from rfai.teachers.reference import ReferenceTeacher

        return ReferenceTeacher()
    if config.backend == "openai":
        from rfai.teachers.openai_api import build_openai_teacher

        return build_openai_teacher(config)
    if config.backend == "anthropic":
        from rfai.teachers.anthropic_api import build_anthropic_teacher

        return build_anthropic_teacher(config)
    if config.backend == "mlx":
        from rfai.teachers.mlx_local import build_mlx_teacher

        return build_mlx_teacher(config, mlx_loaded)
    raise ValueError(f"teacher.backend: unknown backend {config.backend!r}")
