"""The student: mlx-lm loading, LoRA/DoRA/full adapters, the adapter-off reference, saving.

Every test loads the tiny random Qwen2 model (hidden 64, 2 layers, q/o 64->64, k/v 64->32,
MLP 64->128->64), so exact logits can be compared against a fresh `mlx_lm.load`.
"""

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from rfai.config import AdapterConfig, StudentConfig
from rfai.loss import token_logprobs
from rfai.prompts import solution_request
from rfai.student import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    StudentLoadError,
    load_student,
)
from scorers.task import Task

TOKENS = mx.array([[5, 17, 300, 42, 999, 7, 64, 128]])  # (1, 8) arbitrary ids < vocab 1024
TASK = Task(
    "py-add",
    "Write add(a, b) returning the sum.\n",
    "python",
    "add",
    ("assert add(1, 2) == 3",),
    None,
)
# qwen2 linear layers per block and their (input, output) dims in the tiny model.
LINEAR_DIMS = {
    "self_attn.q_proj": (64, 64),
    "self_attn.k_proj": (64, 32),
    "self_attn.v_proj": (64, 32),
    "self_attn.o_proj": (64, 64),
    "mlp.gate_proj": (64, 128),
    "mlp.up_proj": (64, 128),
    "mlp.down_proj": (128, 64),
}


def student_config(model_dir: Path, **adapter) -> StudentConfig:
    return StudentConfig(path=str(model_dir), adapter=AdapterConfig(**adapter))


def logits(model: nn.Module) -> mx.array:
    out = model(TOKENS)  # (1, 8, V)
    mx.eval(out)
    return out


@pytest.fixture(scope="module")
def base_logits(tiny_model_dir: Path) -> mx.array:
    model, _ = mlx_lm.load(str(tiny_model_dir))
    return logits(model)


def perturb(student, names: tuple[str, ...] = ("lora_b", "m")) -> None:
    """Give every trainable leaf whose name ends in `names` a random non-zero value."""
    mx.random.seed(123)
    new = [
        (k, v + mx.random.normal(v.shape) * 0.5)
        for k, v in student.trainable_parameters().items()
        if k.rsplit(".", 1)[-1] in names
    ]
    assert new, "nothing to perturb"
    student.model.update(tree_unflatten(new))
    mx.eval(student.model.parameters())


# -- LoRA layout ----------------------------------------------------------------------------


def test_lora_only_adapter_matrices_are_trainable(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir, rank=4))
    trainable = student.trainable_parameters()
    # Default keys = all 7 linear layers of each of the 2 blocks, each with lora_a and lora_b.
    assert len(trainable) == 2 * 7 * 2
    assert {name.rsplit(".", 1)[-1] for name in trainable} == {"lora_a", "lora_b"}
    for layer in range(2):
        for key, (d_in, d_out) in LINEAR_DIMS.items():
            prefix = f"model.layers.{layer}.{key}"
            assert trainable[f"{prefix}.lora_a"].shape == (d_in, 4)
            assert trainable[f"{prefix}.lora_b"].shape == (4, d_out)
            assert not trainable[f"{prefix}.lora_b"].any().item()  # identity at start
    assert not student.quantized
    # The reference snapshot is the trainable parameters at load time.
    assert [name for name, _ in student.reference_params] == list(trainable)


def test_lora_num_layers_adapts_the_last_blocks_only(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir, rank=2, num_layers=1))
    layers = {name.split(".")[2] for name in student.trainable_parameters()}
    assert layers == {"1"}  # mlx-lm adapts the LAST num_layers blocks
    assert student.adapter_config()["num_layers"] == 1
    assert load_student(student_config(tiny_model_dir)).adapter_config()["num_layers"] == 2


def test_lora_keys_restrict_the_adapted_modules(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir, rank=8, keys=("self_attn.q_proj",)))
    assert sorted(student.trainable_parameters()) == [
        f"model.layers.{i}.self_attn.q_proj.{leaf}"
        for i in range(2)
        for leaf in ("lora_a", "lora_b")
    ]
    assert student.trainable_parameters()["model.layers.0.self_attn.q_proj.lora_b"].shape == (8, 64)


def test_keys_matching_nothing_is_an_error(tiny_model_dir: Path) -> None:
    with pytest.raises(StudentLoadError, match=r"keys \('nope',\) matched no layer"):
        load_student(student_config(tiny_model_dir, keys=("nope",)))


def test_lora_at_load_equals_base_model(tiny_model_dir: Path, base_logits: mx.array) -> None:
    student = load_student(student_config(tiny_model_dir))
    assert mx.array_equal(logits(student.model), base_logits).item()


# -- the adapter-off reference --------------------------------------------------------------


@pytest.mark.parametrize("fine_tune_type", ["lora", "dora"])
def test_adapter_disabled_gives_base_logits_after_training(
    tiny_model_dir: Path, base_logits: mx.array, fine_tune_type: str
) -> None:
    student = load_student(student_config(tiny_model_dir, fine_tune_type=fine_tune_type))
    if fine_tune_type == "dora":
        assert {n.rsplit(".", 1)[-1] for n in student.trainable_parameters()} == {
            "lora_a",
            "lora_b",
            "m",
        }
    perturb(student)  # lora_b (and DoRA's magnitude m) no longer at identity
    trained = logits(student.model)
    assert not mx.allclose(trained, base_logits, atol=1e-3).item()
    with student.adapter_disabled():
        # float32 throughout; LoRA/DoRA at identity adds exact zeros, so only rounding of the
        # (zero) adapter branch can differ.
        assert mx.allclose(logits(student.model), base_logits, atol=1e-5).item()
    assert mx.array_equal(logits(student.model), trained).item()


def test_adapter_disabled_full_fine_tuning(tiny_model_dir: Path, base_logits: mx.array) -> None:
    student = load_student(student_config(tiny_model_dir, fine_tune_type="full"))
    trainable = student.trainable_parameters()
    assert len(trainable) == len(tree_flatten(student.model.parameters()))
    q = student.model.layers[0].self_attn.q_proj
    q.weight = q.weight + 0.5
    mx.eval(q.weight)
    trained = logits(student.model)
    assert not mx.allclose(trained, base_logits, atol=1e-3).item()
    with student.adapter_disabled():
        assert mx.array_equal(logits(student.model), base_logits).item()
    assert mx.array_equal(logits(student.model), trained).item()


def test_adapter_disabled_restores_even_when_the_block_raises(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir))
    perturb(student)
    trained = logits(student.model)
    with pytest.raises(KeyError), student.adapter_disabled():
        raise KeyError("boom")
    assert mx.array_equal(logits(student.model), trained).item()


# -- saving and loading adapters ------------------------------------------------------------


@pytest.mark.parametrize("fine_tune_type", ["lora", "dora", "full"])
def test_saved_adapter_loads_in_mlx_lm_with_same_logits(
    tiny_model_dir: Path, tmp_path: Path, fine_tune_type: str
) -> None:
    student = load_student(
        student_config(tiny_model_dir, fine_tune_type=fine_tune_type, rank=4, num_layers=1)
    )
    if fine_tune_type == "full":
        q = student.model.layers[1].self_attn.q_proj
        q.weight = q.weight * 1.5
    else:
        perturb(student)
    trained = logits(student.model)
    student.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / ADAPTER_WEIGHTS).is_file()
    assert (tmp_path / "adapter" / ADAPTER_CONFIG).is_file()

    model, _ = mlx_lm.load(str(tiny_model_dir), adapter_path=str(tmp_path / "adapter"))
    assert mx.allclose(logits(model), trained, atol=1e-5).item()


def test_saved_adapter_works_with_mlx_lm_generate_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The user-facing promise: `mlx_lm.generate --adapter-path` accepts what rfai saves.
    student = load_student(student_config(tiny_model_dir, rank=4))
    perturb(student)
    student.save_adapter(tmp_path / "adapter")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(tiny_model_dir),
            "--adapter-path",
            str(tmp_path / "adapter"),
            "--prompt",
            "hi",
            "--max-tokens",
            "5",
        ],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Generation:" in result.stdout


def test_load_adapter_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    trained = load_student(student_config(tiny_model_dir, fine_tune_type="dora"))
    perturb(trained)
    expected = logits(trained.model)
    trained.save_adapter(tmp_path)

    fresh = load_student(student_config(tiny_model_dir, fine_tune_type="dora"))
    assert not mx.allclose(logits(fresh.model), expected, atol=1e-3).item()
    fresh.load_adapter(tmp_path)
    assert mx.array_equal(logits(fresh.model), expected).item()


def test_load_adapter_with_other_layout_is_an_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    load_student(student_config(tiny_model_dir, keys=("self_attn.q_proj",))).save_adapter(tmp_path)
    student = load_student(student_config(tiny_model_dir))
    with pytest.raises(ValueError, match=r"missing .*was it trained with other student\.adapter"):
        student.load_adapter(tmp_path)


def test_regression_load_adapter_with_other_rank_is_an_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Bug: load_adapter compared only parameter NAMES, so a rank-8 adapter loaded into a
    # rank-4 student without complaint and broke later inside a matmul.
    load_student(student_config(tiny_model_dir, rank=8)).save_adapter(tmp_path)
    student = load_student(student_config(tiny_model_dir, rank=4))
    before = logits(student.model)
    with pytest.raises(ValueError, match=r"other shapes .*\(64, 8\).*\(64, 4\).*rank"):
        student.load_adapter(tmp_path)
    assert mx.array_equal(logits(student.model), before).item()


def test_adapter_config_is_what_mlx_lm_reads(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir, rank=3, scale=5.0, dropout=0.1))
    assert student.adapter_config() == {
        "fine_tune_type": "lora",
        "num_layers": 2,
        "lora_parameters": {"rank": 3, "scale": 5.0, "dropout": 0.1, "keys": None},
        "model": str(tiny_model_dir),
    }


# -- a quantized base -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quantized") / "q4"
    # group size 32 divides every input dim of the tiny model (64 and 128).
    mlx_lm.convert(
        hf_path=str(tiny_model_dir), mlx_path=str(out), quantize=True, q_bits=4, q_group_size=32
    )
    return out


def test_quantized_base_trains_lora(quantized_model_dir: Path) -> None:
    student = load_student(student_config(quantized_model_dir, rank=4))
    assert student.quantized
    assert isinstance(student.model.layers[0].self_attn.q_proj.linear, nn.QuantizedLinear)
    assert {n.rsplit(".", 1)[-1] for n in student.trainable_parameters()} == {"lora_a", "lora_b"}

    def loss_fn(model):
        return -token_logprobs(model(TOKENS[:, :-1]), TOKENS[:, 1:]).mean()

    loss, grads = nn.value_and_grad(student.model, loss_fn)(student.model)
    flat = dict(tree_flatten(grads))
    mx.eval(loss, flat)
    assert mx.isfinite(loss).item()
    assert set(flat) == set(student.trainable_parameters())
    # lora_b = 0, so d loss / d lora_b = (x @ lora_a)^T @ upstream is non-zero, while
    # d loss / d lora_a = x^T @ (upstream @ lora_b^T) * scale is exactly zero at the start.
    for name, grad in flat.items():
        if name.endswith("lora_b"):
            assert mx.abs(grad).max().item() > 0, name
        else:
            assert not grad.any().item(), name


def test_full_fine_tuning_of_quantized_base_is_an_error(quantized_model_dir: Path) -> None:
    with pytest.raises(StudentLoadError, match=r"quantized.*Use 'lora' or 'dora'"):
        load_student(student_config(quantized_model_dir, fine_tune_type="full"))


# -- load errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/nonexistent/rfai/model", "no such local folder"),
        ("./models/missing", "no such local folder"),
        ("rfai-test-org/does-not-exist", "as a Hugging Face Hub id it could not be fetched"),
    ],
)
def test_unreachable_model_says_where_it_looked(path: str, where: str) -> None:
    with pytest.raises(StudentLoadError) as info:
        load_student(StudentConfig(path=path))
    message = str(info.value)
    assert path in message and where in message
    assert "\n" not in message
    assert info.value.__cause__ is not None


def test_regression_model_hint_is_about_the_model_asked() -> None:
    # Issue 11, item 14: the hint always said `huggingface-cli download Qwen/Qwen2.5-Coder-0.5B`
    # and `--model models/qwen-coder`, whatever model was asked.
    with pytest.raises(StudentLoadError) as info:
        load_student(StudentConfig(path="rfai-test-org/some-coder"))
    message = str(info.value)
    assert "huggingface-cli download rfai-test-org/some-coder --local-dir models/some-coder" in (
        message
    )
    assert "--model models/some-coder" in message
    assert "Qwen" not in message and "qwen-coder" not in message


# -- prompts --------------------------------------------------------------------------------


def test_prompt_tokens_render_chatml_with_system_prompt(tiny_model_dir: Path) -> None:
    student = load_student(student_config(tiny_model_dir))
    ids = student.prompt_tokens(TASK)
    text = student.tokenizer.decode(ids)
    assert text == (
        f"<|im_start|>system\n{student.config.system_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{solution_request(TASK)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "Write add(a, b) returning the sum." in text
    # The markers are single special tokens, not spelled out in pieces.
    im_start = student.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(im_start) == 3
    assert student.prompt_tokens(TASK) is ids  # cached per task id


def test_prompt_tokens_without_system_prompt(tiny_model_dir: Path) -> None:
    config = StudentConfig(path=str(tiny_model_dir), system_prompt="")
    student = load_student(config)
    text = student.tokenizer.decode(student.prompt_tokens(TASK))
    assert text.startswith("<|im_start|>user\n")
    assert "system" not in text


@pytest.mark.parametrize(
    ("language", "fence", "name"),
    [("python", "python", "Python"), ("cpp", "cpp", "C++"), ("rust", "rust", "Rust")],
)
def test_solution_request_names_language_and_fence(language: str, fence: str, name: str) -> None:
    task = Task("t", "Do it.  \n\n", language, None, (), None)
    assert solution_request(task) == (
        f"Do it.\n\nWrite the complete solution in {name} in a single ```{fence} code block."
    )


def test_adapter_fused_matches_the_adapter_forward_and_restores_it(tiny_model_dir):
    from mlx_lm.tuner.lora import LoRALinear

    student = load_student(
        StudentConfig(path=str(tiny_model_dir), adapter=AdapterConfig(rank=4)), seed=0
    )
    # A trained-looking adapter: non-zero B everywhere.
    mx.random.seed(5)
    params = student.trainable_parameters()
    student.model.update(
        tree_unflatten(
            [
                (k, mx.random.normal(v.shape) * 0.05 if k.endswith("lora_b") else v)
                for k, v in params.items()
            ]
        )
    )
    x = mx.array([[3, 17, 250, 9, 41]])
    adapter_logits = student.model(x)
    assert student.can_fuse()
    with student.adapter_fused():
        assert not any(isinstance(m, LoRALinear) for _, m in student.model.named_modules())
        fused_logits = student.model(x)
    # float32 weights: merging is exact up to float32 rounding.
    np.testing.assert_allclose(np.array(fused_logits), np.array(adapter_logits), atol=1e-4)
    n_lora = sum(isinstance(m, LoRALinear) for _, m in student.model.named_modules())
    assert n_lora == 14  # 2 blocks x 7 linear layers, all adapters back after the block
    assert set(student.trainable_parameters()) == set(params)
    np.testing.assert_array_equal(np.array(student.model(x)), np.array(adapter_logits))
