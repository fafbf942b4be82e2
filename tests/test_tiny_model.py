"""The tiny model folder: loads with mlx-lm, tokenizes code exactly, generates, is reproducible."""

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx_lm
import pytest
from mlx_lm.generate import batch_generate
from mlx_lm.models import qwen2
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from rfai.tiny_model import (
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    build_tiny_model,
    count_parameters,
)

VOCAB_SIZE = 1024  # build_tiny_model's default

# Parameters of the default model (hidden 64, 2 layers, 4 heads of 16, 2 KV heads, MLP 128,
# vocab 1024, tied embeddings so no separate lm_head):
#   embed_tokens                          1024 * 64        = 65,536
#   per layer: q_proj  64*64 + 64 (bias)                   =  4,160
#              k_proj, v_proj  2 * (64*32 + 32)            =  4,160
#              o_proj  64*64 (no bias)                     =  4,096
#              gate, up, down  3 * 64*128                  = 24,576
#              input + post-attention RMSNorm  2 * 64      =    128
#              layer total                                 = 37,120; two layers = 74,240
#   final norm                                             =     64
#   total  65,536 + 74,240 + 64                            = 139,840
DEFAULT_PARAMETER_COUNT = 139_840

CODE_SNIPPET = (
    "```python\n"
    "def mean(xs: list[float]) -> float:\n"
    '\t"""Average; naïve — but fine for ≤ 10 ☃ values."""\n'
    "    return sum(xs) / len(xs)  \n"
    "\n\n"
    "print(mean([1.5, 2]) , 'ok' )\r\n"
    "```\n"
)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    return mlx_lm.load(str(tiny_model_dir))


def test_mlx_lm_load_gives_qwen2_with_fast_tokenizer(loaded, tiny_model_dir: Path) -> None:
    model, tokenizer = loaded
    assert isinstance(model, qwen2.Model)
    assert isinstance(tokenizer._tokenizer, PreTrainedTokenizerFast)
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token == ENDOFTEXT
    assert json.loads((tiny_model_dir / "config.json").read_text())["model_type"] == "qwen2"


def test_count_parameters_matches_hand_count(tiny_model_dir: Path) -> None:
    assert count_parameters(tiny_model_dir) == DEFAULT_PARAMETER_COUNT


def test_chat_template_renders_chatml(loaded) -> None:
    _, tokenizer = loaded
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write `f`."},
    ]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWrite `f`.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert no_prompt == prompt.removesuffix("<|im_start|>assistant\n")


def test_chat_template_saved_as_written(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE


def test_code_round_trips_exactly(loaded) -> None:
    _, tokenizer = loaded
    ids = tokenizer.encode(CODE_SNIPPET, add_special_tokens=False)
    assert tokenizer.decode(ids) == CODE_SNIPPET
    # The BPE learned something: fewer tokens than UTF-8 bytes, and the fence is one token.
    assert len(ids) < len(CODE_SNIPPET.encode()) / 2
    assert len(tokenizer.encode("```", add_special_tokens=False)) == 1


def test_loaded_tokenizer_matches_trained_tokenizer(loaded, tiny_model_dir: Path) -> None:
    # transformers 5 rebuilds the pre-tokenizer for model_type "qwen2" (Qwen2Tokenizer)
    # instead of reading tokenizer.json's; the ids must still be those we trained.
    _, tokenizer = loaded
    trained = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    text = CODE_SNIPPET + "<|im_start|>user\nhi<|im_end|>\n"
    assert tokenizer.encode(text, add_special_tokens=False) == trained.encode(text).ids


def test_special_tokens_are_single_ids(loaded) -> None:
    _, tokenizer = loaded
    # The trainer gives special tokens the first ids, in the order they were listed.
    for token_id, token in enumerate([ENDOFTEXT, IM_START, IM_END]):
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    # Inside text they are matched whole, never split into `<|`, `im`, ...
    ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert ids[0] == 1
    assert ids[-1] == 2
    assert 1 not in ids[1:-1]
    assert 2 not in ids[1:-1]


def test_eos_token_ids_contain_im_end(loaded) -> None:
    _, tokenizer = loaded
    assert tokenizer.convert_tokens_to_ids(IM_END) in tokenizer.eos_token_ids


def test_forward_gives_logits_over_vocab(loaded) -> None:
    model, tokenizer = loaded
    ids = tokenizer.encode(CODE_SNIPPET, add_special_tokens=False)
    logits = model(mx.array([ids]))
    assert logits.shape == (1, len(ids), VOCAB_SIZE)
    assert mx.all(mx.isfinite(logits)).item()


def test_batch_generate_produces_tokens(loaded) -> None:
    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a function."}], add_generation_prompt=True
    )
    max_tokens = 6
    response = batch_generate(
        model, tokenizer, [prompt, prompt[:3]], max_tokens=max_tokens, return_token_ids=True
    )
    assert len(response.token_ids) == 2
    for tokens in response.token_ids:
        assert 1 <= len(tokens) <= max_tokens
        assert all(0 <= t < VOCAB_SIZE for t in tokens)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = build_tiny_model(tmp_path / "first", seed=7)
    again = build_tiny_model(tmp_path / "again", seed=7)
    other = build_tiny_model(tmp_path / "other", seed=8)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_refuses_to_overwrite_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="taken"):
        build_tiny_model(target)
    # Even with overwrite, a folder without config.json is not deleted.
    with pytest.raises(FileExistsError, match=r"no config\.json"):
        build_tiny_model(target, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_model_folder(tmp_path: Path) -> None:
    target = build_tiny_model(tmp_path / "model", seed=0)
    old_weights = (target / "model.safetensors").read_bytes()
    (target / "stale.safetensors").write_bytes(b"from an older build")
    build_tiny_model(target, seed=1, overwrite=True)
    assert (target / "model.safetensors").read_bytes() != old_weights
    assert not (target / "stale.safetensors").exists()
    # The staging folder was moved into place, not left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_rejects_inconsistent_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_heads=3"):
        build_tiny_model(tmp_path / "bad", num_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        build_tiny_model(tmp_path / "bad", num_kv_heads=3)
    with pytest.raises(ValueError, match="only supports"):
        build_tiny_model(tmp_path / "bad", vocab_size=100_000)
    assert not (tmp_path / "bad").exists()


def test_cli_builds_and_prints_parameter_count(tmp_path: Path) -> None:
    out = tmp_path / "cli_model"
    done = subprocess.run(
        [sys.executable, "-m", "rfai.tiny_model", str(out), "--seed", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{out}: {DEFAULT_PARAMETER_COUNT:,} parameters"
    again = subprocess.run(
        [sys.executable, "-m", "rfai.tiny_model", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2
    assert "--overwrite" in again.stderr
