"""Shared by the benchmarks: random models of real shapes, prompts, and table printing.

No benchmark downloads anything: a model "shape" is a random Qwen2 model with the real
dimensions of a Hub model, written as an ordinary model folder (mlx_lm.load opens it) with
rfai's tiny trained tokenizer. The embedding keeps the real vocabulary size, so the output
layer and the logits cost what they cost in the real model; ids past the tokenizer's own
vocabulary decode to "". A random model almost never samples its end-of-sequence token, so
every completion runs to max_new_tokens, which is what a throughput benchmark wants.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from rfai.tiny_model import build_tiny_model
from scorers.task import Task

# Dimensions from the models' config.json on the Hub.
SHAPES = {
    "qwen2.5-coder-0.5b": dict(
        hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
        intermediate_size=4864, model_vocab_size=151936,
    ),
    "qwen2.5-coder-1.5b": dict(
        hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
        intermediate_size=8960, model_vocab_size=151936,
    ),
    "tiny": dict(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=128, model_vocab_size=None,
    ),
}  # fmt: skip


def model_folder(shape: str, root: Path, dtype: str = "bfloat16") -> Path:
    """A random model of `shape` under `root` (built once, reused)."""
    folder = root / f"{shape}-{dtype}"
    if not (folder / "config.json").exists():
        build_tiny_model(folder, vocab_size=4096, dtype=dtype, **SHAPES[shape])
    return folder


def coding_prompts(n: int) -> list[Task]:
    """n coding tasks from rfai's built-in set (cycled)."""
    from rfai.tasks import load_tasks

    tasks = load_tasks("builtin:python")
    return [tasks[i % len(tasks)] for i in range(n)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
