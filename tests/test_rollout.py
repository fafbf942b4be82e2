"""Rollout on the tiny model: sampled ids, behaviour log-probs and finish reasons are exact."""

import mlx.core as mx
import numpy as np
import pytest

from rfai.config import AdapterConfig, StudentConfig
from rfai.loss import token_logprobs
from rfai.rollout import generate_groups
from rfai.student import load_student


@pytest.fixture(scope="module")
def student(tiny_model_dir):
    s = load_student(StudentConfig(path=str(tiny_model_dir), adapter=AdapterConfig(rank=4)))
    s.model.eval()
    return s


def _forward_logprobs(model, prompt, completion, temperature):
    full = mx.array([list(prompt) + list(completion)])  # (1, P + L)
    logp = token_logprobs(model(full[:, :-1]), full[:, 1:], temperature)  # (1, P + L - 1)
    return np.array(logp[0, len(prompt) - 1 :])  # (L,) the completion's positions


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_behaviour_logprobs_match_a_teacher_forced_forward(student, temperature):
    tok = student.tokenizer
    prompts = [tok.encode("def add(a, b):"), tok.encode("# sort a list\nimport")]
    mx.random.seed(3)
    completions, logprobs, stats = generate_groups(
        student.model, tok, prompts, 3, max_new_tokens=12, temperature=temperature
    )
    assert len(completions) == 6
    assert [c.index for c in completions] == list(range(6))
    assert [(c.prompt_index, c.sample_index) for c in completions][:4] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
    ]
    assert stats.generated_tokens == sum(len(c.tokens) for c in completions)
    assert len(logprobs) == len(completions)
    for c, lp in zip(completions, logprobs, strict=True):
        assert len(c.tokens) == len(lp) >= 1
        expected = _forward_logprobs(student.model, prompts[c.prompt_index], c.tokens, temperature)
        # Incremental decoding with a KV cache vs one full forward: float32 round-off only.
        np.testing.assert_allclose(lp, expected, atol=2e-4)


class _ManyStops:
    """The real tokenizer, but with every third id a stop token, so that both finish
    reasons occur in a short run of a random model (P(no stop in 6 tokens) = (2/3)^6 ~ 9%)."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.eos_token_ids = set(range(0, tokenizer.vocab_size, 3))

    def decode(self, ids):
        return self._tok.decode(ids)


def test_finish_reasons_stop_tokens_and_text(student):
    tok = _ManyStops(student.tokenizer)
    prompts = [student.tokenizer.encode("x = 1")]
    mx.random.seed(0)
    completions, _, _ = generate_groups(
        student.model, tok, prompts, 32, max_new_tokens=6, temperature=1.0
    )
    for c in completions:
        if c.finish_reason == "length":
            assert len(c.tokens) == 6
            assert all(t not in tok.eos_token_ids for t in c.tokens)
            assert c.text == tok.decode(list(c.tokens))
        else:
            assert c.finish_reason == "stop"
            assert c.tokens[-1] in tok.eos_token_ids
            assert all(t not in tok.eos_token_ids for t in c.tokens[:-1])
            assert c.text == tok.decode(list(c.tokens[:-1]))
    assert {c.finish_reason for c in completions} == {"stop", "length"}


def test_on_complete_sees_every_completion_once(student):
    tok = student.tokenizer
    seen = []
    completions, _, _ = generate_groups(
        student.model,
        tok,
        [tok.encode("a"), tok.encode("b")],
        4,
        max_new_tokens=8,
        temperature=1.0,
        on_complete=seen.append,
    )
    assert sorted(c.index for c in seen) == list(range(8))
    by_index = {c.index: c for c in seen}
    for c in completions:
        assert by_index[c.index] is c  # built once, when it finished


def test_temperature_must_be_positive(student):
    with pytest.raises(ValueError, match="temperature"):
        generate_groups(
            student.model, student.tokenizer, [[1, 2]], 2, max_new_tokens=4, temperature=0
        )
