"""Fine-tune a model with any method of :mod:`ftcourse.peft_methods`: a thin layer over ``transformers.Trainer``.

Course defaults, each measured on the embedded model (see ``benchmarks/README.md``):

* completion-only loss from the label mask (EOS trained even when pad == EOS);
* dynamic padding, batches grouped by length (less padding);
* the LM head runs only at positions that have a label (``fast_loss``);
* mixed precision as :mod:`ftcourse.device` decides: bf16 autocast where the hardware supports it (CPUs with
  AVX512-BF16/AMX included), fp16 with a gradient scaler on older GPUs, trainable weights in fp32;
* gradient checkpointing only when the memory estimate needs it (it costs a recomputed forward);
* a learning rate per method; everything seeded.

Pre-flight checks (:mod:`ftcourse.preflight`) run before the first step and after the first
optimizer steps. Checkpoints go to ``models/checkpoints/<run>`` (``resume=True`` continues from
the last one); the adapter (or full model), tokenizer, metrics and run record go to
``models/fine_tuned/<run>``.
"""


from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ftcourse.configs import LoraSettings, TrainingSettings, settings_dict
from ftcourse.device import DevicePolicy, device_policy
from ftcourse.distributed import check_launch
from ftcourse.errors import CourseError
from ftcourse.generation import model_device
from ftcourse.memory import available_memory, track_peak, training_memory, unpack_cpu_4bit
from ftcourse.models import count_parameters, load_model, load_tokenizer
from ftcourse.peft_methods import Method, build_peft_config, get_method
from ftcourse.preflight import Check, FiniteTrainingCheck, ParameterChangeCheck, run_preflight, training_checks
from ftcourse.profiles import Profile
from ftcourse.runs import RunPlan, RunResult, checkpoint_folder, load_run, plan_run, reusable_run, run_fingerprint, save_run
from ftcourse.tokenization import IGNORE_INDEX, collate, tokenize_records

__all__ = [
    "build_trainer", "completion_loss", "CourseTrainer", "EAGER_ATTENTION_MAX_LENGTH", "fine_tune", "prepare_model",
    "REPORT_TO", "resolve_report_to", "settings_from_profile", "supports_fast_loss", "tokenize_data", "training_arguments",
    "training_attention", "TrainingData", "warmup_steps",
]


REPORT_TO = ("none", "tensorboard", "trackio", "wandb")
#: Config fields that change the logits after the LM head; ``fast_loss`` is off for such models.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier")
#: Longest training sequence for which a CPU run uses eager attention instead of SDPA: measured faster there, mostly in the
#: backward pass (benchmarks/README.md, "Where a training step goes"); longer sequences keep SDPA (eager stores L × L scores).
EAGER_ATTENTION_MAX_LENGTH = 256


def settings_from_profile(profile: Profile, **overrides: Any) -> TrainingSettings:
    """Training settings sized by a profile (steps, epochs, batch, sequence length), then overridden."""
    base = TrainingSettings(
        num_epochs=profile.num_epochs,
        max_steps=profile.max_steps,
        batch_size=profile.batch_size,
        gradient_accumulation_steps=profile.gradient_accumulation_steps,
        max_seq_length=profile.max_seq_length,
        logging_steps=max(1, min(10, profile.max_steps // 10 if profile.max_steps > 0 else 10)),
    )
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


@contextmanager
def training_attention(model: torch.nn.Module, max_length: int) -> Iterator[None]:
    """Eager attention while training on a CPU with sequences of at most :data:`EAGER_ATTENTION_MAX_LENGTH` tokens.

    Same mathematics as SDPA (a different kernel); the model's own implementation is restored afterwards.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    current = getattr(lm.config, "_attn_implementation", None)
    switch = model_device(model).type == "cpu" and current == "sdpa" and max_length <= EAGER_ATTENTION_MAX_LENGTH
    if switch:
        lm.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            lm.set_attn_implementation(current)


# ---------------------------------------------------------------- the trainer


def supports_fast_loss(model: torch.nn.Module) -> bool:
    """True when the logits are the plain LM head of the backbone's last hidden state (no softcapping or scaling)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(lm, "config", None)
    plain = all(getattr(config, name, None) in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)
    return plain and lm.get_output_embeddings() is not None and lm.base_model is not lm


def completion_loss(model: torch.nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """The causal-LM loss, with the LM head run only at positions whose next token has a label.

    Equal to the model's own loss (mean over labelled tokens, or sum / ``num_items_in_batch``), without
    the ``batch × length × vocab`` logits; needs :func:`supports_fast_loss`.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    shifted = inputs["labels"][:, 1:]
    keep = shifted != IGNORE_INDEX
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    denominator = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)
    return F.cross_entropy(logits, shifted[keep], reduction="sum") / denominator


class CourseTrainer(Trainer):
    """``Trainer`` with the course's loss: the LM head runs only where labels are (:func:`completion_loss`)."""

    def __init__(self, *args, fast_loss: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast_loss = fast_loss
        self.model_accepts_loss_kwargs = True
        self.tokens = {"input": 0, "trained": 0}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        if model.training:
            self.tokens["input"] += int(inputs["attention_mask"].sum())
            self.tokens["trained"] += int((labels[:, 1:] != IGNORE_INDEX).sum())
        if not self.fast_loss or self.args.world_size > 1:
            # DDP syncs gradients and FSDP gathers weights only through the wrapped model's own forward;
            # the Trainer's loss also scales by the number of processes
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        with self.accelerator.autocast():  # the model's own forward gets autocast from accelerate; this path calls the backbone
            loss = completion_loss(model, inputs, num_items_in_batch)
        return (loss, {"loss": loss}) if return_outputs else loss


class _AdaLoraAllocator(TrainerCallback):
    """AdaLoRA re-allocates its rank budget after every optimizer step (gradients still present)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


def resolve_report_to(report_to: str) -> str:
    """Validate the tracking backend; wandb runs offline unless ``WANDB_MODE`` says otherwise."""
    if report_to not in REPORT_TO:
        raise CourseError(f"Unknown report_to {report_to!r}.", f"use one of: {', '.join(REPORT_TO)}.")
    if report_to != "none" and find_spec(report_to) is None:
        raise CourseError(f"report_to={report_to!r} needs the {report_to} package, which is not installed.", f"pip install {report_to}   (or use report_to='none').")
    if report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
    return report_to


# ---------------------------------------------------------------- the steps of a run


@dataclass
class TrainingData:
    """The tokenized examples of a run, and what the steps after need to know about them."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]] | None
    conversations: list[list[dict[str, str]]] | None  # the chat messages, for the pre-flight checks
    longest: int
    total_steps: int


def tokenize_data(tokenizer, train_records: Sequence[dict[str, Any]], eval_records: Sequence[dict[str, Any]] | None,
                  settings: TrainingSettings, packing: bool) -> TrainingData:
    """Tokenize (and with ``packing``, pack) the records; count the optimizer steps."""
    train = tokenize_records(tokenizer, train_records, settings.max_seq_length, packing)
    evaluation = tokenize_records(tokenizer, eval_records, settings.max_seq_length, packing) if eval_records else None
    conversations = [r["messages"] for r in train_records] if "messages" in train_records[0] else None
    return TrainingData(train, evaluation, conversations, max(len(e["input_ids"]) for e in train), _total_steps(len(train), settings))


def _total_steps(n_examples: int, settings: TrainingSettings) -> int:
    if settings.max_steps > 0:
        return settings.max_steps
    per_epoch = math.ceil(n_examples / settings.batch_size / settings.gradient_accumulation_steps)
    return max(1, int(per_epoch * settings.num_epochs))


def prepare_model(model: str | PreTrainedModel, spec: Method, lora: LoraSettings, data: TrainingData, batch_size: int,
                  init_text: str | None = None, gradient_checkpointing: bool | None = None,
                  policy: DevicePolicy | None = None) -> tuple[PreTrainedModel, bool]:
    """Load the base (4-bit for QLoRA), wrap it with the method's adapter (every weight trainable for ``full``), keep the
    trainable weights in the policy's ``trainable_dtype`` (fp32), and switch gradient checkpointing on when asked or when
    the memory estimate needs it. Returns the model and that choice."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    policy = policy or device_policy()
    if isinstance(model, str):
        model = load_model(model, quantization=spec.quantization, policy=policy)
    if spec.quantization and not getattr(model, "is_quantized", False):
        raise CourseError(f"Method {spec.name!r} needs a {spec.quantization} base model.",
                          f"load it with load_model(name, quantization={spec.quantization!r}), or pass the model name instead of a model.")
    unpack_cpu_4bit(model)  # a 4-bit base already used for inference on CPU gets no gradients otherwise
    if getattr(model, "is_quantized", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(gradient_checkpointing))
    config = build_peft_config(spec.name, model, lora, total_steps=data.total_steps, init_text=init_text,
                               tokenizer_path=str(getattr(model, "name_or_path", "")))
    if config is None:
        model.requires_grad_(True)
    else:
        model = get_peft_model(model, config)
    if not policy.shards_weights:  # FSDP (through accelerate) and DeepSpeed keep fp32 master weights of sharded parameters themselves
        for p in model.parameters():
            if p.requires_grad and p.dtype != policy.trainable_dtype:
                p.data = p.data.to(policy.trainable_dtype)
    checkpointing = _use_gradient_checkpointing(gradient_checkpointing, model, batch_size, data.longest)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    return model, checkpointing


def _use_gradient_checkpointing(requested: bool | None, model, batch_size: int, longest: int) -> bool:
    """``None`` (auto): on only when the memory estimate does not fit without it but fits with it."""
    if requested is not None:
        return requested
    have = 0.9 * available_memory()
    if training_memory(model, batch_size=batch_size, seq_length=longest).total < have:
        return False
    if training_memory(model, batch_size=batch_size, seq_length=longest, gradient_checkpointing=True).total < have:
        print("Gradient checkpointing on: the memory estimate does not fit without it.")
        return True
    return False


def warmup_steps(settings: TrainingSettings, total_steps: int) -> int:
    """Steps of linear warm-up: ``warmup_ratio`` of the run."""
    return max(0, round(settings.warmup_ratio * total_steps))


def training_arguments(plan: RunPlan, settings: TrainingSettings, spec: Method, total_steps: int, has_eval: bool,
                       report_to: str = "none", progress: bool = True, group_by_length: bool = True,
                       policy: DevicePolicy | None = None) -> TrainingArguments:
    """The ``TrainingArguments`` of a run: the course's settings, the method's learning rate, the policy's precision
    (:meth:`ftcourse.device.DevicePolicy.training_flags`).

    Build them before a model is loaded by name: under DeepSpeed ZeRO-3 they register the config that makes
    ``from_pretrained`` load each rank's shard only."""
    flags = (policy or device_policy()).training_flags()
    return TrainingArguments(  # under a launcher this joins the process group (gloo on CPU: use_cpu)
        output_dir=str(plan.checkpoint_dir), per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size * 2,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=spec.learning_rate if settings.learning_rate is None else settings.learning_rate, lr_scheduler_type="linear",
        warmup_steps=warmup_steps(settings, total_steps), weight_decay=settings.weight_decay, num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps, logging_steps=settings.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=settings.save_steps, save_total_limit=2, seed=settings.seed, data_seed=settings.seed,
        **flags,
        ddp_find_unused_parameters=False, report_to=report_to, disable_tqdm=not progress, remove_unused_columns=False,
        prediction_loss_only=True, dataloader_num_workers=0,
        eval_strategy="steps" if has_eval else "no", eval_steps=settings.eval_steps or total_steps,  # default: once, at the end
        run_name=plan.name, project="ftcourse",  # trackio's project (local SQLite under $TRACKIO_DIR)
        # transformers' own length grouping (shuffled mega-batches sorted by length): little padding per batch
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )


def build_trainer(model, tokenizer, data: TrainingData, args: TrainingArguments, spec: Method, settings: TrainingSettings,
                  checkpointing: bool, fast_loss: bool = True, preflight: bool = True, callbacks: Sequence[TrainerCallback] = (),
                  data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None) -> tuple[CourseTrainer, list[Check]]:
    """The trainer, after the pre-flight checks (main process only); returns it with the checks' results so far."""
    collator = data_collator or (lambda batch: collate(batch, tokenizer.pad_token_id))
    checks: list[Check] = []
    extra: list[TrainerCallback] = []
    if preflight and args.process_index == 0:
        checks = run_preflight(training_checks(tokenizer, data.train, data.conversations, collator, model, settings.batch_size,
                                               settings.max_seq_length, checkpointing))
        # the first optimizer step under linear warm-up has learning rate 0: check after the first real one
        extra.append(ParameterChangeCheck(after_steps=min(warmup_steps(settings, data.total_steps) + 1, data.total_steps)))
    extra += [FiniteTrainingCheck(), *callbacks] + ([_AdaLoraAllocator()] if spec.name == "adalora" else [])
    trainer = CourseTrainer(
        model=model, args=args, train_dataset=data.train, eval_dataset=data.eval, data_collator=collator, callbacks=extra,
        fast_loss=fast_loss and not spec.prompt_learning and spec.name != "adalora" and supports_fast_loss(model),
    )
    return trainer, checks


def _train(trainer: CourseTrainer, plan: RunPlan, resume: bool, settings: TrainingSettings, report_to: str):
    """``trainer.train`` (from the last checkpoint when resuming), with its time and peak memory; says where the checkpoints are if it stops."""
    args, main = trainer.args, trainer.args.process_index == 0  # one process writes folders, runs the checks and prints
    with args.main_process_first(local=False, desc="checkpoint folder"):
        last = checkpoint_folder(plan, resume, main)
    kind = str(trainer.accelerator.distributed_type).split(".")[-1]
    if args.world_size > 1:  # every rank says who it is: a launch that started fewer processes shows here
        print(f"Process {args.process_index} of {args.world_size} ({kind}, {args.device}): {len(trainer.train_dataset)} examples, "
              f"batch {settings.batch_size} per process x {args.world_size} processes x {settings.gradient_accumulation_steps} accumulation steps", flush=True)
    if (warning := check_launch(args.world_size, kind, args.fsdp)) and main:
        print(warning)
    if report_to == "tensorboard" and main:
        print(f"TensorBoard logs: tensorboard --logdir {plan.checkpoint_dir / 'runs'}")
    start = time.perf_counter()
    try:
        with track_peak() as peak, training_attention(trainer.model, settings.max_seq_length):
            output = trainer.train(resume_from_checkpoint=last)
    except BaseException:
        if main and get_last_checkpoint(str(plan.checkpoint_dir)):
            print(f"Training stopped; checkpoints are in {plan.checkpoint_dir}: run again with resume=True to continue.")
        raise
    return output, time.perf_counter() - start, peak, kind


def _metrics(trainer: CourseTrainer, output, seconds: float, peak, kind: str, spec: Method, checkpointing: bool, checks: list[Check]) -> dict[str, Any]:
    """What a run measured: loss, time, tokens (all processes together), peak memory, parameters, settings, checks."""
    params = count_parameters(trainer.model)
    trained, inputs = trainer.accelerator.reduce(torch.tensor([trainer.tokens["trained"], trainer.tokens["input"]], device=trainer.args.device), "sum").tolist()
    metrics: dict[str, Any] = {
        "method": spec.name, "train_loss": round(output.training_loss, 4), "train_seconds": round(seconds, 2), "steps": trainer.state.global_step,
        "trained_tokens": trained, "input_tokens": inputs,
        "trained_tokens_per_second": round(trained / seconds, 1) if seconds else None,
        "input_tokens_per_second": round(inputs / seconds, 1) if seconds else None,
        "peak_memory_mb": peak.peak_mb, "peak_memory_source": peak.source,  # ftcourse.memory.track_peak over trainer.train()
        "trainable_parameters": params["trainable"], "total_parameters": params["total"], "trainable_percent": round(params["trainable_percent"], 4),
        "learning_rate": trainer.args.learning_rate, "bf16": trainer.args.bf16, "gradient_checkpointing": checkpointing,
        "checks": {c.name: c.ok for c in checks}, "world_size": trainer.args.world_size, "distributed_type": kind,
    }
    if trainer.eval_dataset:
        evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        metrics["eval_loss"] = round(evals[-1] if evals else trainer.evaluate()["eval_loss"], 4)
    return metrics


def _save(trainer: CourseTrainer, model, plan: RunPlan, tokenizer, model_name: str, metrics: dict[str, Any], lora: LoraSettings,
          settings: TrainingSettings) -> list[dict]:
    """Rank 0 writes the run folder (FSDP / ZeRO-3: after every rank took part in gathering the full weights); returns the loss history."""
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper accelerate put on forward
    model.eval()
    history = [h for h in trainer.state.log_history if "loss" in h or "eval_loss" in h]
    record = {"base_model": model_name, "method": metrics["method"], "fingerprint": plan.fingerprint, "lora": settings_dict(lora),
              "training": settings_dict(settings), "history": history, "finished_at": time.time()}
    sharded = metrics["distributed_type"] in ("FSDP", "DEEPSPEED")
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if sharded else None  # a collective: all ranks
    if trainer.args.process_index == 0:
        save_run(plan.run_dir, model, tokenizer, model_name, metrics, record, state_dict)
    trainer.accelerator.wait_for_everyone()  # the other ranks return once the run folder is complete
    return history


# ---------------------------------------------------------------- the entry point


def fine_tune(
    train_records: Sequence[dict[str, Any]], model: str | PreTrainedModel = "embedded", tokenizer=None, method: str = "lora",
    lora: LoraSettings | None = None, settings: TrainingSettings | None = None, eval_records: Sequence[dict[str, Any]] | None = None,
    run_name: str = "run", output_root: str | Path | None = None, checkpoint_root: str | Path | None = None,
    resume: bool = False, overwrite: bool = False, reuse: bool = False, keep_both: bool = True,
    gradient_checkpointing: bool | None = None, fast_loss: bool = True, group_by_length: bool = True, packing: bool = False,
    prompt_init_text: str | None = None, report_to: str = "none", preflight: bool = True, progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (), data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None,
) -> RunResult:
    """Train ``model`` on processed records with ``method``; save the adapter and metrics under ``models/fine_tuned/<run_name>``.

    ``model`` is a name for :func:`ftcourse.models.load_model` (loaded 4-bit for ``qlora``) or an already loaded model
    (modified in place); ``tokenizer`` defaults to the model's. Records are chat ``messages``, plain ``text``, or
    pre-tokenized ``input_ids`` + ``labels``. Where the run and its checkpoints go, and what happens to an earlier run of
    the same name, is :func:`ftcourse.runs.plan_run`'s rule: a saved run with other settings is kept and this one saved
    as ``<run_name>-<fingerprint>`` (``keep_both=False``: an error), unless ``overwrite=True``. ``resume=True`` continues
    from the last checkpoint; ``reuse=True`` loads a saved run with the same fingerprint (model, method, settings, data)
    instead of training. ``gradient_checkpointing=None`` turns it on only when the memory estimate needs it.
    ``report_to``: ``"none"``, ``"tensorboard"``, ``"trackio"`` or ``"wandb"`` (offline unless ``WANDB_MODE`` is set).
    """
    settings, lora, spec, report_to = settings or TrainingSettings(), lora or LoraSettings(), get_method(method), resolve_report_to(report_to)
    policy = device_policy()  # device and precision, decided once (ftcourse.device)
    set_seed(settings.seed)
    # 1. settings -> the run's fingerprint and folders, or a saved run to reuse
    model_name = model if isinstance(model, str) else getattr(model, "name_or_path", "")
    model_key = model_name or json.dumps(model.config.to_dict(), sort_keys=True, default=str)  # unnamed: its architecture
    key = run_fingerprint(model_key, spec.name, lora, settings, train_records, packing, prompt_init_text, fast_loss, group_by_length)
    if reuse and (saved := reusable_run(run_name, key, output_root)):
        print(f"Reusing the saved run {saved} (same model, method, settings and data).")
        return load_run(saved, model=None if isinstance(model, str) else model)
    plan = plan_run(run_name, key, output_root, checkpoint_root, overwrite, resume, keep_both)
    # 2. data, arguments (before the weights load: ZeRO-3 loads each rank's shard only), model
    tokenizer = tokenizer or _default_tokenizer(model_name)
    data = tokenize_data(tokenizer, train_records, eval_records, settings, packing)
    args = training_arguments(plan, settings, spec, data.total_steps, bool(data.eval), report_to, progress, group_by_length, policy)
    model, checkpointing = prepare_model(model, spec, lora, data, settings.batch_size, prompt_init_text, gradient_checkpointing, policy)
    # 3. trainer, after the pre-flight checks
    trainer, checks = build_trainer(model, tokenizer, data, args, spec, settings, checkpointing, fast_loss, preflight, callbacks, data_collator)
    # 4. train, measured
    output, seconds, peak, kind = _train(trainer, plan, resume, settings, report_to)
    checks += [c.result for c in trainer.callback_handler.callbacks if isinstance(c, ParameterChangeCheck) and c.result is not None]
    metrics = _metrics(trainer, output, seconds, peak, kind, spec, checkpointing, checks)
    # 5. save
    history = _save(trainer, model, plan, tokenizer, model_name, metrics, lora, settings)
    return RunResult(plan.name, spec.name, model, tokenizer, plan.run_dir, metrics, history, checks)


def _default_tokenizer(model_name: str):
    if not model_name:
        raise CourseError("The model has no name to load its tokenizer from.", "pass tokenizer=... to fine_tune().")
    return load_tokenizer(model_name)
