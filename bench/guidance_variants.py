"""How the students of an all-fail guided group are weighted against the teacher member.

Teacher-guided groups (rfai/groups.py) add the teacher's passing answer to each group. When
every student failed, the group's mean and std come from the teacher alone, so each student
gets the same negative advantage (-0.45 for G=4 and one teacher member) and the teacher
+1.79. rfai's rule 1 sets those students' advantages to 0. This bench measures that rule
against its alternatives, from a weak start (the tiny random model, which fails everything):

    zeroed         rule 1: all-fail students' advantages set to 0 (rfai's default)
    raw            the students' negative advantages kept, as GRPO computes them
    x0.1           kept, times 0.1
    per-seq raw    kept, loss_type grpo (each sequence's token mean, then the mean over
                   sequences) instead of dapo (token-level over the batch): the teacher's short
                   answer then weighs as much as a long failed sample
    per-seq zeroed rule 1 under loss_type grpo
    guide x0.5     rule 1, every teacher member's advantage times 0.5 (a `guidance_weight`)
    guide x2       rule 1, teacher advantage times 2
    raw guide x4   students kept, teacher advantage times 4: a guidance weight instead of rule 1

Only all-fail groups change between variants (and the teacher weight everywhere): groups where
some student passed keep GRPO's advantages in all of them.

What runs: rfai's own pieces, not a copy of them. `rfai.rollout.generate_groups` samples G
completions per task in one batch; a completion passes when it reproduces the teacher's answer
token for token (the reference solution as the student's fenced answer, ending with its
end-of-turn token: `Student.answer_tokens`), reward 1 or 0; `rfai.groups.select_groups` and
`training_samples` build the guided groups (reference teacher, reward 1); the variant then
rewrites the advantages; `rfai.update.PolicyUpdater` makes the update. Tasks: the demo's
(configs/tiny_tasks.jsonl). No sandbox: exact reproduction is what the sandbox would pass on
the tiny model, and leaving it out keeps the bench to the question it asks. Every variant starts
from the same model and reseeds sampling per step, so variants differ only by their updates.

The pass rate at step s is the mean over steps s-4..s (B x G = 16 samples a step is noisy).

    python bench/guidance_variants.py [--steps 40] [--variants zeroed,raw] [--seed 0]

The default six variants take about 6 minutes on 2 CPU cores (40 steps).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx.core as mx
import numpy as np

from bench.common import print_table
from rfai.advantages import group_advantages
from rfai.config import AdapterConfig, GRPOConfig, StudentConfig, TrainingConfig
from rfai.groups import GroupSelection, select_groups, training_samples
from rfai.rollout import generate_groups
from rfai.student import load_student
from rfai.tasks import load_tasks
from rfai.tiny_model import build_tiny_model
from rfai.update import PolicyUpdater

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    student_scale: float  # all-fail students' advantages x this (0 = rule 1, 1 = kept)
    teacher_weight: float = 1.0  # every teacher member's advantage x this
    loss_type: str = "dapo"


VARIANTS = {
    "zeroed": Variant(0.0),
    "raw": Variant(1.0),
    "x0.1": Variant(0.1),
    "per-seq raw": Variant(1.0, loss_type="grpo"),
    "per-seq zeroed": Variant(0.0, loss_type="grpo"),
    "guide x0.5": Variant(0.0, teacher_weight=0.5),
    "guide x2": Variant(0.0, teacher_weight=2.0),
    "raw guide x4": Variant(1.0, teacher_weight=4.0),
}
# About 1 minute each at 40 steps on 2 CPU cores; the others with --variants.
DEFAULT_VARIANTS = ("zeroed", "raw", "x0.1", "per-seq raw", "guide x2", "raw guide x4")


def reweigh(
    sel: GroupSelection, rewards: list[float], group_size: int, grpo: GRPOConfig, v: Variant
) -> GroupSelection:
    """`sel` with the all-fail groups' student advantages recomputed as GRPO gives them, times
    `v.student_scale`, and every teacher advantage times `v.teacher_weight`."""
    advantages = list(sel.advantages)
    position = {index: k for k, index in enumerate(sel.indices)}
    for g in sel.teacher:
        students = rewards[g * group_size : (g + 1) * group_size]
        if len(set(students)) != 1:
            continue  # not all-fail: select_groups' advantages are GRPO's already
        members = [*students, 1.0]  # the reference teacher's reward (teacher_guidance 1)
        raw = group_advantages(
            mx.array(members, mx.float32), len(members), grpo.scale_rewards, grpo.advantage_eps
        ).tolist()
        for s in range(group_size):
            advantages[position[g * group_size + s]] = raw[s] * v.student_scale
    teacher = {g: a * v.teacher_weight for g, a in sel.teacher.items()}
    return replace(sel, advantages=advantages, teacher=teacher)


def run_variant(args, model_dir: Path, tasks, v: Variant) -> dict:
    student = load_student(
        StudentConfig(path=str(model_dir), adapter=AdapterConfig(fine_tune_type="full")), seed=0
    )
    student.model.eval()
    tok = student.tokenizer
    grpo = GRPOConfig(beta=0.0, loss_type=v.loss_type, teacher_guidance=1)
    G, B = args.group_size, len(tasks)
    training = TrainingConfig(
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        warmup_steps=0,
        micro_batch_size=B * (G + 1),
    )
    updater = PolicyUpdater(
        student, grpo, training, args.temperature, args.steps, max_new_tokens=args.max_new_tokens
    )
    prompts = [student.prompt_tokens(t) for t in tasks]
    answers = [student.answer_tokens(t, t.reference_solution) for t in tasks]
    pass_rates, teacher_probs = [], []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        mx.random.seed(args.seed * 100_003 + step)  # the same noise at step s in every variant
        completions, logprobs, _ = generate_groups(
            student.model, tok, prompts, G,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        )  # fmt: skip
        rewards = [float(c.tokens == answers[c.prompt_index]) for c in completions]
        sel = select_groups(rewards, [None] * len(rewards), G, grpo, [1.0] * B)
        sel = reweigh(sel, rewards, G, grpo, v)
        stats = updater.step(training_samples(sel, completions, logprobs, prompts, answers, 1))
        pass_rates.append(float(np.mean(rewards)))
        teacher_probs.append(stats.teacher_token_prob)
    return {
        "pass_rate": pass_rates,
        "teacher_token_prob": teacher_probs,
        "seconds": time.perf_counter() - start,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seeds sampling (step s: seed x 100003 + s)")
    p.add_argument("--tasks", default=str(REPO / "configs" / "tiny_tasks.jsonl"))
    p.add_argument("--model", help="a model folder (default: the tiny model, seed 0)")
    p.add_argument("--json-out", help="write every step's numbers here as JSON")
    args = p.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")

    model_dir = Path(args.model) if args.model else build_tiny_model(
        Path(tempfile.mkdtemp(prefix="rfai-bench-")) / "tiny", seed=0
    )  # fmt: skip
    tasks = load_tasks(args.tasks)
    results = {}
    for name in names:
        results[name] = run_variant(args, model_dir, tasks, VARIANTS[name])
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items()})}", file=sys.stderr)

    marks = [s for s in (10, 20, 30, 40, 60, 80) if s <= args.steps] or [args.steps]
    rows = []
    for name, r in results.items():
        rates = r["pass_rate"]
        first = next((i + 1 for i, x in enumerate(rates) if x >= 0.5), None)
        rows.append(
            [name]
            + [f"{np.mean(rates[max(s - 5, 0) : s]):.2f}" for s in marks]
            + [str(first or "-"), f"{r['teacher_token_prob'][-1]:.3f}", f"{r['seconds']:.0f}"]
        )
    title = (
        f"All-fail weighting of guided groups: tiny model, {len(tasks)} tasks x G="
        f"{args.group_size} + 1 teacher member, T={args.temperature}, Adam "
        f"{args.learning_rate:g} {args.lr_schedule}, {args.steps} steps, pass = the reference "
        f"reproduced (pass rate at step s: mean of steps s-4..s)"
    )
    header = ["variant", *(f"pass@{s}" for s in marks), "first >=0.5", "teacher tok p", "seconds"]
    print_table(title, header, rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
