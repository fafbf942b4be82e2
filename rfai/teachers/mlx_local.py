"""The `mlx` teacher: a second model on this machine, loaded with `mlx_lm.load` (a 4-bit Qwen
coder, say), answering in batches of ``teacher.batch_size`` with `mlx_lm.batch_generate`.

The model is loaded at the first cache miss, so a run whose answers are all cached never
loads it. Sampling: greedy at ``teacher.temperature`` 0, else `mlx_lm`'s sampler at that
temperature. Budgets do not apply (the model is free to run); ``teacher.requests`` counts the
prompts generated.

On-policy distillation (`grpo.distill_weight` > 0) needs a model itself, to score the
student's sampled tokens: `load_distill_teacher` loads it at start-up (``grpo.distill_model``,
or ``teacher.model``) and refuses one whose tokenizer differs from the student's. When it is
the mlx teacher's own model, the same loaded pair is handed to the generating teacher, so the
model is in memory once.
"""

from __future__ import annotations

from typing import Any

from rfai.config import TeacherConfig
from rfai.teachers.base import TeacherError, TeacherStats
from rfai.teachers.cache import TeacherCache
from rfai.teachers.core import Failed, GeneratingTeacher, Messages, Reply


def load_mlx_model(model: str, key: str = "teacher.model") -> tuple[Any, Any]:
    """(model, tokenizer) via `mlx_lm.load`; a TeacherError naming the config `key`."""
    import mlx_lm

    try:
        return mlx_lm.load(model)[:2]
    except Exception as exc:  # mlx_lm raises many kinds; all mean "cannot load"
        raise TeacherError(f"{key} {model!r}: mlx_lm.load failed: {exc}") from exc


def check_same_tokenizer(
    student_tokenizer: Any, teacher_tokenizer: Any, student_name: str, teacher_name: str
) -> None:
    """Raise TeacherError unless both map every token string to the same id.

    Distillation compares the two models' log-probabilities of the same token ids, which only
    means something when one tokenizer made them (Qwen2.5-Coder 0.5B ... 32B share one)."""
    student_vocab = student_tokenizer.get_vocab()
    teacher_vocab = teacher_tokenizer.get_vocab()
    if student_vocab == teacher_vocab:
        return
    differing = sorted(
        t for t in student_vocab.keys() | teacher_vocab.keys()
        if student_vocab.get(t) != teacher_vocab.get(t)
    )  # fmt: skip
    example = differing[0]
    raise TeacherError(
        f"grpo.distill_weight: the distillation teacher's tokenizer differs from the "
        f"student's (student.path {student_name!r}: {len(student_vocab)} tokens; teacher "
        f"{teacher_name!r}: {len(teacher_vocab)} tokens; {len(differing)} differ, e.g. "
        f"{example!r}: id {student_vocab.get(example)} vs {teacher_vocab.get(example)}). "
        "Distillation scores the student's token ids with the teacher, so both must share "
        "one tokenizer (e.g. a larger model of the student's family); or set "
        "grpo.distill_weight: 0"
    )


def load_distill_teacher(
    model_id: str, key: str, student_tokenizer: Any, student_name: str
) -> tuple[Any, Any]:
    """The distillation teacher's (model, tokenizer) (`key` is the config key that named
    `model_id`), checked against the student's tokenizer; frozen, it is never trained."""
    model, tokenizer = load_mlx_model(model_id, key)
    check_same_tokenizer(student_tokenizer, tokenizer, student_name, model_id)
    model.freeze()
    model.eval()
    return model, tokenizer


class MlxGenerate:
    def __init__(
        self, config: TeacherConfig, stats: TeacherStats, loaded: tuple[Any, Any] | None = None
    ) -> None:
        self.config = config
        self.stats = stats
        self._loaded = loaded

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_mlx_model(self.config.model)
        return self._loaded

    def __call__(self, conversations: list[Messages]) -> list[Reply | Failed]:
        from mlx_lm import batch_generate
        from mlx_lm.sample_utils import make_sampler

        model, tokenizer = self._load()
        prompts = [
            tokenizer.encode(
                tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )
            for m in conversations
        ]
        sampler = make_sampler(temp=self.config.temperature)
        results: list[Reply | Failed] = []
        size = self.config.batch_size
        for start in range(0, len(prompts), size):
            chunk = prompts[start : start + size]
            response = batch_generate(
                model,
                tokenizer,
                chunk,
                max_tokens=self.config.max_tokens,
                sampler=sampler,
                return_token_ids=True,
            )
            for prompt, text, ids in zip(chunk, response.texts, response.token_ids, strict=True):
                self.stats.add(requests=1, prompt_tokens=len(prompt), completion_tokens=len(ids))
                if text.strip():
                    results.append(Reply(text, len(prompt), len(ids)))
                else:
                    results.append(Failed("teacher mlx: empty answer"))
        return results


def build_mlx_teacher(
    config: TeacherConfig, loaded: tuple[Any, Any] | None = None
) -> GeneratingTeacher:
    """`loaded`: the (model, tokenizer) already in memory (distillation); default: loaded
    at the first cache miss."""
    cache = TeacherCache(config.cache_dir or None)
    stats = TeacherStats(cache)
    return GeneratingTeacher(
        "mlx",
        config.model,
        MlxGenerate(config, stats, loaded),
        cache=cache,
        stats=stats,
        system_prompt=config.system_prompt,
        settings={"temperature": config.temperature, "max_tokens": config.max_tokens},
    )
