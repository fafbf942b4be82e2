"""The `mlx` teacher: a second model on this machine, loaded with `mlx_lm.load` (a 4-bit Qwen
coder, say), answering in batches of ``teacher.batch_size`` with `mlx_lm.batch_generate`.

The model is loaded at the first cache miss, so a run whose answers are all cached never
loads it. Sampling: greedy at ``teacher.temperature`` 0, else `mlx_lm`'s sampler at that
temperature. Budgets do not apply (the model is free to run); ``teacher.requests`` counts the
prompts generated.
"""

from __future__ import annotations

from typing import Any

from rfai.config import TeacherConfig
from rfai.teachers.base import TeacherError, TeacherStats
from rfai.teachers.cache import TeacherCache
from rfai.teachers.core import Failed, GeneratingTeacher, Messages, Reply


class MlxGenerate:
    def __init__(self, config: TeacherConfig, stats: TeacherStats) -> None:
        self.config = config
        self.stats = stats
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import mlx_lm

            try:
                self._loaded = mlx_lm.load(self.config.model)[:2]
            except Exception as exc:  # mlx_lm raises many kinds; all mean "cannot load"
                raise TeacherError(
                    f"teacher.model {self.config.model!r}: mlx_lm.load failed: {exc}"
                ) from exc
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


def build_mlx_teacher(config: TeacherConfig) -> GeneratingTeacher:
    cache = TeacherCache(config.cache_dir or None)
    stats = TeacherStats(cache)
    return GeneratingTeacher(
        "mlx",
        config.model,
        MlxGenerate(config, stats),
        cache=cache,
        stats=stats,
        system_prompt=config.system_prompt,
        settings={"temperature": config.temperature, "max_tokens": config.max_tokens},
    )
