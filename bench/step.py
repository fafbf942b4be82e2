"""One full GRPO step, split into generation, scoring and update, with peak memory.

Runs rfai's own `rfai.trainer.run_step` on a run from `rfai.run.build_run` (real rollout,
real sandboxed scoring of every completion and the teacher's code, real update) on a model
of a real shape with random weights, for `--warmup` + `--steps` steps, and prints the
medians of the measured steps. `--peer` then runs the PyPI package mlx-lm-lora's GRPO
trainer (optional bench dependency: `pip install -e ".[bench]"`) on the same model folder,
B, G and completion length, and prints rfai's end-to-end generated tokens per second
against it.

    python bench/step.py --shape qwen2.5-coder-0.5b --batch-size 32 --group-size 8 \\
        --max-new-tokens 512 --micro-batch-size 8 [--peer]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx.core as mx
from mlx_lm import load
from rich.console import Console

from bench.common import SHAPES, median, model_folder, print_table
from rfai.config_load import config_from_dict
from rfai.progress import StepProgress
from rfai.run import build_run
from rfai.student import prepare_student
from rfai.trainer import run_step


def run_rfai(args, path: str, workdir: Path) -> tuple[list[dict], list[dict]]:
    """Returns the warm-up steps' metrics and the measured steps' metrics."""
    config = config_from_dict(
        {
            "student": {"path": path, "system_prompt": ""},
            "rollout": {
                "batch_size": args.batch_size,
                "group_size": args.group_size,
                "max_new_tokens": args.max_new_tokens,
                "completion_batch_size": max(args.batch_size * args.group_size, 1),
            },
            "grpo": {"beta": args.beta, "loss_type": args.loss_type},
            "training": {
                "steps": args.warmup + args.steps,
                "micro_batch_size": args.micro_batch_size,
                "grad_checkpoint": args.grad_checkpoint,
                "compile": not args.no_compile,
                "output_dir": str(workdir / "run"),
                "stop_after_idle_steps": 0,  # a random model's rewards are all 0
            },
            "checkpoint": {"every_steps": 10**6},
            "logging": {"rich": False},
            "scoring": {"workers": args.workers},
            "huggingface": {"dataset_output_dir": str(workdir / "datasets")},
        },
        source="bench/step.py",
    )
    model, tokenizer = load(path)
    student = prepare_student(model, tokenizer, config.student, seed=0)
    run = build_run(config, student=student)
    warm, results = [], []
    with run.scoring_pool() as pool:
        for step in range(1, args.warmup + args.steps + 1):
            metrics = run_step(run, step, pool)
            print(json.dumps({"step": step, **metrics}), file=sys.stderr, flush=True)
            (results if step > args.warmup else warm).append(metrics)
    return warm, results


def live_view_seconds(step_seconds: float, completions: int) -> float:
    """What the live terminal view (rfai/progress.py) costs per step: its phase updates (one
    per completion generated and per completion scored, plus a few) and its redraws (4 a
    second over the step), timed on a terminal console that writes to /dev/null."""
    with open(os.devnull, "w") as sink:
        console = Console(file=sink, force_terminal=True, width=160)
        with StepProgress(console, total_steps=100, done_steps=0) as view:
            show = view.rollout("step 1")
            start = time.perf_counter()
            for i in range(completions):
                show(i, 0, completions)
            for i in range(completions):
                show(completions, i, completions)
            view.phase("step 1: updating on 64 samples")
            view.step_done()
            updates = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(20):
                view.refresh()
            redraw = (time.perf_counter() - start) / 20
    return updates + redraw * 4 * step_seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", default="qwen2.5-coder-0.5b", choices=sorted(SHAPES))
    p.add_argument("--model", help="a model folder instead of a random --shape")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch-size", type=int, default=32, help="B tasks")
    p.add_argument("--group-size", type=int, default=8, help="G completions per task")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="run the update uncompiled")
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--loss-type", default="dapo")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--peer", action="store_true", help="also run mlx-lm-lora's GRPO trainer")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json-out", help="write all numbers here as JSON")
    args = p.parse_args(argv)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="rfai-bench-"))
    path = args.model or str(model_folder(args.shape, root / "models", args.dtype))
    warm, runs = run_rfai(args, path, root)
    keys = [
        ("generation_seconds", "generation s"),
        ("scoring_seconds", "scoring s (job time / workers)"),
        ("scoring_wait_seconds", "scoring wait s (after generation)"),
        ("update_seconds", "update s"),
        ("step_seconds", "step s"),
        ("generated_tokens", "generated tokens"),
        ("generation_peak_memory_gb", "peak memory GB, generation"),
        ("update_peak_memory_gb", "peak memory GB, update"),
    ]
    summary = {k: median([r[k] for r in runs]) for k, _ in keys}
    summary["tokens_per_second"] = summary["generated_tokens"] / summary["step_seconds"]
    ideal = (
        max(summary["generation_seconds"], summary["scoring_seconds"]) + summary["update_seconds"]
    )
    summary["overlap_ratio"] = summary["step_seconds"] / ideal
    title = (
        f"GRPO step: {args.model or args.shape} {args.dtype}, B={args.batch_size} "
        f"G={args.group_size} max_new_tokens={args.max_new_tokens} micro_batch="
        f"{args.micro_batch_size}{', no compile' if args.no_compile else ''}, "
        f"device={mx.default_device()}, median of {args.steps}"
    )
    rows = [[label, f"{summary[k]:.2f}"] for k, label in keys]
    rows.append(["end-to-end generated tokens/s", f"{summary['tokens_per_second']:.0f}"])
    if warm:
        # The first update traces and compiles the step (once per padded batch width).
        rows.append(["first step's update s (compile)", f"{warm[0]['update_seconds']:.2f}"])
    print_table(title, ["rfai", "value"], rows)
    completions = args.batch_size * args.group_size
    view = live_view_seconds(summary["step_seconds"], completions)
    summary["live_view_fraction"] = view / summary["step_seconds"]
    print(
        f"live terminal view: {view * 1e3:.2f} ms per step = "
        f"{summary['live_view_fraction']:.3%} of the step (target < 1%)"
    )
    print(
        f"step / (max(generation, scoring) + update) = {summary['step_seconds']:.2f} / "
        f"{ideal:.2f} = {summary['overlap_ratio']:.2f}x (target <= 1.1x)"
    )
    out = {"args": vars(args), "rfai": summary, "rfai_steps": runs, "warmup_steps": warm}

    if args.peer:
        from bench.peer_mlx_lm_lora import run_peer_grpo

        peer = run_peer_grpo(
            path,
            batch_size=args.batch_size,
            group_size=args.group_size,
            max_new_tokens=args.max_new_tokens,
            steps=args.steps,
            warmup_steps=args.warmup,
            beta=args.beta,
            ignore_eos=True,
        )
        rows = [
            ["seconds per step", f"{summary['step_seconds']:.2f}", f"{peer.seconds_per_step:.2f}"],
            [
                "generation seconds per step",
                f"{summary['generation_seconds']:.2f}",
                f"{peer.generation_seconds_per_step or float('nan'):.2f}",
            ],
            [
                "generated tokens per step",
                f"{summary['generated_tokens']:.0f}",
                f"{peer.generated_tokens_per_step:.0f}",
            ],
            [
                "end-to-end tokens/s",
                f"{summary['tokens_per_second']:.0f}",
                f"{peer.tokens_per_second:.0f}",
            ],
        ]
        print_table(f"rfai vs {peer.peer}, same model and shapes", ["", "rfai", "peer"], rows)
        ratio = summary["tokens_per_second"] / peer.tokens_per_second
        print(f"ratio rfai / peer end-to-end tokens/s: {ratio:.2f}x (target >= 10x)")
        out["peer"] = peer.__dict__
        out["ratio_vs_peer"] = ratio
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
