"""rfai's configuration: nested frozen dataclasses, loaded strictly from YAML.

The dataclasses below are the single source of defaults; `config.yaml` documents every key
next to its value. Loading is strict in the way nanoGPT's overrides are: an unknown key, a
wrong type or an invalid value is a `ConfigError` that names the key path, the file and (for
keys read from YAML) the line, and says what would be accepted. Command-line overrides
(`--set section.key=value`) go through the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FINE_TUNE_TYPES = ("lora", "dora", "full")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
REWARD_RULES = ("ratio", "difference", "absolute")
TEACHER_BACKENDS = ("reference", "openai", "anthropic", "mlx")
LR_SCHEDULES = ("cosine", "constant")


class ConfigError(ValueError):
    """A configuration problem; the message names the key, the file and what to do."""


@dataclass(frozen=True)
class AdapterConfig:
    """How the student is trained: LoRA / DoRA adapters (mlx-lm's tuner) or all weights."""

    fine_tune_type: str = "lora"
    rank: int = 16
    scale: float = 20.0
    dropout: float = 0.0
    num_layers: int = -1
    keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _choice("student.adapter.fine_tune_type", self.fine_tune_type, FINE_TUNE_TYPES)
        _check(self.rank >= 1, "student.adapter.rank", "must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "student.adapter.dropout", "must be in [0, 1)")
        _check(
            self.num_layers == -1 or self.num_layers >= 1,
            "student.adapter.num_layers",
            "must be -1 (all layers) or >= 1",
        )


@dataclass(frozen=True)
class StudentConfig:
    path: str = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    revision: str | None = None
    trust_remote_code: bool = False
    system_prompt: str = (
        "You are an expert programmer. Write correct, efficient, well-documented code."
    )
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher's code comes from (rfai/teachers/); config.yaml documents each key."""

    backend: str = "reference"
    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    system_prompt: str = (
        "You are an expert programmer. Write correct, efficient, well-documented code."
    )
    temperature: float = 0.0
    max_tokens: int = 2048
    batch_size: int = 8
    write_tests: bool = False
    timeout_seconds: float = 120.0
    max_retries: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    concurrency: int = 4
    max_requests: int = 0
    max_total_tokens: int = 0
    cache_dir: str = "~/.cache/rfai/teacher"

    def __post_init__(self) -> None:
        _choice("teacher.backend", self.backend, TEACHER_BACKENDS)
        _check(
            self.backend == "reference" or bool(self.model.strip()),
            "teacher.model",
            f"must be set for backend {self.backend!r}: the API's model name, or for mlx a "
            "Hub id or local folder",
        )
        # The message never repeats the value: a key pasted here must not reach a log.
        _check(
            not self.api_key_env or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env),
            "teacher.api_key_env",
            "must be the NAME of an environment variable holding the key (e.g. "
            "OPENAI_API_KEY), never the key itself",
        )
        _check(self.temperature >= 0, "teacher.temperature", "must be >= 0 (0 = greedy)")
        _check(self.max_tokens >= 1, "teacher.max_tokens", "must be >= 1")
        _check(self.batch_size >= 1, "teacher.batch_size", "must be >= 1")
        _check(self.timeout_seconds > 0, "teacher.timeout_seconds", "must be > 0")
        _check(self.max_retries >= 0, "teacher.max_retries", "must be >= 0")
        _check(self.backoff_seconds >= 0, "teacher.backoff_seconds", "must be >= 0")
        _check(
            self.max_backoff_seconds >= self.backoff_seconds,
            "teacher.max_backoff_seconds",
            "must be >= teacher.backoff_seconds",
        )
        _check(self.concurrency >= 1, "teacher.concurrency", "must be >= 1")
        _check(self.max_requests >= 0, "teacher.max_requests", "must be >= 0 (0 = no limit)")
        _check(
            self.max_total_tokens >= 0, "teacher.max_total_tokens", "must be >= 0 (0 = no limit)"
        )


@dataclass(frozen=True)
class DataConfig:
    train_file: str = "builtin:python"
    validation_file: str | None = None
    evaluation_file: str | None = None
    shuffle: bool = True
    seed: int = 0
    strict: bool = False
    languages: tuple[str, ...] | None = None
    max_samples: int = 0
    curriculum: bool = False
    remove_overlap: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    dataset_language: str | None = None
    dataset_subset: str | None = None

    def __post_init__(self) -> None:
        from rfai.tasks import canonical_language  # rfai.tasks imports nothing of rfai

        for name in (*(self.languages or ()), self.dataset_language):
            if name is not None:
                try:
                    canonical_language(name)
                except ValueError as exc:
                    key = (
                        "data.languages"
                        if name in (self.languages or ())
                        else "data.dataset_language"
                    )
                    raise ConfigError(f"{key}: {exc}") from None
        _check(self.max_samples >= 0, "data.max_samples", "must be >= 0 (0 = all)")


@dataclass(frozen=True)
class RolloutConfig:
    batch_size: int = 8
    group_size: int = 8
    max_new_tokens: int = 512
    temperature: float = 1.0
    prefill_batch_size: int = 64
    completion_batch_size: int = 256
    fuse_adapter: bool = True

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "rollout.batch_size", "must be >= 1")
        _check(
            self.group_size >= 2,
            "rollout.group_size",
            "must be >= 2: group-relative advantages need at least two samples per task",
        )
        _check(self.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1")
        _check(
            self.temperature > 0,
            "rollout.temperature",
            "must be > 0: GRPO needs sampled, different completions within a group",
        )
        _check(self.prefill_batch_size >= 1, "rollout.prefill_batch_size", "must be >= 1")
        _check(self.completion_batch_size >= 1, "rollout.completion_batch_size", "must be >= 1")


@dataclass(frozen=True)
class GRPOConfig:
    scale_rewards: str = "group"
    advantage_eps: float = 1e-4
    drop_zero_variance_groups: bool = False
    mask_truncated_completions: bool = False
    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    beta: float = 0.04
    loss_type: str = "dapo"
    num_iterations: int = 1

    def __post_init__(self) -> None:
        _choice("grpo.scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _choice("grpo.loss_type", self.loss_type, LOSS_TYPES)
        _check(self.advantage_eps > 0, "grpo.advantage_eps", "must be > 0")
        _check(self.epsilon_low > 0, "grpo.epsilon_low", "must be > 0")
        _check(self.epsilon_high > 0, "grpo.epsilon_high", "must be > 0")
        _check(self.beta >= 0, "grpo.beta", "must be >= 0 (0 turns the KL term off)")
        _check(self.num_iterations >= 1, "grpo.num_iterations", "must be >= 1")


@dataclass(frozen=True)
class ScoringConfig:
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "correctness": 0.3,
            "code_quality": 0.3,
            "efficiency": 0.2,
            "documentation": 0.2,
        }
    )
    reward: str = "ratio"
    teacher_floor: float = 0.05
    reward_cap: float = 2.0
    workers: int = 0
    wall_seconds: float = 10.0
    cpu_seconds: float = 10.0
    memory_mb: int = 1024
    # Compilers for C++ / Rust tasks (found on PATH) and their flags; compiled programs are
    # cached under cache_dir ("" = $XDG_CACHE_HOME/rfai/compiled or ~/.cache/rfai/compiled),
    # at most compile_cache_mb MiB (least recently used evicted first; 0 = no cache).
    cxx: str = "g++"
    cxx_flags: tuple[str, ...] = ("-std=c++17", "-O2", "-Wall", "-Wextra", "-pipe")
    rustc: str = "rustc"
    rust_flags: tuple[str, ...] = ("--edition", "2021", "-C", "opt-level=2")
    cache_dir: str = ""
    compile_cache_mb: int = 2048  # scorers.compile_cache.DEFAULT_CACHE_MB

    def __post_init__(self) -> None:
        _choice("scoring.reward", self.reward, REWARD_RULES)
        _check(bool(self.weights), "scoring.weights", "must name at least one scorer")
        for name, weight in self.weights.items():
            _check(weight >= 0, f"scoring.weights.{name}", "must be >= 0")
        _check(sum(self.weights.values()) > 0, "scoring.weights", "must not all be 0")
        _check(0 < self.teacher_floor <= 1, "scoring.teacher_floor", "must be in (0, 1]")
        _check(self.reward_cap > 0, "scoring.reward_cap", "must be > 0")
        _check(self.workers >= 0, "scoring.workers", "must be >= 0 (0 = one per core)")
        _check(self.wall_seconds > 0, "scoring.wall_seconds", "must be > 0")
        _check(self.cpu_seconds > 0, "scoring.cpu_seconds", "must be > 0")
        _check(self.memory_mb >= 64, "scoring.memory_mb", "must be >= 64")
        known = ("correctness", "code_quality", "efficiency", "documentation")
        for name in self.weights:
            _check(name in known, f"scoring.weights.{name}", f"unknown scorer; one of {known}")
        _check(bool(self.cxx), "scoring.cxx", "must name a C++ compiler")
        _check(bool(self.rustc), "scoring.rustc", "must name rustc")
        _check(self.compile_cache_mb >= 0, "scoring.compile_cache_mb", "must be >= 0 (0 = off)")


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = 200
    learning_rate: float = 1e-5
    lr_schedule: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    micro_batch_size: int = 4
    grad_checkpoint: bool = False
    compile: bool = True
    seed: int = 0
    output_dir: str = "runs/default"

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "training.steps", "must be >= 1")
        _check(self.learning_rate > 0, "training.learning_rate", "must be > 0")
        _choice("training.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check(self.warmup_steps >= 0, "training.warmup_steps", "must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "training.min_lr_ratio", "must be in [0, 1]")
        _check(self.weight_decay >= 0, "training.weight_decay", "must be >= 0")
        _check(0 <= self.adam_beta1 < 1, "training.adam_beta1", "must be in [0, 1)")
        _check(0 <= self.adam_beta2 < 1, "training.adam_beta2", "must be in [0, 1)")
        _check(self.max_grad_norm >= 0, "training.max_grad_norm", "must be >= 0 (0 = off)")
        _check(self.micro_batch_size >= 1, "training.micro_batch_size", "must be >= 1")


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 50
    keep_last: int = 3

    def __post_init__(self) -> None:
        _check(self.every_steps >= 1, "checkpoint.every_steps", "must be >= 1")
        _check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")


@dataclass(frozen=True)
class LoggingConfig:
    every_steps: int = 1
    rich: bool = True

    def __post_init__(self) -> None:
        _check(self.every_steps >= 1, "logging.every_steps", "must be >= 1")


@dataclass(frozen=True)
class EvaluationConfig:
    """Validation and evaluation passes; rows go to validation.jsonl / evaluation.jsonl."""

    eval_steps: int = 50
    baseline_evaluation: bool = True
    samples_per_task: int = 4
    temperature: float = 0.7

    def __post_init__(self) -> None:
        _check(self.eval_steps >= 1, "evaluation.eval_steps", "must be >= 1")
        _check(self.samples_per_task >= 1, "evaluation.samples_per_task", "must be >= 1")
        _check(self.temperature > 0, "evaluation.temperature", "must be > 0")


HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HuggingFaceConfig:
    """Where rows are kept and what is pushed to the Hub (rfai/hub.py) after training."""

    upload_datasets: bool = False
    dataset_repo_id: str = ""
    save_datasets_locally: bool = True
    dataset_output_dir: str = "./datasets"
    private: bool = False
    upload_model: bool = False
    model_repo_id: str = ""
    fuse_model: bool = False
    license: str = "apache-2.0"
    upload_retries: int = 5
    upload_timeout_seconds: float = 120.0

    def __post_init__(self) -> None:
        uploads = (("upload_datasets", "dataset_repo_id"), ("upload_model", "model_repo_id"))
        for flag, key in uploads:
            repo_id = getattr(self, key)
            _check(
                not getattr(self, flag) or bool(repo_id),
                f"huggingface.{key}",
                f"must be set (ORG/NAME) when huggingface.{flag} is true",
            )
            _check(
                not repo_id or bool(HUB_REPO_ID.match(repo_id)),
                f"huggingface.{key}",
                f"{repo_id!r} is not a Hub repo id; expected ORG/NAME",
            )
        _check(
            not self.fuse_model or self.upload_model,
            "huggingface.fuse_model",
            "only applies with huggingface.upload_model: true",
        )
        _check(bool(self.license), "huggingface.license", "must name a license, e.g. apache-2.0")
        _check(self.upload_retries >= 0, "huggingface.upload_retries", "must be >= 0")
        _check(self.upload_timeout_seconds > 0, "huggingface.upload_timeout_seconds", "must be > 0")


@dataclass(frozen=True)
class Config:
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    huggingface: HuggingFaceConfig = field(default_factory=HuggingFaceConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


# PyYAML follows YAML 1.1, where `1e-5` (no dot) is a string. Learning rates are written that
# way, so the loader also resolves such numbers as floats.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _key_lines(text: str) -> dict[str, int]:
    """Map each dotted key path in a YAML document to its 1-based line number."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = f"{prefix}{key_node.value}"
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path + ".")

    root = yaml.compose(text, Loader=_Loader)
    if root is not None:
        walk(root, "")
    return lines


class _Where:
    """Formats 'file:line' locations for error messages."""

    def __init__(self, source: str, lines: dict[str, int] | None = None) -> None:
        self.source = source
        self.lines = lines or {}

    def __call__(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: _Where) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a mapping of keys, got {type(value).__name__}"
            )
        return _build(tp, value, key + ".", where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a list, got {type(value).__name__} {value!r}"
            )
        return tuple(_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a mapping, got {type(value).__name__} {value!r}"
            )
        return {
            _coerce(k, args[0], key, where): _coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in the dataclasses above
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    raise ConfigError(
        f"{where(key)}: '{key}' must be of type {_type_name(tp)}, "
        f"got {type(value).__name__} {value!r}"
    )


def _build(cls: type, values: dict[str, Any], prefix: str, where: _Where) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{where(prefix + str(key))}: unknown config key '{prefix}{key}'{hint}. "
            f"Known keys here: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k, where) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        raise ConfigError(f"{where(key)}: {exc}") from None


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a `Config` from nested plain values, strictly."""
    return _build(Config, values, "", _Where(source))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.steps=50")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty key segment in {key!r}")
    value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    return path, value


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def config_to_dict(config: Config) -> dict[str, Any]:
    return _to_plain(config)


def load_config(
    path: str | Path | None,
    overrides: typing.Sequence[str] = (),
    model: str | None = None,
) -> Config:
    """Load `path` (or the defaults when None), then apply `--set` overrides and `--model`."""
    values: dict[str, Any] = {}
    where = _Where("<defaults>")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            loaded = yaml.load(text, Loader=_Loader)
            lines = _key_lines(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        values = loaded
        where = _Where(str(path), lines)
    config = _build(Config, values, "", where)

    merged = config_to_dict(config)
    for text in overrides:
        keys, value = _parse_override(text)
        node = merged
        for i, part in enumerate(keys[:-1]):
            if not isinstance(node, dict) or part not in node:
                dotted = ".".join(keys[: i + 1])
                raise ConfigError(f"--set {text}: unknown config section '{dotted}'")
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text}: '{'.'.join(keys[:-1])}' is not a section")
        node[keys[-1]] = value
    if model is not None:
        merged["student"]["path"] = model
    if overrides or model is not None:
        config = _build(Config, merged, "", _Where("command line (--set/--model)"))
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, loadable again with `load_config`."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
