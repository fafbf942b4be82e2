"""A tiny Qwen2 model folder with random weights and a real BPE tokenizer, built offline.

Tests and the offline demo (`make demo`) need a model that `mlx_lm.load` opens like any
Hugging Face checkpoint, but there is no model hub here. `build_tiny_model` writes one:

- `config.json`, `generation_config.json`: a Qwen2 config (model_type "qwen2") whose
  `eos_token_id` is `<|im_end|>`, as in Qwen2.5-Instruct, so generation stops at end of turn.
- `model.safetensors` (+ index): random weights from mlx-lm's own qwen2 `Model`, seeded, so
  the same seed gives a byte-identical file.
- `tokenizer.json`, `tokenizer_config.json`: a byte-level BPE trained with `tokenizers` on a
  fixed set of Python standard-library files plus a built-in ChatML/markdown sample, with
  `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` as special tokens and a ChatML chat template.

The tokenizer uses Qwen2's exact pipeline (NFC, Qwen2's split regex, then ByteLevel without
its own regex), not plain GPT-2 ByteLevel: transformers 5 loads any model_type "qwen2"
folder with its `Qwen2Tokenizer`, which rebuilds that pipeline around our vocab and merges
and ignores the one in tokenizer.json. Training with the same pipeline keeps what we train,
what `tokenizers` loads and what `AutoTokenizer`/`mlx_lm.load` load identical.

What it does not promise: the same tokenizer across Python versions (the stdlib files
differ between 3.10 and 3.13), or weights that mean anything (outputs are random tokens).

CLI: `python -m rfai.tiny_model OUT_DIR [--seed N] [--overwrite]`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import mlx.core as mx
from mlx_lm.models import qwen2
from mlx_lm.utils import save_config, save_model
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Order fixes the ids: the BPE trainer gives special tokens the first ids, 0, 1, 2.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# Qwen2's ChatML template, without the tool-calling branches (the tiny model has no tools).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# Qwen2's pre-tokenizer regex, as in transformers' Qwen2Tokenizer (see module docstring).
_QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Pure-Python modules present in every CPython from 3.10 to 3.13.
CORPUS_STDLIB_FILES = (
    "textwrap.py",
    "heapq.py",
    "bisect.py",
    "string.py",
    "fractions.py",
    "statistics.py",
    "shlex.py",
    "colorsys.py",
)

# Chat-shaped text so that role names, newlines after them and ```python fences get merges
# of their own; repeated because the stdlib files outweigh it about 50 to 1.
_CHAT_SAMPLE = """<|im_start|>system
You are a helpful coding assistant.<|im_end|>
<|im_start|>user
Write a Python function `add(a, b)` that returns the sum of two numbers.<|im_end|>
<|im_start|>assistant
Here is the function:

```python
def add(a, b):
    return a + b
```

It returns `a + b`.<|im_end|>
<|im_start|>user
Write a function that reverses a string, with a test.<|im_end|>
<|im_start|>assistant
```python
def reverse(text: str) -> str:
    return text[::-1]


def test_reverse():
    assert reverse("abc") == "cba"
```
<|im_end|>
<|im_start|>user
## Task

Given a list of integers `nums`, return the largest one.

- The list is not empty.
- Use only the standard library.<|im_end|>
<|im_start|>assistant
```python
def largest(nums: list[int]) -> int:
    best = nums[0]
    for n in nums[1:]:
        if n > best:
            best = n
    return best
```<|im_end|>
"""
_CHAT_SAMPLE_REPEATS = 20
_SPECIAL_SPLIT = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def corpus_texts() -> Iterator[str]:
    """The tokenizer's training text: the stdlib files, then the chat sample.

    Special tokens are cut out of the chat sample, so no merges are spent on their pieces
    (`<|`, `im_`); they are added whole by the trainer.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in CORPUS_STDLIB_FILES:
        path = stdlib / name
        if not path.is_file():
            raise FileNotFoundError(
                f"tokenizer corpus file {path} is missing from this Python's standard library"
            )
        yield path.read_text(encoding="utf-8")
    for _ in range(_CHAT_SAMPLE_REPEATS):
        yield from (piece for piece in _SPECIAL_SPLIT.split(_CHAT_SAMPLE) if piece)


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """A byte-level BPE with exactly `vocab_size` tokens, specials at ids 0, 1, 2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes up front, so any text encodes (no unknown token is ever needed).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_texts(), trainer=trainer)
    # An embedding row with no token would let the random model sample an id that the
    # tokenizer cannot decode, so a short vocab is an error, not a silent mismatch.
    if tokenizer.get_vocab_size() != vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size}: the corpus only supports "
            f"{tokenizer.get_vocab_size()} tokens; choose a vocab_size at most that"
        )
    return tokenizer


def _model_config(
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    intermediate_size: int,
    vocab_size: int,
    special_ids: dict[str, int],
) -> dict:
    """config.json for a Qwen2 model; the fields are those of mlx-lm's qwen2.ModelArgs."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "intermediate_size": intermediate_size,
        "vocab_size": vocab_size,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "torch_dtype": "float32",
        "bos_token_id": special_ids[ENDOFTEXT],
        "eos_token_id": special_ids[IM_END],
    }


def _check_shape(hidden_size: int, num_heads: int, num_kv_heads: int, vocab_size: int) -> None:
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} is not a multiple of num_heads={num_heads}")
    if (hidden_size // num_heads) % 2:
        # RoPE rotates pairs of dimensions.
        raise ValueError(f"head dim hidden_size/num_heads={hidden_size // num_heads} must be even")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_vocab:
        raise ValueError(
            f"vocab_size={vocab_size} is below {min_vocab} (256 bytes + {len(SPECIAL_TOKENS)} "
            "special tokens)"
        )


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an empty folder, or a model folder with overwrite."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    # overwrite deletes the folder, so make sure it is one of ours, not a typo'd home dir.
    if not (out / "config.json").is_file():
        raise FileExistsError(
            f"refusing to overwrite {out}: it has no config.json, so it does not look like a "
            "model folder; delete it yourself if you mean it"
        )


def _write_tokenizer(folder: Path, tokenizer: Tokenizer) -> None:
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        # What Qwen2.5 checkpoints say; transformers 5 picks Qwen2Tokenizer for model_type
        # "qwen2" whatever is written here, and 4.x reads it as Qwen2TokenizerFast.
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "add_prefix_space": False,
        # transformers' default cleanup rewrites " ." to "." on decode; code must round-trip.
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 1024,
    overwrite: bool = False,
    model_vocab_size: int | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a tiny random Qwen2 model folder that `mlx_lm.load(out_dir)` opens.

    `model_vocab_size` makes the embedding larger than the tokenizer (as in real Qwen
    checkpoints, whose embedding is padded past the tokenizer): benchmarks use it with real
    model dimensions to get a random model of a real shape; ids past the tokenizer decode to
    "". `dtype` is the weights' dtype (float32, bfloat16 or float16).

    The folder is built next to `out_dir` and moved into place at the end, so `out_dir`
    never holds a half-written model. With `overwrite=True` an existing model folder
    (one with a config.json) is deleted first. Reseeds MLX's global random state.
    Returns `out_dir` as a Path.
    """
    out = Path(out_dir)
    _check_shape(hidden_size, num_heads, num_kv_heads, vocab_size)
    _check_target(out, overwrite)

    tokenizer = train_tokenizer(vocab_size)
    special_ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    config = _model_config(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        vocab_size=model_vocab_size or vocab_size,
        special_ids=special_ids,
    )
    if model_vocab_size is not None and model_vocab_size < vocab_size:
        raise ValueError(f"model_vocab_size={model_vocab_size} < vocab_size={vocab_size}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    config["torch_dtype"] = dtype
    # mlx-lm's own class, so parameter names and shapes are what its loader expects.
    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    model.set_dtype(getattr(mx, dtype))
    mx.eval(model.parameters())

    _write_model_folder(out, model, config, special_ids, tokenizer)
    return out


def _write_model_folder(
    out: Path, model: qwen2.Model, config: dict, special_ids: dict[str, int], tokenizer: Tokenizer
) -> None:
    """Write the model folder next to `out`, then move it into place (replacing `out`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        # mkdtemp makes the folder private (0o700); a model folder is ordinarily readable.
        staging.chmod(0o755)
        save_model(staging, model)
        save_config(dict(config), staging / "config.json")
        generation_config = {
            "bos_token_id": special_ids[ENDOFTEXT],
            "eos_token_id": special_ids[IM_END],
            "pad_token_id": special_ids[ENDOFTEXT],
        }
        (staging / "generation_config.json").write_text(
            json.dumps(generation_config, indent=2) + "\n"
        )
        _write_tokenizer(staging, tokenizer)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def count_parameters(model_dir: str | Path) -> int:
    """Number of weights in the folder's safetensors files."""
    return sum(
        array.size
        for path in sorted(Path(model_dir).glob("model*.safetensors"))
        for array in mx.load(str(path)).values()
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rfai.tiny_model",
        description="Build a tiny random Qwen2 model folder for tests and offline demos.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT_DIR if it already holds a model"
    )
    args = parser.parse_args(argv)
    try:
        out = build_tiny_model(args.out_dir, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        parser.error(str(err))  # usage errors: a message and exit status 2, no traceback
    print(f"{out}: {count_parameters(out):,} parameters")


if __name__ == "__main__":
    main()
