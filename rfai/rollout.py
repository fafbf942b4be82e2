"""Batched sampling of G completions per prompt in one `mlx_lm` `BatchGenerator` run.

What each completion keeps, and why:
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
    """One sampled completion.

    index: position in the flattened batch, prompt-major (prompt p, sample s -> p * G + s).
    tokens: (L,) sampled ids, including the final stop token when finish_reason == "stop".
    logprobs: (L,) behaviour log-probs of `tokens` under softmax(logits / temperature).
    """

    index: int
    prompt_index: int
    sample_index: int
    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
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
) -> tuple[list[Completion], RolloutStats]:
    """Sample `group_size` completions for each prompt in one batched generation call.

    `on_complete` is called with each completion as soon as it finishes, while the rest of
    the batch is still generating (the scoring pool uses it to overlap with generation).
    Returns the completions in index order and throughput statistics.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for GRPO sampling")
    flat_prompts = [list(p) for p in prompts for _ in range(group_size)]
    stop_ids = sorted(tokenizer.eos_token_ids)
    generator = BatchGenerator(
        model,
        max_tokens=max_new_tokens,
        stop_tokens=[[t] for t in stop_ids],
        sampler=make_sampler(temp=temperature),
        prefill_batch_size=prefill_batch_size,
        completion_batch_size=completion_batch_size,
    )
    inv_temp = 1.0 / temperature
    tokens: dict[int, list[int]] = {}
    # Per generation step: (uids in row order, (n,) lazy behaviour log-probs).
    step_logprobs: list[tuple[list[int], mx.array]] = []
    finished: dict[int, str] = {}
    start = time.perf_counter()
    try:
        uids = generator.insert(flat_prompts)
        index_of = {uid: i for i, uid in enumerate(uids)}
        tokens = {uid: [] for uid in uids}
        while responses := generator.next_generated():
            step_uids = [r.uid for r in responses]
            step_tokens = [r.token for r in responses]
            rows = mx.stack([r.logprobs for r in responses])  # (n, V) log softmax(logits)
            picked = mx.array(step_tokens)[:, None]  # (n, 1)
            if temperature == 1.0:
                values = mx.take_along_axis(rows, picked, axis=-1)[:, 0]  # (n,)
            else:
                scaled = rows * inv_temp  # (n, V) logits / T up to a per-row constant
                values = (
                    mx.take_along_axis(scaled, picked, axis=-1)[:, 0]  # (n,)
                    - mx.logsumexp(scaled, axis=-1)  # (n,)
                )
            mx.async_eval(values)
            step_logprobs.append((step_uids, values))
            for r in responses:
                tokens[r.uid].append(r.token)
                if r.finish_reason is not None:
                    finished[r.uid] = r.finish_reason
                    if on_complete is not None:
                        # Log-probs are gathered after the loop; scoring needs only the text.
                        on_complete(
                            _completion(
                                r.uid,
                                index_of,
                                tokens,
                                None,
                                r.finish_reason,
                                group_size,
                                tokenizer,
                            )
                        )
    finally:
        generator.close()
    seconds = time.perf_counter() - start

    logprobs: dict[int, list[float]] = {uid: [] for uid in tokens}
    for step_uids, values in step_logprobs:
        for uid, value in zip(step_uids, values.tolist(), strict=True):
            logprobs[uid].append(value)
    missing = [uid for uid in tokens if uid not in finished]
    if missing:
        raise RuntimeError(f"generation ended with {len(missing)} unfinished sequences")
    completions = [
        _completion(uid, index_of, tokens, logprobs[uid], finished[uid], group_size, tokenizer)
        for uid in sorted(tokens, key=index_of.__getitem__)
    ]
    stats = RolloutStats(
        prompt_tokens=sum(len(p) for p in flat_prompts),
        generated_tokens=sum(len(c.tokens) for c in completions),
        seconds=seconds,
    )
    return completions, stats


def _completion(
    uid: int,
    index_of: dict[int, int],
    tokens: dict[int, list[int]],
    logprobs: list[float] | None,
    finish_reason: str,
    group_size: int,
    tokenizer,
) -> Completion:
    ids = tokens[uid]
    text_ids = ids[:-1] if finish_reason == "stop" else ids
    index = index_of[uid]
    return Completion(
        index=index,
        prompt_index=index // group_size,
        sample_index=index % group_size,
        tokens=tuple(ids),
        logprobs=tuple(logprobs) if logprobs is not None else (),
        finish_reason=finish_reason,
        text=tokenizer.decode(text_ids),
    )
