"""Batched sampling of G completions per prompt in one `mlx_lm` `BatchGenerator` run.

What each completion keeps (a `Completion`, and its log-probs returned beside it), and why:
- the sampled token ids themselves (never a re-tokenisation of decoded text, which can differ
  and would train the model on tokens it did not produce);
- the behaviour log-probability of every sampled token under the temperature actually used,
  log softmax(logits / T)[token]: GRPO's importance ratio needs exactly the distribution
  that was sampled from. rfai samples with temperature only, no top-p/top-k, because those
  truncations would make the sampling distribution differ from softmax(logits / T);
- whether it stopped on an end-of-sequence token ("stop") or hit `max_new_tokens` ("length").
  A stop token is kept as the last training token (the model must learn to stop); it is not
  part of the decoded text.

The generator's per-step log-probability rows are full vocabulary vectors; gathering the
sampled token's value for the whole batch is one stacked op per step, evaluated
asynchronously so it never stalls the generator's own pipelining.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import make_sampler


@dataclass(frozen=True)
class Completion:
    """One sampled completion, built once, when its sequence finishes.

    index: position in the flattened batch, prompt-major (prompt p, sample s -> p * G + s).
    tokens: (L,) sampled ids, including the final stop token when finish_reason == "stop".
    Its (L,) behaviour log-probs are returned beside it by `generate_groups`: they are
    gathered after generation, when the completion has already gone to `on_complete`.
    """

    index: int
    prompt_index: int
    sample_index: int
    tokens: tuple[int, ...]
    finish_reason: str
    text: str


@dataclass(frozen=True)
class RolloutStats:
    prompt_tokens: int
    generated_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


def generate_groups(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    group_size: int,
    *,
    max_new_tokens: int,
    temperature: float,
    prefill_batch_size: int = 64,
    completion_batch_size: int = 256,
    on_complete: Callable[[Completion], None] | None = None,
) -> tuple[list[Completion], list[tuple[float, ...]], RolloutStats]:
    """Sample `group_size` completions for each prompt in one batched generation call.

    `on_complete` is called with each completion as soon as it finishes, while the rest of
    the batch is still generating (the scoring pool uses it to overlap with generation).
    Returns the completions in index order; their behaviour log-probs in the same order, (L,)
    each, log softmax(logits / temperature)[token] of every token; and throughput statistics.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for GRPO sampling")
    flat_prompts = [list(p) for p in prompts for _ in range(group_size)]
    generator = _batch_generator(
        model, tokenizer, max_new_tokens, temperature, prefill_batch_size, completion_batch_size
    )
    # Per generation step: (uids in row order, (n,) lazy behaviour log-probs).
    step_logprobs: list[tuple[list[int], mx.array]] = []
    finished: dict[int, Completion] = {}
    start = time.perf_counter()
    try:
        uids = generator.insert(flat_prompts)
        index_of = {uid: i for i, uid in enumerate(uids)}
        tokens: dict[int, list[int]] = {uid: [] for uid in uids}
        while responses := generator.next_generated():
            step_logprobs.append(
                ([r.uid for r in responses], _sampled_logprobs(responses, temperature))
            )
            for r in responses:
                tokens[r.uid].append(r.token)
                if r.finish_reason is not None:
                    finished[r.uid] = c = _completion(
                        index_of[r.uid], tokens[r.uid], r.finish_reason, group_size, tokenizer
                    )
                    if on_complete is not None:
                        on_complete(c)
    finally:
        generator.close()
    seconds = time.perf_counter() - start
    missing = len(tokens) - len(finished)
    if missing:
        raise RuntimeError(f"generation ended with {missing} unfinished sequences")
    # `uids` is in insertion order, i.e. index order.
    logprobs = _per_sequence(step_logprobs, uids)
    completions = [finished[uid] for uid in uids]
    generated = sum(len(c.tokens) for c in completions)
    stats = RolloutStats(sum(len(p) for p in flat_prompts), generated, seconds)
    return completions, [logprobs[uid] for uid in uids], stats


def _batch_generator(
    model: nn.Module,
    tokenizer,
    max_new_tokens: int,
    temperature: float,
    prefill_batch_size: int,
    completion_batch_size: int,
) -> BatchGenerator:
    """mlx-lm's batched generator, stopping on the tokenizer's end-of-sequence ids."""
    return BatchGenerator(
        model,
        max_tokens=max_new_tokens,
        stop_tokens=[[t] for t in sorted(tokenizer.eos_token_ids)],
        sampler=make_sampler(temp=temperature),
        prefill_batch_size=prefill_batch_size,
        completion_batch_size=completion_batch_size,
    )


def _sampled_logprobs(responses, temperature: float) -> mx.array:
    """(n,) behaviour log-probs of one step's sampled tokens, evaluated asynchronously."""
    rows = mx.stack([r.logprobs for r in responses])  # (n, V) log softmax(logits)
    picked = mx.array([r.token for r in responses])[:, None]  # (n, 1)
    if temperature == 1.0:
        values = mx.take_along_axis(rows, picked, axis=-1)[:, 0]  # (n,)
    else:
        scaled = rows * (1.0 / temperature)  # (n, V) logits / T up to a per-row constant
        values = (
            mx.take_along_axis(scaled, picked, axis=-1)[:, 0]  # (n,)
            - mx.logsumexp(scaled, axis=-1)  # (n,)
        )
    mx.async_eval(values)
    return values


def _per_sequence(
    step_logprobs: Sequence[tuple[list[int], mx.array]], uids: Sequence[int]
) -> dict[int, tuple[float, ...]]:
    """Each sequence's log-probs, from the per-step (uids, values) pairs."""
    out: dict[int, list[float]] = {uid: [] for uid in uids}
    for step_uids, values in step_logprobs:
        for uid, value in zip(step_uids, values.tolist(), strict=True):
            out[uid].append(value)
    return {uid: tuple(values) for uid, values in out.items()}


def _completion(
    index: int, ids: list[int], finish_reason: str, group_size: int, tokenizer
) -> Completion:
    text_ids = ids[:-1] if finish_reason == "stop" else ids
    return Completion(
        index=index,
        prompt_index=index // group_size,
        sample_index=index % group_size,
        tokens=tuple(ids),
        finish_reason=finish_reason,
        text=tokenizer.decode(text_ids),
    )
