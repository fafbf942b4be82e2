"""The student: an mlx-lm model with trainable adapters, its chat prompts, and its reference.

Its prompt is the chat of `rfai.prompts`, the one the teacher is given too.

Loading is `mlx_lm.load` (a Hub id or a local folder) and the adapters are mlx-lm's own LoRA
and DoRA layers (`linear_to_lora_layers`), so checkpoints load with
`mlx_lm.generate --adapter-path`.

The KL reference is "the same model with the adapter switched off". Rather than a second copy
of the model, rfai keeps the trainable parameters as they were right after the adapters were
attached: LoRA's and DoRA's `lora_b` start at zero (and DoRA's magnitude at the base weight's
norm), so swapping those values in turns the adapter into an exact identity. For full
fine-tuning the same snapshot is a copy of the base weights, the only case that costs memory.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from rfai.config import StudentConfig
from rfai.prompts import LANGUAGES, solution_messages
from scorers.task import Task

# An adapter folder in mlx-lm's format (`mlx_lm.generate --adapter-path`); rfai.hub uploads
# these files and rfai.checkpoint saves them with every checkpoint.
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class StudentLoadError(RuntimeError):
    """The student model could not be loaded; the message says how to fix it."""


@dataclass
class Student:
    model: nn.Module
    tokenizer: Any  # mlx_lm.tokenizer_utils.TokenizerWrapper
    config: StudentConfig
    reference_params: list[tuple[str, mx.array]]
    quantized: bool
    _prompt_cache: dict[str, list[int]] = field(default_factory=dict)

    def prompt_tokens(self, task: Task) -> list[int]:
        """Chat-templated prompt token ids for a task (cached per task id)."""
        cached = self._prompt_cache.get(task.task_id)
        if cached is None:
            messages = solution_messages(task, self.config.system_prompt)
            # Render to text, then encode without extra specials: the template already holds
            # them, and some transformers versions return a dict when asked to tokenize.
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            cached = self.tokenizer.encode(text, add_special_tokens=False)
            self._prompt_cache[task.task_id] = cached
        return cached

    def answer_tokens(self, task: Task, code: str) -> tuple[int, ...]:
        """`code` as the student's own answer to `task`: the one fenced block its prompt asks
        for (`rfai.prompts`), in its tokens, ending with its end-of-turn token, as a sampled
        completion that stopped would. Teacher members of guided groups are built with it."""
        fence = LANGUAGES[task.language][1]
        ids = self.tokenizer.encode(f"```{fence}\n{code.strip()}\n```", add_special_tokens=False)
        return (*ids, self.tokenizer.eos_token_id)

    def trainable_parameters(self) -> dict[str, mx.array]:
        return dict(tree_flatten(self.model.trainable_parameters()))

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Within the block the model is the reference policy (adapter at identity)."""
        current = list(self.trainable_parameters().items())
        self.model.update(tree_unflatten(self.reference_params))
        try:
            yield
        finally:
            self.model.update(tree_unflatten(current))

    def can_fuse(self) -> bool:
        """Whether `adapter_fused` changes anything: adapters over unquantized weights."""
        return not self.quantized and self.config.adapter.fine_tune_type != "full"

    @contextlib.contextmanager
    def adapter_fused(self) -> Iterator[None]:
        """Within the block every adapted layer is one plain linear layer W + scale * B^T A^T.

        Decoding then runs at the base model's speed (each LoRA layer otherwise adds two small
        matmuls per token per layer). The merged weights differ from the adapter forward by
        the dtype's rounding only; the trainer logs the resulting log-prob gap
        (`logprob_mismatch`). Quantized bases are left as they are: re-quantizing W + delta
        would change the policy, not just round it.
        """
        if not self.can_fuse():
            yield
            return
        from mlx_lm.tuner.dora import DoRALinear
        from mlx_lm.tuner.lora import LoRALinear

        originals, fused = [], []
        for name, module in self.model.named_modules():
            if isinstance(module, LoRALinear) and type(module.linear) is nn.Linear:
                base = module.linear
                delta = (module.scale * module.lora_b.T) @ module.lora_a.T  # (out, in)
                weight = base.weight + delta.astype(base.weight.dtype)
                bias = base.bias if "bias" in base else None
                fused.append((name, _MergedLinear(weight, bias)))
                originals.append((name, module))
            elif isinstance(module, DoRALinear | LoRALinear):
                fused.append((name, module.fuse()))
                originals.append((name, module))
        self.model.update_modules(tree_unflatten(fused))
        mx.eval(self.model.parameters())
        try:
            yield
        finally:
            self.model.update_modules(tree_unflatten(originals))

    def adapter_config(self) -> dict[str, Any]:
        """`adapter_config.json` in the shape `mlx_lm.tuner.utils.load_adapters` reads."""
        cfg = self.config.adapter
        num_layers = len(self.model.layers) if cfg.num_layers == -1 else cfg.num_layers
        return {
            "fine_tune_type": cfg.fine_tune_type,
            "num_layers": num_layers,
            "lora_parameters": {
                "rank": cfg.rank,
                "scale": cfg.scale,
                "dropout": cfg.dropout,
                "keys": list(cfg.keys) if cfg.keys is not None else None,
            },
            "model": self.config.path,
        }

    def save_adapter(self, folder: str | Path) -> None:
        """Write the adapter (or full trainable weights) in mlx-lm's format into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(folder / ADAPTER_WEIGHTS), self.trainable_parameters())
        (folder / ADAPTER_CONFIG).write_text(json.dumps(self.adapter_config(), indent=2))

    def load_adapter(self, folder: str | Path) -> None:
        """Load weights written by `save_adapter` into the already-adapted model."""
        weights = mx.load(str(Path(folder) / ADAPTER_WEIGHTS))
        expected = self.trainable_parameters()
        if set(weights) != set(expected):
            missing = sorted(set(expected) - set(weights))[:3]
            extra = sorted(set(weights) - set(expected))[:3]
            raise ValueError(
                f"adapter in {folder} does not match the student's adapter layout "
                f"(missing {missing}, unexpected {extra}); was it trained with other "
                "student.adapter settings?"
            )
        # Same names but other shapes (another rank) would otherwise load without complaint
        # and fail later inside a matmul, far from the cause.
        wrong_shape = [
            f"{name}: file {tuple(weights[name].shape)}, student {tuple(value.shape)}"
            for name, value in expected.items()
            if weights[name].shape != value.shape
        ]
        if wrong_shape:
            raise ValueError(
                f"adapter in {folder} has other shapes than the student's adapter "
                f"({'; '.join(wrong_shape[:3])}); was it trained with another "
                "student.adapter.rank or another model?"
            )
        self.model.update(tree_unflatten(list(weights.items())))
        mx.eval(self.model.parameters())


def tasks_that_fit(
    student: Student, tasks: list[Task], max_new_tokens: int, split: str, log
) -> list[Task]:
    """`tasks` whose chat-templated prompt plus `max_new_tokens` fits the model's context
    (`max_position_embeddings` of its config); each other task is logged, naming it and its
    size, and left out. A prompt whose characters alone prove it too long (each token covers
    at most the longest vocabulary entry's bytes) is left out without being tokenized, so a
    10 MB prompt costs no tokenizer time or memory."""
    limit = getattr(getattr(student.model, "args", None), "max_position_embeddings", None)
    if not limit:
        return list(tasks)
    budget = limit - max_new_tokens
    longest = max((len(t) for t in student.tokenizer.get_vocab()), default=1)
    kept = []
    for task in tasks:
        if len(task.prompt) > budget * longest:
            size = (
                f"{len(task.prompt):,} characters, at least {len(task.prompt) // longest:,} tokens"
            )
        else:
            n = len(student.prompt_tokens(task))
            if n <= budget:
                kept.append(task)
                continue
            size = f"{n:,} tokens with the chat template"
        log(
            f"{split}: task {task.task_id} ({task.source}) left out: its prompt is {size}, "
            f"which with rollout.max_new_tokens {max_new_tokens} exceeds the model's context "
            f"of {limit:,} tokens; shorten it or lower rollout.max_new_tokens"
        )
    return kept


class _MergedLinear(nn.Linear):
    """nn.Linear around given arrays (nn.Linear's own __init__ would draw random weights)."""

    def __init__(self, weight: mx.array, bias: mx.array | None) -> None:
        nn.Module.__init__(self)
        self.weight = weight
        if bias is not None:
            self.bias = bias


def _is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())


def _looks_like_local_path(path: str) -> bool:
    """A Hub id is `name` or `org/name`; anything else can only be a folder."""
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path


def _missing_folder_hint(path: str) -> str:
    """What is there instead of the folder `path`: its closest sibling, or the nearest
    existing folder above it and what that holds ("" when that is only the working folder)."""
    target = Path(path).expanduser()
    parent = target.parent
    while not parent.is_dir() and parent != parent.parent:
        target, parent = parent, parent.parent
    try:
        folders = sorted(p.name for p in parent.iterdir() if p.is_dir())
    except OSError:  # not there, or not readable: nothing to suggest
        folders = []
    close = difflib.get_close_matches(target.name, folders, n=1, cutoff=0.8)
    if close:
        return f" (did you mean {parent / close[0]}?)"
    if str(parent) == ".":
        return ""
    listed = ", ".join(folders[:6]) + (", ..." if len(folders) > 6 else "")
    return f" ({str(parent).rstrip('/')}/ holds {listed or 'no folder'})"


def _load_error_message(path: str, exc: Exception) -> str:
    """One line: where rfai looked for `path` and what to do, for the path that was asked."""
    cause = " ".join(f"{type(exc).__name__}: {exc}".split())
    if Path(path).expanduser().exists():
        return (
            f"Could not load the student model from the local folder {path} ({cause}); it must "
            "hold an mlx_lm model: config.json, the *.safetensors weights and the tokenizer files"
        )
    missing = f"there is no such local folder{_missing_folder_hint(path)}"
    relative = "" if Path(path).expanduser().is_absolute() else f", relative to {Path.cwd()}"
    check = f"check the path given as --model (student.path{relative})"
    if _looks_like_local_path(path):
        # mlx_lm.load takes any missing path for a Hub id, so its own error is about an
        # invalid repo id; the user meant a folder.
        return (
            f"Could not load the student model {path}: {missing}, and it is not a Hub id "
            f"either (those are NAME or ORG/NAME); {check}"
        )
    # Both readings failed: say both (the cause also covers a broken copy in the Hub cache).
    tried = f"and as a Hugging Face Hub id it could not be fetched ({cause})"
    if "/" in path and Path(path).parent.is_dir():
        # `models/nonexistent` next to an existing `models/`: surely a folder that is not there.
        return f"Could not load the student model {path}: {missing}, {tried}; {check}"
    name = path.rsplit("/", 1)[-1]
    return (
        f"Could not load the student model {path}: {missing}, {tried}. For a folder, {check}; "
        f"for a Hub id, check its spelling "
        f"(https://huggingface.co/{path}) and the network, or download it where there is "
        f"network (`huggingface-cli download {path} --local-dir models/{name}`) and pass "
        f"`--model models/{name}`"
    )


def load_model_and_tokenizer(path: str, revision: str | None, trust_remote_code: bool):
    """`mlx_lm.load` with an error that says what to do when the model is not reachable."""
    from mlx_lm import load

    try:
        return load(path, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:
        # Any failure here (no network, unknown repo, missing files) ends the run; the
        # original exception is chained so nothing is hidden.
        raise StudentLoadError(_load_error_message(path, exc)) from exc


def load_student(config: StudentConfig, seed: int = 0) -> Student:
    """Load the student and attach trainable adapters as `config.adapter` says."""
    model, tokenizer = load_model_and_tokenizer(
        config.path, config.revision, config.trust_remote_code
    )
    return prepare_student(model, tokenizer, config, seed)


def prepare_student(
    model: nn.Module, tokenizer: Any, config: StudentConfig, seed: int = 0
) -> Student:
    """Attach adapters to an already loaded mlx-lm model (benchmarks build random ones)."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    quantized = _is_quantized(model)
    adapter = config.adapter
    if adapter.fine_tune_type == "full":
        if quantized:
            raise StudentLoadError(
                f"student.adapter.fine_tune_type is 'full' but {config.path} is quantized; "
                "quantized weights cannot be trained directly. Use 'lora' or 'dora', or a "
                "non-quantized model."
            )
        model.unfreeze()
    else:
        model.freeze()
        mx.random.seed(seed)  # LoRA's A matrices are random; make them reproducible
        lora_parameters = {"rank": adapter.rank, "scale": adapter.scale, "dropout": adapter.dropout}
        if adapter.keys is not None:
            lora_parameters["keys"] = list(adapter.keys)
        linear_to_lora_layers(
            model,
            len(model.layers) if adapter.num_layers == -1 else adapter.num_layers,
            lora_parameters,
            use_dora=adapter.fine_tune_type == "dora",
        )
    trainable = tree_flatten(model.trainable_parameters())
    if not trainable:
        raise StudentLoadError(
            f"no trainable parameters after attaching the adapter: student.adapter.keys "
            f"{adapter.keys} matched no layer of {config.path}"
        )
    # A copy: optimizer updates replace these arrays, the snapshot must keep the originals.
    reference = [(name, mx.array(value)) for name, value in trainable]
    mx.eval([v for _, v in reference], model.parameters())
    return Student(
        model=model,
        tokenizer=tokenizer,
        config=config,
        reference_params=reference,
        quantized=quantized,
    )
