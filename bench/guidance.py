"""The extra cost of teacher guidance and on-policy distillation in the policy update.

Both change only the update (the rollout and the scoring are the same): guidance adds one
off-policy teacher row per group, distillation one forward pass of the teacher model per
micro-batch. This runs rfai's own `PolicyUpdater.step` on the same B x G sampled-like
completions four ways (plain GRPO, guided, distilled, both) on random models of real
shapes and prints each update's median time and peak memory as a ratio to the plain update
measured in the same run.

    python bench/guidance.py --student qwen2.5-coder-0.5b --teacher qwen2.5-coder-7b \\
        --batch-size 8 --group-size 8 --prompt-tokens 256 --completion-tokens 512
    python bench/guidance.py   # CPU defaults: the tiny shapes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx.core as mx
import numpy as np
from mlx_lm import load

from bench.common import SHAPES, median, model_folder, print_table
from rfai.config import AdapterConfig, GRPOConfig, StudentConfig, TrainingConfig
from rfai.student import load_student
from rfai.update import PolicyUpdater, Sample

VARIANTS = {
    # name: (teacher rows per group, distill_weight)
    "plain GRPO": (0, 0.0),
    "guided (1 teacher row/group)": (1, 0.0),
    "distilled": (0, 1.0),
    "guided + distilled": (1, 1.0),
}


def make_samples(args, vocab: int, teacher_rows: int) -> list[Sample]:
    """B groups of G completions with random tokens and advantages, plus the teacher rows."""
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(args.batch_size):
        prompt = rng.integers(10, vocab, args.prompt_tokens).tolist()
        for _ in range(args.group_size):
            tokens = rng.integers(10, vocab, args.completion_tokens).tolist()
            logp = (-rng.random(args.completion_tokens) * 5).tolist()
            samples.append(Sample(prompt, tokens, logp, float(rng.normal()), False))
        for _ in range(teacher_rows):
            tokens = rng.integers(10, vocab, args.completion_tokens).tolist()
            samples.append(Sample(prompt, tokens, [0.0] * len(tokens), 1.0, False, True))
    return samples


def measure(args, student_path: Path, teacher_model, teacher_rows: int, weight: float):
    """Median seconds and peak bytes of `args.steps` updates after `args.warmup`."""
    student = load_student(
        StudentConfig(path=str(student_path), adapter=AdapterConfig(rank=args.lora_rank)),
        seed=0,
    )
    grpo = GRPOConfig(beta=args.beta, teacher_guidance=teacher_rows, distill_weight=weight)
    training = TrainingConfig(micro_batch_size=args.micro_batch_size, warmup_steps=0)
    updater = PolicyUpdater(
        student, grpo, training, temperature=1.0, total_updates=args.warmup + args.steps,
        max_new_tokens=args.completion_tokens,
        distill_teacher=teacher_model if weight > 0 else None,
    )  # fmt: skip
    samples = make_samples(args, args.token_range, teacher_rows)
    times, peaks = [], []
    for i in range(args.warmup + args.steps):
        mx.reset_peak_memory()
        t0 = time.perf_counter()
        updater.step(samples)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            peaks.append(mx.get_peak_memory())
    del updater, student
    mx.clear_cache()
    return median(times), max(peaks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--teacher", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--completion-tokens", type=int, default=96)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "rfai-bench")
    args = parser.parse_args(argv)
    args.token_range = 4096  # the bench models' tokenizer (bench/common.py)
    student_path = model_folder(args.student, args.models, args.dtype)
    teacher_path = model_folder(args.teacher, args.models, args.dtype)
    if teacher_path == student_path:  # a teacher with the same shape but other weights
        teacher_path = args.models / f"{args.teacher}-{args.dtype}-teacher"
        if not (teacher_path / "config.json").exists():
            from rfai.tiny_model import build_tiny_model

            build_tiny_model(teacher_path, seed=1, vocab_size=4096, dtype=args.dtype,
                             **SHAPES[args.teacher])  # fmt: skip
    teacher_model = load(str(teacher_path))[0]
    teacher_model.freeze()
    results = {
        name: measure(args, student_path, teacher_model, rows, weight)
        for name, (rows, weight) in VARIANTS.items()
    }
    base_time, base_peak = results["plain GRPO"]
    rows = [
        [name, f"{t:.3f}", f"{t / base_time:.2f}x", f"{peak / 1e9:.2f}", f"{peak / base_peak:.2f}x"]
        for name, (t, peak) in results.items()
    ]
    print_table(
        f"update cost on {mx.default_device()}: student {args.student}, teacher "
        f"{args.teacher}, B={args.batch_size} G={args.group_size}, "
        f"{args.prompt_tokens}+{args.completion_tokens} tokens, micro-batch "
        f"{args.micro_batch_size}, beta {args.beta}",
        ["variant", "update s", "vs plain", "peak GB", "vs plain"],
        rows,
    )


if __name__ == "__main__":
    main()
