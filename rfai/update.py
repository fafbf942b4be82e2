"""The GRPO policy update: packing completions, reference log-probs, a compiled step.

One rollout batch of N = B x G completions is split into micro-batches of
`training.micro_batch_size` sequences. For each of `grpo.num_iterations` inner updates the
gradients of all micro-batches are accumulated and then applied in one optimizer step
(gradient clipping first). Old log-probs are the behaviour log-probs stored at sampling time,
so iterations after the first are genuinely off-policy and the clipped ratio matters.

Normalisation under accumulation: the compiled loss computes each loss type's micro-batch
numerator with a unit `LossNormalizer`, and the whole-batch constant (1 / total tokens for
dapo, 1 / N for grpo, ...: one over `rfai.loss.LOSS_DENOMINATORS`, the table `aggregate_loss`
divides by) comes in as an array `scale`. That keeps every batch-dependent number out of the
traced graph, so it is traced once per padded shape instead of once per batch. All
micro-batches of a rollout batch share one width (the longest sample, rounded up to a multiple
of `LENGTH_BUCKET`) and a fixed number of rows for the same reason.

Teacher members of guided groups (`rfai.groups`) are samples with `off_policy=True`: packed
like the students' rows, they get `rfai.loss`'s off-policy term. The kl, ratio, clip and
mismatch statistics are averaged over the students' tokens only; `teacher_token_prob` is the
mean probability the policy gives the teacher's tokens (first iteration, before its update).

On-policy distillation (`grpo.distill_weight` > 0, `rfai.loss`): a local teacher model that
shares the student's tokenizer scores every micro-batch's targets in one batched forward pass
before the update (like the reference log-probs); `distill_kl` is the students' mean
per-token logp - teacher_logp on the first iteration, the sampled estimate of the reverse KL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

from rfai.config import GRPOConfig, TrainingConfig
from rfai.loss import LossNormalizer, loss_denominator, policy_loss, token_logprobs
from rfai.student import Student

LENGTH_BUCKET = 32
_UNIT = LossNormalizer(
    total_sequences=1, total_tokens=1, num_micro_batches=1, max_completion_length=1
)


@dataclass(frozen=True)
class Sample:
    """One completion ready for the update: prompt ids, sampled ids, behaviour log-probs.

    off_policy: a teacher member's answer (not sampled; its behaviour_logprobs are ignored)."""

    prompt: Sequence[int]
    completion: Sequence[int]
    behaviour_logprobs: Sequence[float]
    advantage: float
    truncated: bool
    off_policy: bool = False


@dataclass(frozen=True)
class MicroBatch:
    """Right-padded arrays for `rows` sequences; T is the bucketed length.

    inputs: (rows, T) int32, prompt + completion[:-1]; targets: (rows, T) the next tokens;
    mask: (rows, T) float32, 1 on completion targets; old_logp: (rows, T) float32 behaviour
    log-probs on those targets; advantages: (rows,) float32; off_policy: (rows,) float32,
    1 on teacher rows.
    """

    inputs: mx.array
    targets: mx.array
    mask: mx.array
    old_logp: mx.array
    advantages: mx.array
    off_policy: mx.array


def padded_width(samples: Sequence[Sample]) -> int:
    """The longest input among `samples`, rounded up to a multiple of LENGTH_BUCKET."""
    longest = max(len(s.prompt) + len(s.completion) - 1 for s in samples)
    return LENGTH_BUCKET * math.ceil(longest / LENGTH_BUCKET)


def pack(
    samples: Sequence[Sample], rows: int, mask_truncated: bool, width: int | None = None
) -> MicroBatch:
    """Pack up to `rows` samples into one micro-batch (padding rows have an all-zero mask).

    `width` (default: this micro-batch's own `padded_width`) lets every micro-batch of a
    rollout batch share one shape, so the compiled step is traced once per batch width.
    """
    if not samples or len(samples) > rows:
        raise ValueError(f"pack needs 1..{rows} samples, got {len(samples)}")
    own = padded_width(samples)
    if width is None:
        width = own
    elif width < own:
        raise ValueError(f"width {width} is shorter than the longest sample ({own})")
    inputs = np.zeros((rows, width), np.int32)
    targets = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.float32)
    old = np.zeros((rows, width), np.float32)
    adv = np.zeros((rows,), np.float32)
    off = np.zeros((rows,), np.float32)
    for i, s in enumerate(samples):
        full = np.asarray([*s.prompt, *s.completion], np.int32)
        n = len(full) - 1
        inputs[i, :n] = full[:-1]
        targets[i, :n] = full[1:]
        start = len(s.prompt) - 1  # the position whose next token is the first completion token
        if not (mask_truncated and s.truncated):
            mask[i, start:n] = 1.0
        old[i, start:n] = np.asarray(s.behaviour_logprobs, np.float32)
        adv[i] = s.advantage
        off[i] = float(s.off_policy)
    return MicroBatch(
        mx.array(inputs),
        mx.array(targets),
        mx.array(mask),
        mx.array(old),
        mx.array(adv),
        mx.array(off),
    )


def loss_scale(loss_type: str, norm: LossNormalizer) -> float:
    """The whole-batch factor that turns a unit-normalised micro-batch loss into its share."""
    return 1.0 / loss_denominator(loss_type, norm)


def build_optimizer(cfg: TrainingConfig, total_updates: int) -> optim.Optimizer:
    """AdamW with linear warmup then cosine decay to `min_lr_ratio` (or constant)."""
    peak = cfg.learning_rate
    warmup = min(cfg.warmup_steps, max(total_updates - 1, 0))
    if cfg.lr_schedule == "cosine":
        decay = optim.cosine_decay(peak, max(total_updates - warmup, 1), peak * cfg.min_lr_ratio)
    else:
        decay = optim.linear_schedule(peak, peak, 1)  # constant
    schedule = decay
    if warmup > 0:
        ramp = optim.linear_schedule(peak / (warmup + 1), peak, warmup)
        schedule = optim.join_schedules([ramp, decay], [warmup])
    return optim.AdamW(
        learning_rate=schedule,
        betas=[cfg.adam_beta1, cfg.adam_beta2],
        weight_decay=cfg.weight_decay,
    )


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    kl: float
    ratio_mean: float
    clipped_low: float
    clipped_high: float
    grad_norm: float
    learning_rate: float  # the rate the first optimizer update of this step used
    tokens: int
    logprob_mismatch: float  # mean |logp_train - logp_behaviour| on the first iteration
    teacher_tokens: int = 0  # tokens of teacher members (guided groups)
    teacher_token_prob: float | None = None  # their mean probability, first iteration
    # L2 norm of the change of the trainable parameters over the whole step: 0 means the
    # weights did not move (e.g. every advantage was 0), whatever the optimizer was asked.
    update_norm: float = 0.0
    # Mean per-token logp_student - logp_teacher over the students' tokens (first iteration):
    # the reverse KL to the distillation teacher, None without one.
    distill_kl: float | None = None


class PolicyUpdater:
    """Owns the optimizer and the compiled functions for one student."""

    def __init__(
        self,
        student: Student,
        grpo: GRPOConfig,
        training: TrainingConfig,
        temperature: float,
        total_updates: int,
        *,
        max_new_tokens: int,
        distill_teacher: nn.Module | None = None,
    ) -> None:
        """`temperature` and `max_new_tokens` are the rollout's (`rollout.*`): the loss needs the
        sampler's temperature, and dr_grpo divides by the configured completion limit.
        `distill_teacher`: the local teacher model `grpo.distill_weight` > 0 needs (same
        tokenizer as the student: `rfai.distill.check_same_tokenizer`)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if grpo.distill_weight > 0 and distill_teacher is None:
            raise ValueError("grpo.distill_weight > 0 needs a distill_teacher model")
        self.distill_teacher = distill_teacher if grpo.distill_weight > 0 else None
        self.student = student
        self.grpo = grpo
        self.training = training
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.optimizer = build_optimizer(training, total_updates)
        model = student.model
        self.optimizer.init(model.trainable_parameters())
        if training.grad_checkpoint:
            from mlx_lm.tuner.trainer import grad_checkpoint

            grad_checkpoint(model.layers[0])
        logits_to_logp, logits_to_loss = _loss_functions(grpo, temperature)
        apply = _apply_function(model, self.optimizer, training.max_grad_norm)
        if training.compile:
            # What is compiled: the vocabulary-wide loss (logits -> log-probs -> clipped
            # objective, elementwise and memory-bound, where fusion pays) and the optimizer
            # step. Not the transformer's forward/backward: on CUDA, compiling that graph
            # took over two minutes per batch shape for ~12% speed (bench/step.py, README).
            logits_to_logp = mx.compile(logits_to_logp)
            logits_to_loss = mx.compile(logits_to_loss)
            # mx.random.state is part of the state so LoRA dropout draws a new mask each call.
            state = [model.state, self.optimizer.state, mx.random.state]
            apply = partial(mx.compile, inputs=state, outputs=state)(apply)
        self._token_logp = lambda inputs, targets: logits_to_logp(model(inputs), targets)
        if self.distill_teacher is not None:
            self.distill_teacher.eval()
            teacher = self.distill_teacher
            self._teacher_logp = lambda inputs, targets: logits_to_logp(teacher(inputs), targets)
        self._micro_step = _micro_step_function(model, logits_to_loss)
        self._micro_forward = lambda inputs, targets, *rest: logits_to_loss(
            model(inputs), targets, *rest
        )
        self._apply = apply

    def reference_logprobs(self, batches: Sequence[MicroBatch]) -> list[mx.array]:
        """Log-probs of each micro-batch's targets under the adapter-off model."""
        out = []
        self.student.model.eval()
        with self.student.adapter_disabled():
            for b in batches:
                logp = self._token_logp(b.inputs, b.targets)  # (rows, T)
                mx.eval(logp)
                out.append(logp)
        return out

    def teacher_logprobs(self, batches: Sequence[MicroBatch]) -> list[mx.array]:
        """Log-probs of each micro-batch's targets under the distillation teacher, at the
        rollout temperature (so pi = q is the optimum at any temperature)."""
        out = []
        for b in batches:
            logp = self._teacher_logp(b.inputs, b.targets)  # (rows, T)
            mx.eval(logp)
            out.append(logp)
        return out

    def _pack_batch(self, samples: Sequence[Sample]) -> tuple[list[MicroBatch], LossNormalizer]:
        """The rollout batch's micro-batches (one shared width) and its loss normaliser."""
        rows = self.training.micro_batch_size
        chunks = [samples[i : i + rows] for i in range(0, len(samples), rows)]
        width = padded_width(samples)  # one shape for all micro-batches: one compiled trace
        batches = [pack(c, rows, self.grpo.mask_truncated_completions, width) for c in chunks]
        norm = LossNormalizer(
            total_sequences=len(samples),
            total_tokens=int(sum(b.mask.sum().item() for b in batches)),
            num_micro_batches=len(batches),
            # The configured limit, not this batch's longest completion: dr_grpo's divisor must
            # be a constant, or a batch of short answers weighs each token more (Liu et al. 2025).
            max_completion_length=self.max_new_tokens,
        )
        return batches, norm

    def _update(
        self,
        batches: Sequence[MicroBatch],
        refs: Sequence[mx.array],
        teacher: Sequence[mx.array],
        scale: mx.array,
        zeros,
        gradient: bool = True,
    ) -> tuple[mx.array, dict[str, float], mx.array, mx.array]:
        """One optimizer update: gradients accumulated over every micro-batch, then applied.

        `gradient` False: the caller knows the gradient is exactly 0 (`zero_gradient`), so
        each micro-batch runs the forward pass only (for the loss and its statistics) and the
        optimizer is given zeros, as the backward pass would have given it.

        Returns the summed loss, the summed loss stats, the summed |logp - old_logp| and the
        gradient norm.
        """
        # Starting from zeros rather than None keeps the compiled step to a single trace.
        acc = zeros
        loss_total = mx.array(0.0)
        keys = ("kl_sum", "ratio_sum", "clipped_low_sum", "clipped_high_sum", "teacher_prob_sum")
        if self.distill_teacher is not None:
            keys = (*keys, "distill_kl_sum")
        sums = dict.fromkeys(keys, 0.0)
        mismatch_sum = mx.array(0.0)
        for b, ref, teacher_logp in zip(batches, refs, teacher, strict=True):
            args = (b.inputs, b.targets, b.mask, b.old_logp, ref, b.advantages, b.off_policy,
                    teacher_logp, scale)  # fmt: skip
            if gradient:
                loss, (stats, mm), acc = self._micro_step(*args, acc)
            else:
                loss, stats, mm = self._micro_forward(*args)
            mx.eval(loss, acc, stats, mm)
            loss_total = loss_total + loss
            mismatch_sum = mismatch_sum + mm
            for key in sums:
                sums[key] += float(stats[key].item())
        grad_norm = self._apply(acc)
        mx.eval(grad_norm, self.student.model.parameters(), self.optimizer.state)
        return loss_total, sums, mismatch_sum, grad_norm

    def step(self, samples: Sequence[Sample]) -> UpdateStats:
        """Run `num_iterations` optimizer updates on one rollout batch's samples."""
        batches, norm = self._pack_batch(samples)
        scale = mx.array(loss_scale(self.grpo.loss_type, norm), mx.float32)
        if self.grpo.beta > 0:
            refs = self.reference_logprobs(batches)
        else:
            refs = [mx.zeros_like(b.old_logp) for b in batches]
        if self.distill_teacher is not None:
            teacher = self.teacher_logprobs(batches)
        else:
            teacher = [mx.zeros_like(b.old_logp) for b in batches]
        model = self.student.model
        model.train()
        losses, kls, ratios, lows, highs, norms = [], [], [], [], [], []
        mismatch = 0.0
        # The optimizer evaluates its schedule inside `update`, so `learning_rate` read before
        # the first update of this step is the previous update's rate; read it after instead.
        lr = float("nan")
        before = model.trainable_parameters()  # arrays are immutable: these stay as they were
        zeros = tree_map(mx.zeros_like, before)
        teacher_tokens = int(sum((b.mask * b.off_policy[:, None]).sum().item() for b in batches))
        denom = max(norm.total_tokens - teacher_tokens, 1)  # the students' tokens
        teacher_prob = distill_kl = None
        gradient = not zero_gradient(samples, self.grpo.beta, self.distill_teacher is not None)
        for iteration in range(self.grpo.num_iterations):
            loss_total, sums, mismatch_sum, grad_norm = self._update(
                batches, refs, teacher, scale, zeros, gradient
            )
            if iteration == 0:
                lr = float(self.optimizer.learning_rate.item())
                mismatch = float(mismatch_sum.item()) / denom
                if teacher_tokens:
                    teacher_prob = sums["teacher_prob_sum"] / teacher_tokens
                if "distill_kl_sum" in sums:
                    distill_kl = sums["distill_kl_sum"] / denom
            losses.append(float(loss_total.item()))
            kls.append(sums["kl_sum"] / denom)
            ratios.append(sums["ratio_sum"] / denom)
            lows.append(sums["clipped_low_sum"] / denom)
            highs.append(sums["clipped_high_sum"] / denom)
            norms.append(float(grad_norm.item()))
        model.eval()
        moved = tree_flatten(tree_map(lambda a, b: ((a - b).astype(mx.float32) ** 2).sum(),
                                      model.trainable_parameters(), before))  # fmt: skip
        update_norm = math.sqrt(float(sum(v for _, v in moved).item())) if moved else 0.0
        return UpdateStats(
            loss=float(np.mean(losses)),
            kl=float(np.mean(kls)),
            ratio_mean=float(np.mean(ratios)),
            clipped_low=float(np.mean(lows)),
            clipped_high=float(np.mean(highs)),
            grad_norm=float(np.mean(norms)),
            learning_rate=lr,
            tokens=norm.total_tokens,
            logprob_mismatch=mismatch,
            teacher_tokens=teacher_tokens,
            teacher_token_prob=teacher_prob,
            update_norm=update_norm,
            distill_kl=distill_kl,
        )


def zero_gradient(samples: Sequence[Sample], beta: float, distilling: bool) -> bool:
    """True when the loss's gradient is exactly 0: every advantage is 0 (a batch of groups
    whose rewards are all equal, say all failing), with no KL term (beta 0) and no
    distillation term. Every surrogate and teacher-row term is then the advantage times
    something, so the backward pass would hand the optimizer zeros."""
    return beta == 0 and not distilling and all(s.advantage == 0 for s in samples)


def _loss_functions(grpo: GRPOConfig, temperature: float):
    """(logits_to_logp, logits_to_loss): the vocabulary-wide functions `training.compile`
    compiles. The loss is unit-normalised; `scale` makes it the micro-batch's share."""
    beta = grpo.beta
    distill = grpo.distill_weight

    def logits_to_logp(logits: mx.array, targets: mx.array) -> mx.array:
        return token_logprobs(logits, targets, temperature)  # (b, T)

    def logits_to_loss(
        logits, targets, mask, old_logp, ref_logp, advantages, off_policy, teacher_logp, scale
    ):
        logp = token_logprobs(logits, targets, temperature)  # (b, T)
        loss, stats = policy_loss(
            logp,
            old_logp,
            ref_logp if beta > 0 else None,
            advantages,
            mask,
            epsilon_low=grpo.epsilon_low,
            epsilon_high=grpo.epsilon_high,
            beta=beta,
            loss_type=grpo.loss_type,
            norm=_UNIT,
            off_policy=off_policy,
            guidance_gamma=grpo.guidance_gamma,
            teacher_logp=teacher_logp if distill > 0 else None,
            distill_weight=distill,
        )
        on_policy = mask * (1.0 - off_policy)[:, None]  # (b, T) teacher rows have no old_logp
        mismatch = mx.stop_gradient((mx.abs(old_logp - logp) * on_policy).sum())  # ()
        return loss * scale, stats, mismatch

    return logits_to_logp, logits_to_loss


def _apply_function(model: nn.Module, optimizer: optim.Optimizer, max_grad_norm: float):
    """apply(grads) -> grad norm: clip (when `max_grad_norm` > 0), then one optimizer update."""

    def apply(grads):
        if max_grad_norm > 0:
            grads, norm = optim.clip_grad_norm(grads, max_grad_norm)
        else:
            norm = mx.sqrt(sum((g * g).sum() for g in _leaves(grads)))
        optimizer.update(model, grads)
        return norm

    return apply


def _micro_step_function(model: nn.Module, logits_to_loss):
    """micro_step(...) -> (loss, (stats, mismatch), acc + grads) for one micro-batch."""

    def loss_fn(model_, inputs, targets, mask, old_logp, ref_logp, advantages, off, t_logp, scale):
        loss, stats, mismatch = logits_to_loss(
            model_(inputs), targets, mask, old_logp, ref_logp, advantages, off, t_logp, scale
        )
        return loss, (stats, mismatch)

    value_and_grad = nn.value_and_grad(model, loss_fn)

    def micro_step(inputs, targets, mask, old_logp, ref_logp, advantages, off, t_logp, scale, acc):
        (loss, aux), grads = value_and_grad(
            model, inputs, targets, mask, old_logp, ref_logp, advantages, off, t_logp, scale
        )
        return loss, aux, tree_map(mx.add, grads, acc)

    return micro_step


def _leaves(tree) -> list[mx.array]:
    return [v for _, v in tree_flatten(tree)]
