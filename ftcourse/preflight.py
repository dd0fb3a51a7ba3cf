"""Pre-flight checks run before (and just after the first steps of) training.

Each check returns a :class:`Check`; :func:`run_preflight` prints them and raises a
:class:`~ftcourse.errors.CourseError` naming the fix when one fails. :func:`training_checks`
is the list :func:`ftcourse.train.fine_tune` runs; :class:`ParameterChangeCheck` runs after
the first optimizer steps, and :class:`FiniteTrainingCheck` after every step (a diverged run stops, unsaved).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from ftcourse.errors import CourseError
from ftcourse.memory import available_memory, training_memory
from ftcourse.tokenization import IGNORE_INDEX, prompt_ids

__all__ = [
    "Check", "check_eos_trained", "check_label_mask", "check_memory", "check_pad_token", "check_sequence_length",
    "check_template_parity", "FiniteTrainingCheck", "MAX_TRUNCATED_SHARE", "ParameterChangeCheck", "run_preflight",
    "training_checks",
]

MAX_TRUNCATED_SHARE = 0.05


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    fix: str = ""
    warning: bool = False  # a failed warning is printed but does not stop training

    def __str__(self) -> str:
        mark = "✓" if self.ok else ("!" if self.warning else "✗")
        return f"{mark} {self.name}: {self.message}" + ("" if self.ok or not self.fix else f" — fix: {self.fix}")


def check_pad_token(tokenizer) -> Check:
    if tokenizer.pad_token_id is None:
        return Check("pad token", False, "the tokenizer has no pad token, so batches cannot be padded",
                     "set tokenizer.pad_token = tokenizer.eos_token (ftcourse.models.load_tokenizer does this)")
    same = tokenizer.pad_token_id == tokenizer.eos_token_id
    return Check("pad token", True, f"pad token {tokenizer.pad_token!r}" + (" (== EOS: labels must come from the mask, not the pad id)" if same else ""))


def check_label_mask(examples: Sequence[dict[str, Any]], prompt_masked: bool = True) -> Check:
    """Every example trains some tokens; with ``prompt_masked``, not all of them (completion-only loss)."""
    empty = [i for i, e in enumerate(examples) if all(lbl == IGNORE_INDEX for lbl in e["labels"])]
    if empty:
        return Check("label mask", False, f"{len(empty)} of {len(examples)} examples train no token at all (first: #{empty[0]})",
                     "the response was masked or cut off: check the masking, or raise max_seq_length")
    if prompt_masked:
        full = [i for i, e in enumerate(examples) if all(lbl != IGNORE_INDEX for lbl in e["labels"])]
        if len(full) == len(examples):
            return Check("label mask", False, "every token of every example is trained, prompt included",
                         "mask the prompt with -100 (ftcourse.tokenization.tokenize_messages) so that only responses are learned")
    trained = sum(sum(lbl != IGNORE_INDEX for lbl in e["labels"]) for e in examples)
    total = sum(len(e["labels"]) for e in examples)
    return Check("label mask", True, f"{trained:,} of {total:,} tokens trained ({100 * trained / max(total, 1):.1f}%)")


def check_eos_trained(batch: dict[str, torch.Tensor], eos_token_id: int) -> Check:
    """In a collated batch, each row's last trained label is EOS (the model learns to stop)."""
    labels = batch["labels"]
    missing = 0
    for row in labels:
        trained = (row != IGNORE_INDEX).nonzero()
        if len(trained) == 0 or row[trained[-1, 0]].item() != eos_token_id:
            missing += 1
    if missing:
        return Check("EOS trained", False, f"{missing} of {len(labels)} responses in a collated batch do not end with a trained EOS label",
                     "the collator masks pad tokens and pad == EOS, so EOS is masked too; build labels from the completion mask (ftcourse.tokenization.collate) instead of the pad id")
    return Check("EOS trained", True, "every response ends with a trained EOS label")


def check_template_parity(tokenizer, examples: Sequence[dict[str, Any]], conversations: Sequence[Sequence[dict]]) -> Check:
    """The prompt tokens used in training are exactly the ones generation will use."""
    for i, (example, messages) in enumerate(zip(examples, conversations)):
        expected = prompt_ids(tokenizer, messages[:-1])
        if list(example["input_ids"][: len(expected)]) != expected:
            return Check("chat template", False, f"example #{i} was formatted differently from the prompt used at inference",
                         "format training data with the tokenizer's chat template (ftcourse.tokenization.tokenize_messages)")
    return Check("chat template", True, "training prompts match the inference prompt format")


def check_sequence_length(examples: Sequence[dict[str, Any]], max_length: int) -> Check:
    truncated = sum(bool(e.get("truncated")) for e in examples)
    share = truncated / max(len(examples), 1)
    longest = max((len(e["input_ids"]) for e in examples), default=0)
    ok = share <= MAX_TRUNCATED_SHARE
    return Check("sequence length", ok, f"{truncated} of {len(examples)} examples truncated at {max_length} tokens ({100 * share:.1f}%), longest kept {longest}",
                 f"raise max_seq_length (truncation above {100 * MAX_TRUNCATED_SHARE:.0f}% cuts responses)", warning=True)


def check_memory(model: torch.nn.Module, batch_size: int, seq_length: int, available: int | None = None, gradient_checkpointing: bool = False) -> Check:
    """The estimated training memory (:func:`~ftcourse.memory.training_memory`) fits in 90% of what is available (GPU memory
    on CUDA, else RAM)."""
    need = training_memory(model, batch_size=batch_size, seq_length=seq_length, gradient_checkpointing=gradient_checkpointing).total
    have = available_memory() if available is None else available
    ok = need < 0.9 * have
    return Check("memory", ok, f"estimated {need / 2**30:.2f} GiB needed, {have / 2**30:.2f} GiB available",
                 "lower batch_size or max_seq_length, use gradient checkpointing, or a 4-bit base (qlora)")


def training_checks(
    tokenizer,
    examples: Sequence[dict[str, Any]],
    conversations: Sequence[Sequence[dict]] | None,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    model: torch.nn.Module,
    batch_size: int,
    max_length: int,
    gradient_checkpointing: bool = False,
    sample_size: int = 16,
) -> Iterator[Check]:
    """The checks :func:`~ftcourse.train.fine_tune` runs before the first step, in order (lazily).

    ``conversations`` are the chat messages of ``examples`` (``None`` for plain text, where every
    token is trained); the EOS and template checks use the first ``sample_size`` examples that
    were not truncated, collated by the ``collator`` training will use.
    """
    yield (pad := check_pad_token(tokenizer))
    if not pad.ok:
        return
    yield check_label_mask(examples, prompt_masked=conversations is not None)
    if conversations is not None:
        whole = [i for i, e in enumerate(examples) if not e.get("truncated")][:sample_size]
        if whole:
            yield check_eos_trained(collator([examples[i] for i in whole]), tokenizer.eos_token_id)
            yield check_template_parity(tokenizer, [examples[i] for i in whole], [conversations[i] for i in whole])
    yield check_sequence_length(examples, max_length)
    longest = max(len(e["input_ids"]) for e in examples)
    yield check_memory(model, batch_size, longest, gradient_checkpointing=gradient_checkpointing)


def run_preflight(checks: Iterable[Check], printer: Callable[[str], None] | None = print) -> list[Check]:
    """Print the checks as they come; raise a :class:`CourseError` at the first failed one that is not a warning."""
    if printer:
        printer("Pre-flight checks")
    done = []
    for check in checks:
        done.append(check)
        if printer:
            printer(f"  {check}")
        if not check.ok and not check.warning:
            raise CourseError(f"Pre-flight check '{check.name}' failed: {check.message}.", check.fix)
    return done


class ParameterChangeCheck(TrainerCallback):
    """After ``after_steps`` optimizer steps: trainable parameters changed, frozen ones did not.

    The snapshot is taken from ``model`` when given, and again when training begins (after a
    checkpoint was loaded, on resume). Models
    with more than ``max_snapshot`` trainable values (full fine-tuning) are checked on a sample of tensors.
    """

    def __init__(self, model: torch.nn.Module | None = None, after_steps: int = 1, frozen_sample: int = 4, max_snapshot: int = 20_000_000):
        self.after_steps, self.frozen_sample, self.max_snapshot = after_steps, frozen_sample, max_snapshot
        self.trainable: dict[str, torch.Tensor] = {}
        self.frozen: dict[str, torch.Tensor] = {}
        self.start_step = 0
        self.result: Check | None = None
        if model is not None:
            self.snapshot(model)

    def snapshot(self, model: torch.nn.Module) -> None:
        named = list(model.named_parameters())
        trainable = [(n, p) for n, p in named if p.requires_grad]
        if sum(p.numel() for _, p in trainable) > self.max_snapshot:
            trainable = trainable[:: max(1, len(trainable) // 32)]
        frozen = [(n, p) for n, p in named if not p.requires_grad and p.dtype.is_floating_point]
        frozen = frozen[:: max(1, len(frozen) // self.frozen_sample)][: self.frozen_sample]
        self.trainable = {n: p.detach().clone() for n, p in trainable}
        self.frozen = {n: p.detach().clone() for n, p in frozen}

    def verify(self, model: torch.nn.Module) -> Check:
        params = dict(model.named_parameters())
        changed = sum(not torch.equal(params[n].detach(), old) for n, old in self.trainable.items() if n in params)
        moved = [n for n, old in self.frozen.items() if n in params and not torch.equal(params[n].detach(), old)]
        if not self.trainable or changed == 0:
            return Check("parameters update", False, "no trainable parameter changed after the first steps",
                         "check the learning rate is > 0, the loss has a gradient (labels not all -100), and the optimizer was built after the model was moved to its device")
        if moved:
            return Check("parameters update", False, f"frozen parameters changed: {moved[:3]}",
                         "freeze the base model (get_peft_model does) before building the optimizer")
        return Check("parameters update", True, f"{changed} of {len(self.trainable)} trainable tensors changed; frozen ones unchanged")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start_step = state.global_step
        self.snapshot(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.result is None and state.global_step - self.start_step >= self.after_steps:
            self.result = self.verify(model)
            print(f"  {self.result}")
            if not self.result.ok:
                raise CourseError(f"Check '{self.result.name}' failed: {self.result.message}.", self.result.fix)
        return control


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded (FSDP2) tensor; the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _first_non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> tuple[str, torch.Tensor] | None:
    """The first (name, tensor) holding a NaN or infinity; one device sync when all are finite."""
    named = [(n, _local(t).detach()) for n, t in named if t is not None and t.is_floating_point()]
    if not named or torch.stack([torch.isfinite(t).all() for _, t in named]).all():
        return None
    return next((n, t) for n, t in named if not torch.isfinite(t).all())


def _on_any_rank(found: bool, device: torch.device) -> bool:
    """``found`` on any process of a launch (each one then stops, so none waits for the others)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return found
    flag = torch.tensor([float(found)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


class FiniteTrainingCheck(TrainerCallback):
    """Stop training with a :class:`CourseError` at the first NaN or infinity in a logged loss, a gradient or a weight.

    The Trainer replaces a non-finite loss by the running mean when it logs (``logging_nan_inf_filter``), so a run
    whose weights turned to NaN would otherwise log plausible losses and be saved as finished. Checked: the gradients
    before each optimizer step (not under fp16, whose loss scaler skips such steps itself), the trainable weights after
    it (before any checkpoint of that step is written) and every logged loss. Nothing is saved as a run.
    """

    def _stop(self, args, step: int, what: str) -> None:
        raise CourseError(
            f"Training stopped at step {step}: {what}. The run diverged (learning rate {args.learning_rate:g}); nothing was saved as a run.",
            "lower the learning rate (each method's default is in ftcourse.peft_methods), or use bf16/fp32 instead of fp16; "
            f"checkpoints written before this step, if any, are in {args.output_dir}.",
        )

    def _check(self, args, step: int, named: Iterable[tuple[str, torch.Tensor]], kind: str) -> None:
        bad = _first_non_finite(named)
        if _on_any_rank(bad is not None, args.device):
            if bad is None:
                self._stop(args, step, f"another process found a NaN or infinite {kind}")
            name, tensor = bad
            count = int((~torch.isfinite(tensor)).sum())
            self._stop(args, step, f"the {kind} of {name} holds {count:,} NaN or infinite values of {tensor.numel():,}")

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not args.fp16:
            self._check(args, state.global_step + 1, ((n, p.grad) for n, p in model.named_parameters() if p.requires_grad), "gradient")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._check(args, state.global_step, ((n, p) for n, p in model.named_parameters() if p.requires_grad), "weight")

    def on_log(self, args, state, control, logs=None, **kwargs):
        bad = {k: v for k, v in (logs or {}).items() if k.endswith("loss") and isinstance(v, float) and not math.isfinite(v)}
        if bad:
            self._stop(args, state.global_step, ", ".join(f"the logged {k} is {v}" for k, v in bad.items()))
