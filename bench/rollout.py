"""Rollout throughput: rfai's `generate_groups` against a bare mlx-lm `BatchGenerator` loop.

Both generate the same B x G completions of the same prompts with the same sampler, seed and
batch settings; the bare loop does nothing but count tokens, rfai's also keeps the sampled
ids, gathers the behaviour log-probs and decodes each finished completion. The model carries
rfai's default LoRA adapter (rank 16, every linear layer), merged into the weights for both
loops as the trainer does (`rollout.fuse_adapter`); a third row shows rfai's loop with the
adapter left unmerged. Runs alternate (bare, rfai, unmerged, bare, ...) so drift in clocks
hits all; the table shows the medians and the ratio rfai / bare (target: >= 0.9x).

    python bench/rollout.py --shape qwen2.5-coder-0.5b --batch-size 32 --group-size 8 \\
        --max-new-tokens 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import make_sampler

from bench.common import SHAPES, coding_prompts, median, model_folder, print_table
from rfai.config import StudentConfig
from rfai.rollout import generate_groups
from rfai.student import prepare_student


def bare_batch_generator(model, tokenizer, flat_prompts, args) -> tuple[int, float]:
    """The baseline: mlx-lm's BatchGenerator driven to completion, counting tokens only."""
    gen = BatchGenerator(
        model,
        max_tokens=args.max_new_tokens,
        stop_tokens=[[t] for t in sorted(tokenizer.eos_token_ids)],
        sampler=make_sampler(temp=args.temperature),
        prefill_batch_size=args.prefill_batch_size,
        completion_batch_size=args.completion_batch_size,
    )
    start = time.perf_counter()
    gen.insert(flat_prompts)
    tokens = 0
    while responses := gen.next_generated():
        tokens += len(responses)
    seconds = time.perf_counter() - start
    gen.close()
    return tokens, seconds


def rfai_rollout(model, tokenizer, prompts, args) -> tuple[int, float]:
    finished = []
    start = time.perf_counter()
    completions, _, stats = generate_groups(
        model,
        tokenizer,
        prompts,
        args.group_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        prefill_batch_size=args.prefill_batch_size,
        completion_batch_size=args.completion_batch_size,
        on_complete=finished.append,  # what the trainer does: hand off each completion
    )
    seconds = time.perf_counter() - start
    assert len(finished) == len(completions)
    return stats.generated_tokens, seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", default="qwen2.5-coder-0.5b", choices=sorted(SHAPES))
    p.add_argument("--model", help="a model folder or Hub id instead of a random --shape")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch-size", type=int, default=32, help="B prompts")
    p.add_argument("--group-size", type=int, default=8, help="G completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--prefill-batch-size", type=int, default=64)
    p.add_argument("--completion-batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None, help="where random models are built")
    args = p.parse_args(argv)

    root = Path(args.workdir or tempfile.gettempdir()) / "rfai-bench-models"
    path = args.model or str(model_folder(args.shape, root, args.dtype))
    model, tokenizer = load(path)
    student = prepare_student(model, tokenizer, StudentConfig(path=path))
    model.eval()
    prompt_tokens = []
    for task in coding_prompts(args.batch_size):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": task.prompt}], add_generation_prompt=True, tokenize=False
        )
        prompt_tokens.append(tokenizer.encode(text, add_special_tokens=False))
    flat = [list(p) for p in prompt_tokens for _ in range(args.group_size)]

    mx.random.seed(0)
    bare_batch_generator(model, tokenizer, flat[: min(len(flat), 8)], args)  # warm-up
    runs: dict[str, list[tuple[int, float]]] = {"bare": [], "rfai": [], "rfai, unmerged": []}
    for i in range(args.repeats):
        with student.adapter_fused():
            mx.random.seed(100 + i)
            runs["bare"].append(bare_batch_generator(model, tokenizer, flat, args))
            mx.random.seed(100 + i)
            runs["rfai"].append(rfai_rollout(model, tokenizer, prompt_tokens, args))
        mx.random.seed(100 + i)
        runs["rfai, unmerged"].append(rfai_rollout(model, tokenizer, prompt_tokens, args))

    tps = {k: median([t / s for t, s in v]) for k, v in runs.items()}
    rows = [
        [
            name,
            f"{median([t for t, _ in v]):.0f}",
            f"{median([s for _, s in v]):.2f}",
            f"{tps[name]:.0f}",
        ]
        for name, v in runs.items()
    ]
    print_table(
        f"rollout: {args.model or args.shape} {args.dtype}, B={args.batch_size} "
        f"G={args.group_size} max_new_tokens={args.max_new_tokens}, "
        f"device={mx.default_device()}, median of {args.repeats}",
        ["loop", "tokens", "seconds", "tokens/s"],
        rows,
    )
    print(f"ratio rfai / bare BatchGenerator: {tps['rfai'] / tps['bare']:.3f}x (target >= 0.9x)")
    print(f"adapter merged / unmerged: {tps['rfai'] / tps['rfai, unmerged']:.2f}x")


if __name__ == "__main__":
    main()
