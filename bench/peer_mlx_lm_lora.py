"""Peer GRPO throughput: the PyPI package `mlx-lm-lora` (5.10.2) on rfai's workload.

`bench/step.py --peer` uses `run_peer_grpo` to time mlx-lm-lora's own GRPO training loop on the
same model, number of prompts B (`batch_size`), group size G and completion length L
(`max_new_tokens`) as rfai, and reports the peer's end-to-end generated tokens per second.
mlx-lm-lora is an optional dependency (extra `bench`); it is imported only inside
`run_peer_grpo`, so importing this module does not need it.

How the peer is driven (as a library, the way its CLI `mlx_lm_lora.train` does for
`--train-mode grpo`):

- Model: `mlx_lm.load(model_path)`, then `model.freeze()` and mlx-lm's
  `linear_to_lora_layers(model, -1, {"rank": 16, "dropout": 0.0, "scale": 10.0})`: LoRA on
  every linear layer of every block (num_layers -1, the CLI default), rank 16, the CLI's default
  scale 10.0 and dropout 0.0. This is exactly what `mlx_lm_lora.utils.from_pretrained` does for
  `--train-type lora`; that helper is not called because it also imports transformers'
  `AutoProcessor`, huggingface_hub and mlx-lm's gguf writer, which the bench does not need.
- Reference model: as the CLI's `load_reference_model`, a second `mlx_lm.load(model_path)`,
  frozen, when `beta != 0` (the peer's default beta is 0.1; rfai's is 0.04; any non-zero beta
  costs the same extra reference forward pass). With `beta == 0` no reference model is loaded
  and the peer skips reference scoring.
- Data: `mlx_lm_lora.trainer.datasets.GRPODataset` over exactly B records
  `{"prompt": <coding question>, "answer": "", "system": <one-line system prompt>}` (the
  prompts cycle through `prompts`, default a fixed list of 8 coding questions), wrapped in its
  `CacheDataset` as the CLI does. GRPODataset applies the tokenizer's chat template with
  `add_generation_prompt=True`. With exactly B examples every iteration trains the same B
  prompts (its `iterate_grpo_batches` only permutes batch order).
- Reward: one cheap programmatic function, `peer_length_reward` (completion characters / 1000),
  passed as `reward_funcs=[...]`, so a step measures generation + loss + update, not scoring.
- Optimizer: `mlx.optimizers.Adam(learning_rate=1e-5)`, the CLI defaults.
- Training args: `GRPOTrainingArgs(batch_size=B, group_size=G, max_completion_length=L,
  iters=warmup_steps + steps, beta=beta, steps_per_report=1, ...)`; sampling keeps the peer's
  defaults (temperature 0.8, top_p 0.95, top_k 20, min_p 0), loss "grpo", token-level
  importance sampling, no gradient checkpointing, no gradient accumulation, no validation set.
  Saving is pushed past the run; train_grpo still writes its final adapter file, into a
  temporary directory that is removed afterwards.
- The loop: `mlx_lm_lora.trainer.grpo_trainer.train_grpo(...)`, one call running
  `warmup_steps + steps` iterations. Its output (progress bar and per-iteration report) goes
  to stderr, so `main()` prints only the JSON result on stdout.

What one peer step is, and what is timed. Each `train_grpo` iteration: fetch the batch;
`generate_grpo` (mlx-lm `BatchGenerator`, B*G sequences but with
`completion_batch_size=prefill_batch_size=B`, i.e. only B sequences decode at a time, from a
shared per-prompt prefix cache); rewards and group advantages on the CPU; the loss and gradient
in G microbatches of B rows (policy + reference forward, backward); a finiteness check (`.item()`);
`optimizer.update`; `mx.eval` of model/optimizer state; then (with `steps_per_report=1`) its
report, which syncs a few scalars and calls the training callback. Wall time of step k is the
time between the k-1-th and k-th `on_train_loss_report` callbacks (for k = 1: from the start of
the first `generate_grpo` call), measured with `time.perf_counter`. Everything in the
iteration is included; the per-iteration report is the only thing added by this harness (the
CLI's default reports every 10 steps), and it costs a few scalar syncs and one `tqdm.write`.
The first `warmup_steps` iterations (graph compilation, allocator warm-up) are dropped.

Generation is timed separately by replacing the module global
`mlx_lm_lora.trainer.grpo_trainer.generate_grpo` (which `train_grpo` looks up at call time)
with a wrapper that calls the original and times it; the original returns plain token lists
turned into arrays, so its work is complete when it returns. The global is restored afterwards.

Token counting: generated tokens of a step = `sum(c.size for c in completions)` over the
completions `generate_grpo` returns: the sampled token IDs per sequence, including the stop
token when one was sampled (the peer trains on it too), never more than L per sequence. The
same numbers feed the peer's own "average_generated_tokens" metric.

Completion length: `max_completion_length = L` is the peer's only length control; it stops a
sequence at the tokenizer's EOS ids and at its `end_answer_token` (default `"</answer>"`, kept
as the CLI has it). With `ignore_eos=True` the wrapper hands `generate_grpo` a tokenizer view
whose `eos_token_ids` is empty and an empty `end_token`, so every sequence runs to exactly L
tokens (use it to compare against a run of rfai forced to full length; random tiny models
rarely emit EOS anyway).

Reported: `seconds_per_step` is the median step wall time; `generated_tokens_per_step` the mean
over timed steps; `tokens_per_second` = total generated tokens / total wall time of the timed
steps; `generation_seconds_per_step` the median `generate_grpo` time.

CLI: `python bench/peer_mlx_lm_lora.py --model DIR --batch-size 4 --group-size 4
--max-new-tokens 32 --steps 2` prints the `PeerResult` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PEER_PACKAGE = "mlx-lm-lora"
PEER_VERSION = "5.10.2"

LORA_RANK = 16
LORA_SCALE = 10.0  # mlx-lm-lora's CLI default ("lora_parameters")
LEARNING_RATE = 1e-5  # mlx-lm-lora's CLI default

SYSTEM_PROMPT = "You are a helpful assistant that writes correct, concise Python code."

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Write a Python function `is_palindrome(s: str) -> bool` that ignores case and spaces.",
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "Write a Python function `flatten(xs)` that flattens an arbitrarily nested list.",
    "Write a Python function that counts the vowels in a string.",
    "Write a Python function `merge_sorted(a, b)` that merges two sorted lists in O(n).",
    "Write a Python function that returns the prime numbers below n (sieve of Eratosthenes).",
    "Write a Python function `word_freq(text)` returning a dict of word -> count.",
    "Write a Python function that checks whether a string of brackets is balanced.",
)


@dataclass(frozen=True)
class PeerResult:
    steps: int
    seconds_per_step: float  # median wall time of a full training step (generation+loss+update)
    generated_tokens_per_step: float
    tokens_per_second: float  # generated tokens / wall second, end to end
    generation_seconds_per_step: float | None  # median time inside the peer's generate_grpo
    step_seconds: tuple[float, ...] = ()  # each timed step's wall time
    generation_seconds: tuple[float, ...] = ()  # each timed step's generate_grpo time
    generated_tokens: tuple[int, ...] = ()  # each timed step's generated tokens
    peer: str = f"{PEER_PACKAGE}=={PEER_VERSION}"


def peer_length_reward(prompts, completions, answer, types=None) -> list[float]:
    """Cheap programmatic reward: completion length in thousands of characters."""
    return [len(c) / 1000.0 for c in completions]


class _NoEosTokenizer:
    """A view of a tokenizer with no EOS ids, so the peer's generation never stops early."""

    eos_token_ids: frozenset[int] = frozenset()

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def _installed_peer_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PEER_PACKAGE)
    except PackageNotFoundError:
        return None


def run_peer_grpo(
    model_path: str,
    *,
    batch_size: int,
    group_size: int,
    max_new_tokens: int,
    steps: int,
    warmup_steps: int = 1,
    prompts: list[str] | None = None,
    seed: int = 0,
    beta: float = 0.1,
    ignore_eos: bool = False,
) -> PeerResult:
    """Run mlx-lm-lora's GRPO loop for `warmup_steps + steps` iterations and time the last `steps`.

    See the module docstring for what a step contains and how tokens are counted.
    """
    if min(batch_size, group_size, max_new_tokens, steps) < 1:
        raise ValueError("batch_size, group_size, max_new_tokens and steps must be >= 1")
    if warmup_steps < 0:
        raise ValueError("warmup_steps must be >= 0")
    installed = _installed_peer_version()
    if installed is None:
        raise ImportError(
            f"{PEER_PACKAGE} is not installed: pip install '{PEER_PACKAGE}=={PEER_VERSION}' "
            "(rfai's optional extra `bench`)"
        )

    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm import load
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm_lora.trainer import grpo_trainer
    from mlx_lm_lora.trainer.datasets import CacheDataset, GRPODataset

    questions = list(prompts) if prompts else list(DEFAULT_PROMPTS)
    iters = warmup_steps + steps

    # The CLI seeds numpy in `run` and MLX in `train_model`.
    np.random.seed(seed)
    mx.random.seed(seed)

    model, tokenizer = load(model_path)
    model.freeze()
    linear_to_lora_layers(
        model, -1, {"rank": LORA_RANK, "dropout": 0.0, "scale": LORA_SCALE}, use_dora=False
    )
    ref_model = None
    if beta != 0:
        ref_model, _ = load(model_path)
        ref_model.freeze()

    records = [
        {"prompt": questions[i % len(questions)], "answer": "", "system": SYSTEM_PROMPT}
        for i in range(batch_size)
    ]
    train_set = CacheDataset(GRPODataset(records, tokenizer))

    gen_starts: list[float] = []
    gen_seconds: list[float] = []
    gen_tokens: list[int] = []
    report_times: list[float] = []
    original_generate = grpo_trainer.generate_grpo

    def timed_generate(*args: Any, **kwargs: Any):
        if ignore_eos:
            kwargs["tokenizer"] = _NoEosTokenizer(kwargs["tokenizer"])
            kwargs["end_token"] = ""
        start = time.perf_counter()
        completions, texts, batch_indices = original_generate(*args, **kwargs)
        gen_seconds.append(time.perf_counter() - start)
        gen_starts.append(start)
        gen_tokens.append(sum(int(c.size) for c in completions))
        return completions, texts, batch_indices

    class _StepClock(TrainingCallback):
        def on_train_loss_report(self, train_info: dict) -> None:
            report_times.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="peer_mlx_lm_lora_") as tmp:
        args = grpo_trainer.GRPOTrainingArgs(
            batch_size=batch_size,
            iters=iters,
            group_size=group_size,
            max_completion_length=max_new_tokens,
            beta=beta,
            steps_per_report=1,
            steps_per_eval=iters + 1,
            steps_per_save=iters + 1,
            adapter_file=str(Path(tmp) / "adapters.safetensors"),
        )
        grpo_trainer.generate_grpo = timed_generate
        try:
            with contextlib.redirect_stdout(sys.stderr):
                grpo_trainer.train_grpo(
                    model=model,
                    ref_model=ref_model,
                    tokenizer=tokenizer,
                    optimizer=optim.Adam(learning_rate=LEARNING_RATE),
                    train_dataset=train_set,
                    val_dataset=None,
                    reward_funcs=[peer_length_reward],
                    args=args,
                    training_callback=_StepClock(),
                )
        finally:
            grpo_trainer.generate_grpo = original_generate

    if len(report_times) != iters or len(gen_seconds) != iters:
        raise RuntimeError(
            f"expected {iters} iterations, saw {len(report_times)} reports and "
            f"{len(gen_seconds)} generations"
        )
    boundaries = [gen_starts[0], *report_times]
    step_seconds = [boundaries[k + 1] - boundaries[k] for k in range(iters)][warmup_steps:]
    timed_gen = gen_seconds[warmup_steps:]
    timed_tokens = gen_tokens[warmup_steps:]
    return PeerResult(
        steps=steps,
        seconds_per_step=statistics.median(step_seconds),
        generated_tokens_per_step=sum(timed_tokens) / steps,
        tokens_per_second=sum(timed_tokens) / sum(step_seconds),
        generation_seconds_per_step=statistics.median(timed_gen),
        step_seconds=tuple(step_seconds),
        generation_seconds=tuple(timed_gen),
        generated_tokens=tuple(timed_tokens),
        peer=f"{PEER_PACKAGE}=={installed}",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local model folder (mlx_lm.load)")
    parser.add_argument("--batch-size", type=int, required=True, help="prompts per step (B)")
    parser.add_argument("--group-size", type=int, required=True, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, required=True, help="completion length L")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=0.1, help="KL coefficient (0: no ref)")
    parser.add_argument(
        "--ignore-eos", action="store_true", help="generate exactly L tokens per sequence"
    )
    args = parser.parse_args(argv)
    result = run_peer_grpo(
        args.model,
        batch_size=args.batch_size,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        beta=args.beta,
        ignore_eos=args.ignore_eos,
    )
    print(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
