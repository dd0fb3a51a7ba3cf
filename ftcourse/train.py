"""Fine-tune a model with any method of :mod:`ftcourse.peft_methods`: a thin layer over ``transformers.Trainer``.

Course defaults, each measured on the embedded model (see ``benchmarks/README.md``):

* completion-only loss from the label mask (EOS trained even when pad == EOS);
* dynamic padding, batches grouped by length (less padding);
* the LM head runs only at positions that have a label (``fast_loss``);
* bf16 autocast where the hardware supports it (CPUs with AVX512-BF16/AMX included);
* gradient checkpointing only when the memory estimate needs it (it costs a recomputed forward);
* a learning rate per method; everything seeded.

Pre-flight checks (:mod:`ftcourse.preflight`) run before the first step and after the first
optimizer steps. Checkpoints go to ``models/checkpoints/<run>`` (``resume=True`` continues from
the last one); the adapter (or full model), tokenizer, metrics and run record go to
``models/fine_tuned/<run>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ftcourse import paths
from ftcourse.configs import LoraSettings, TrainingSettings, settings_dict
from ftcourse.distributed import check_launch
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_json, ensure_writable_dir
from ftcourse.generation import cpu_autocast, model_device
from ftcourse.hardware import Profile, detect_environment
from ftcourse.memory import available_memory, estimate_training_memory, track_peak, unpack_cpu_4bit
from ftcourse.models import check_weight_files, count_parameters, default_dtype, load_model, load_tokenizer, resolve_model
from ftcourse.peft_methods import build_peft_config, get_method
from ftcourse.preflight import Check, ParameterChangeCheck, run_preflight, training_checks
from ftcourse.tokenization import IGNORE_INDEX, collate, tokenize_records

RUN_RECORD = "ftcourse_run.json"
CHECKPOINT_RECORD = "ftcourse_checkpoint.json"
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
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


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


# ---------------------------------------------------------------- data for the trainer


# ---------------------------------------------------------------- trainer


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


# ---------------------------------------------------------------- the entry point


@dataclass
class RunResult:
    """What :func:`fine_tune` returns: the trained model and everything measured about the run."""

    name: str
    method: str
    model: Any
    tokenizer: Any
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def losses(self) -> list[tuple[int, float]]:
        return [(h["step"], h["loss"]) for h in self.history if "loss" in h]


def _prepare_model(model, method: str, lora: LoraSettings, tokenizer_path: str | None, init_text: str | None, total_steps: int, gradient_checkpointing: bool):
    from peft import get_peft_model, prepare_model_for_kbit_training

    spec = get_method(method)
    if spec.quantization and not getattr(model, "is_quantized", False):
        raise CourseError(f"Method {method!r} needs a {spec.quantization} base model.", f"load it with load_model(name, quantization={spec.quantization!r}), or pass the model name instead of a model.")
    if getattr(model, "is_quantized", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = build_peft_config(method, model, lora, total_steps=total_steps, init_text=init_text, tokenizer_path=tokenizer_path)
    if config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    return get_peft_model(model, config)


def _total_steps(n_examples: int, settings: TrainingSettings) -> int:
    if settings.max_steps > 0:
        return settings.max_steps
    per_epoch = math.ceil(n_examples / settings.batch_size / settings.gradient_accumulation_steps)
    return max(1, int(per_epoch * settings.num_epochs))


def _report_to(report_to: str) -> str:
    """Validate the tracking backend; wandb runs offline unless ``WANDB_MODE`` says otherwise."""
    if report_to not in REPORT_TO:
        raise CourseError(f"Unknown report_to {report_to!r}.", f"use one of: {', '.join(REPORT_TO)}.")
    if report_to != "none" and find_spec(report_to) is None:
        raise CourseError(f"report_to={report_to!r} needs the {report_to} package, which is not installed.", f"pip install {report_to}   (or use report_to='none').")
    if report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
    return report_to


def _default_tokenizer(model_name: str):
    if not model_name:
        raise CourseError("The model has no name to load its tokenizer from.", "pass tokenizer=... to fine_tune().")
    return load_tokenizer(model_name)


def _use_gradient_checkpointing(requested: bool | None, model, batch_size: int, longest: int) -> bool:
    """``None`` (auto): on only when the memory estimate does not fit without it but fits with it."""
    if requested is not None:
        return requested
    have = 0.9 * available_memory()
    if estimate_training_memory(model, batch_size, longest) < have:
        return False
    if estimate_training_memory(model, batch_size, longest, gradient_checkpointing=True) < have:
        print("Gradient checkpointing on: the memory estimate does not fit without it.")
        return True
    return False


def _checkpoint_dir(root: Path, run_name: str, fingerprint: str, resume: bool, main: bool = True) -> tuple[Path, str | None]:
    """The run's checkpoint folder and the checkpoint to resume from (None: start fresh, old checkpoints removed).

    Only the ``main`` process removes and reports; the other ranks of a launch call this after it.
    """
    folder = root / run_name
    ours = (folder / CHECKPOINT_RECORD).is_file()
    if folder.is_dir() and not ours and any(folder.iterdir()):
        raise CourseError(f"{folder} exists and does not hold ftcourse checkpoints; not touching it.", "choose another run_name or checkpoint folder.")
    if not resume:
        if main and ours and get_last_checkpoint(str(folder)):
            print(f"Starting fresh: removing the earlier checkpoints in {folder} (resume=True would continue from them).")
        if main:
            shutil.rmtree(folder, ignore_errors=True)
        return folder, None
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        if main:
            print(f"No checkpoint in {folder} to resume from; starting fresh.")
        return folder, None
    recorded = _read_json(folder / CHECKPOINT_RECORD).get("fingerprint")
    if recorded != fingerprint:
        raise CourseError(
            f"The checkpoints in {folder} belong to a run with different data or settings.",
            "resume with the same model, method, settings and data, or start fresh with resume=False.",
        )
    if main:
        print(f"Resuming from {last}")
    return folder, last


def fine_tune(
    train_records: Sequence[dict[str, Any]],
    model: str | PreTrainedModel = "embedded",
    tokenizer=None,
    method: str = "lora",
    lora: LoraSettings | None = None,
    settings: TrainingSettings | None = None,
    eval_records: Sequence[dict[str, Any]] | None = None,
    run_name: str = "run",
    output_root: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    gradient_checkpointing: bool | None = None,
    fast_loss: bool = True,
    group_by_length: bool = True,
    packing: bool = False,
    prompt_init_text: str | None = None,
    report_to: str = "none",
    preflight: bool = True,
    progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
    reuse: bool = False,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None,
    checkpoint_root: str | Path | None = None,
    keep_both: bool = True,
) -> RunResult:
    """Train ``model`` on processed records with ``method``; save the adapter and metrics under ``models/fine_tuned/<run_name>``.

    ``model`` is a name for :func:`ftcourse.models.load_model` (loaded 4-bit for ``qlora``)
    or an already loaded model (it is modified in place); ``tokenizer`` defaults to the model's.
    Records are chat ``messages``, plain ``text``, or pre-tokenized ``input_ids`` + ``labels``.
    Checkpoints go to ``<checkpoint_root>/<run_name>`` every ``settings.save_steps`` (default
    ``<output_root>/checkpoints`` when ``output_root`` is given, else ``models/checkpoints``);
    ``resume=True`` continues from the last one. ``reuse=True`` loads the saved run instead of
    training when its fingerprint (model, method, settings, data) matches — lessons that build on
    an earlier lesson's run use it. A saved run with other settings is never replaced silently:
    it is kept and this run is saved as ``<run_name>-<fingerprint>`` (``keep_both=False``: a
    :class:`CourseError` before the model loads), unless ``overwrite=True``. ``gradient_checkpointing=None``
    turns it on only when the memory estimate needs it. ``report_to`` is ``"none"``,
    ``"tensorboard"`` (logs under the checkpoint folder), ``"trackio"`` (local, under
    ``$TRACKIO_DIR``, project ``ftcourse``) or ``"wandb"`` (offline unless ``WANDB_MODE`` is set); each logs the loss,
    learning rate, the evaluation loss and the training arguments.
    """
    settings = settings or TrainingSettings()
    lora = lora or LoraSettings()
    spec = get_method(method)
    report_to = _report_to(report_to)
    set_seed(settings.seed)
    model_name = model if isinstance(model, str) else getattr(model, "name_or_path", "")
    run_dir = (Path(output_root) if output_root else paths.fine_tuned_dir()) / run_name
    ckpt_root = Path(checkpoint_root) if checkpoint_root else (Path(output_root) / "checkpoints" if output_root else paths.checkpoints_dir())
    if ckpt_root.resolve() in (run_dir.parent.resolve(), run_dir.resolve()):
        raise CourseError(f"Checkpoints and saved runs would share the folder {ckpt_root}.", "give checkpoint_root and output_root different folders, or choose another run_name.")
    model_key = model_name or json.dumps(model.config.to_dict(), sort_keys=True, default=str)  # unnamed: its architecture
    key = run_fingerprint(model_key, spec.name, lora, settings, train_records, packing, prompt_init_text, fast_loss, group_by_length)
    if reuse:
        for saved in (run_dir, run_dir.with_name(f"{run_name}-{key}")):
            if _read_json(saved / RUN_RECORD).get("fingerprint") == key:
                print(f"Reusing the saved run {saved} (same model, method, settings and data).")
                return load_run(saved, model=None if isinstance(model, str) else model)
    if run_dir.exists() and not overwrite and not (run_dir / RUN_RECORD).exists():
        raise CourseError(f"{run_dir} exists and was not written by ftcourse; not overwriting it.", "choose another run_name, or pass overwrite=True.")
    if not overwrite and _read_json(run_dir / RUN_RECORD).get("fingerprint") not in (None, key):
        kept = f"{run_name}-{key}"
        if resume and not (ckpt_root / kept).is_dir():
            raise CourseError(f"The saved run in {run_dir} belongs to a run with different data or settings: nothing of this run to resume.",
                              f"resume with that run's settings and data, start fresh with resume=False (saved as {kept}), or pass overwrite=True.")
        if not keep_both:
            raise CourseError(f"{run_dir} already holds a run trained with other settings or data; not replacing it.",
                              "choose another run_name to keep both, or pass overwrite=True to replace it.")
        print(f"{run_dir} holds a run with other settings; keeping it and saving this run as {kept} (overwrite=True would replace it).")
        run_name, run_dir = kept, run_dir.with_name(kept)
    ensure_writable_dir(run_dir.parent, "output_root")  # before the model loads, not after training
    ensure_writable_dir(ckpt_root, "checkpoint_root")
    tokenizer = tokenizer or _default_tokenizer(model_name)
    if isinstance(model, str):
        model = load_model(model, quantization=spec.quantization)
    unpack_cpu_4bit(model)  # a 4-bit base already used for inference on CPU gets no gradients otherwise

    train_examples = tokenize_records(tokenizer, train_records, settings.max_seq_length, packing)
    eval_examples = tokenize_records(tokenizer, eval_records, settings.max_seq_length, packing) if eval_records else None
    conversations = [r["messages"] for r in train_records] if "messages" in train_records[0] else None
    longest = max(len(e["input_ids"]) for e in train_examples)
    total_steps = _total_steps(len(train_examples), settings)
    model = _prepare_model(model, spec.name, lora, str(getattr(model, "name_or_path", "")), prompt_init_text, total_steps, bool(gradient_checkpointing))
    gradient_checkpointing = _use_gradient_checkpointing(gradient_checkpointing, model, settings.batch_size, longest)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    params = count_parameters(model)

    warmup_steps = max(0, round(settings.warmup_ratio * total_steps))
    env = detect_environment()
    args = TrainingArguments(  # under a launcher this joins the process group (gloo on CPU: use_cpu)
        output_dir=str(ckpt_root / run_name),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size * 2,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=spec.learning_rate if settings.learning_rate is None else settings.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=env.bf16,
        fp16=env.device == "cuda" and not env.bf16,
        use_cpu=env.device == "cpu",
        ddp_find_unused_parameters=False,
        report_to=report_to,
        disable_tqdm=not progress,
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        eval_strategy="steps" if eval_examples else "no",  # once, at the last step: trackers log it with the run
        eval_steps=total_steps,
        run_name=run_name,
        project="ftcourse",  # trackio's project (local SQLite under $TRACKIO_DIR)
        # transformers' own length grouping (shuffled mega-batches sorted by length): little padding per batch
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    main = args.process_index == 0  # one process writes folders, runs the checks and prints
    with args.main_process_first(local=False, desc="checkpoint folder"):
        ckpt_dir, last = _checkpoint_dir(ckpt_root, run_name, key, resume, main)
        if main:
            atomic_write_json(ckpt_dir / CHECKPOINT_RECORD, {"fingerprint": key})
    collator = data_collator or (lambda batch: collate(batch, tokenizer.pad_token_id))
    checks: list[Check] = []
    extra: list[TrainerCallback] = []
    if preflight and main:
        checks = run_preflight(training_checks(tokenizer, train_examples, conversations, collator, model, settings.batch_size,
                                               settings.max_seq_length, gradient_checkpointing))
        # the first optimizer step under linear warm-up has learning rate 0: check after the first real one
        extra.append(ParameterChangeCheck(after_steps=min(warmup_steps + 1, total_steps)))
    extra += [*callbacks] + ([_AdaLoraAllocator()] if spec.name == "adalora" else [])

    trainer = CourseTrainer(
        model=model,
        args=args,
        train_dataset=train_examples,
        eval_dataset=eval_examples,
        data_collator=collator,
        callbacks=extra,
        fast_loss=fast_loss and not spec.prompt_learning and spec.name != "adalora" and supports_fast_loss(model),
    )
    kind = str(trainer.accelerator.distributed_type).split(".")[-1]
    warning = check_launch(args.world_size, kind, args.fsdp)
    if args.world_size > 1:  # every rank says who it is: a launch that started fewer processes shows here
        print(f"Process {args.process_index} of {args.world_size} ({kind}, {args.device}): {len(train_examples)} examples, "
              f"batch {settings.batch_size} per process x {args.world_size} processes x {settings.gradient_accumulation_steps} accumulation steps", flush=True)
    if warning and main:
        print(warning)
    if report_to == "tensorboard" and main:
        print(f"TensorBoard logs: tensorboard --logdir {ckpt_dir / 'runs'}")
    start = time.perf_counter()
    try:
        with track_peak() as peak, training_attention(model, settings.max_seq_length):
            output = trainer.train(resume_from_checkpoint=last)
    except BaseException:
        if main and get_last_checkpoint(str(ckpt_dir)):
            print(f"Training stopped; checkpoints are in {ckpt_dir}: run again with resume=True to continue.")
        raise
    seconds = time.perf_counter() - start
    checks += [c.result for c in extra if isinstance(c, ParameterChangeCheck) and c.result is not None]
    trained, inputs = trainer.accelerator.reduce(torch.tensor([trainer.tokens["trained"], trainer.tokens["input"]], device=args.device), "sum").tolist()
    metrics: dict[str, Any] = {
        "method": spec.name,
        "train_loss": round(output.training_loss, 4),
        "train_seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
        "trained_tokens": trained,  # all processes together
        "input_tokens": inputs,
        "trained_tokens_per_second": round(trained / seconds, 1) if seconds else None,
        "input_tokens_per_second": round(inputs / seconds, 1) if seconds else None,
        "peak_memory_mb": peak.peak_mb,  # ftcourse.memory.track_peak over trainer.train()
        "peak_memory_source": peak.source,
        "trainable_parameters": params["trainable"],
        "total_parameters": params["total"],
        "trainable_percent": round(params["trainable_percent"], 4),
        "learning_rate": args.learning_rate,
        "bf16": env.bf16,
        "gradient_checkpointing": gradient_checkpointing,
        "checks": {c.name: c.ok for c in checks},
        "world_size": args.world_size,
        "distributed_type": kind,
    }
    if eval_examples:
        evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        metrics["eval_loss"] = round(evals[-1] if evals else trainer.evaluate()["eval_loss"], 4)
    history = [h for h in trainer.state.log_history if "loss" in h or "eval_loss" in h]
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast wrapper accelerate put on forward
    model.eval()
    record = {"base_model": model_name, "method": spec.name, "fingerprint": key, "lora": settings_dict(lora),
              "training": settings_dict(settings), "history": history, "finished_at": time.time()}
    # FSDP / ZeRO-3 ranks each hold a shard: gather the full weights (a collective, all ranks) before rank 0 saves
    sharded = kind in ("FSDP", "DEEPSPEED")
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if sharded else None
    if main:
        _save_run(run_dir, model, tokenizer, model_name, metrics, record, state_dict)
    trainer.accelerator.wait_for_everyone()  # the other ranks return once the run folder is complete
    return RunResult(run_name, spec.name, model, tokenizer, run_dir, metrics, history, checks)


# ---------------------------------------------------------------- classification with a head


def example_text(record: dict[str, Any]) -> str:
    """The input text of a raw (``text``) or processed (last user message) classification record."""
    if "text" in record:
        return record["text"]
    return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user")


def _head_batch(tokenizer, texts: Sequence[str], max_length: int, device) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def train_classification_head(
    records: Sequence[dict[str, Any]],
    labels: Sequence[str],
    model: str = "embedded",
    steps: int = 30,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    lora_r: int = 8,
    max_length: int = 128,
    seed: int = 42,
    progress: bool = True,
):
    """Train a classification head (``AutoModelForSequenceClassification`` on the same base) plus LoRA on q/v.

    ``records`` are raw (``text``/``label``) or processed classification records. Returns
    ``(model, tokenizer, losses)``; predict with :func:`head_predict`.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, set_seed


    unknown = sorted({r["label"] for r in records} - set(labels))
    if unknown:
        raise CourseError(f"Training labels {unknown} are not in the label set.", f"use labels from: {', '.join(labels)}.")
    set_seed(seed)
    tokenizer = load_tokenizer(model)
    head = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, pad_token_id=tokenizer.pad_token_id, dtype=default_dtype(),
    )
    if torch.cuda.is_available():
        head = head.to("cuda")
    head = get_peft_model(head, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r, target_modules=["q_proj", "v_proj"]))
    device = model_device(head)
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    texts, targets = [example_text(r) for r in records], [labels.index(r["label"]) for r in records]
    losses = []
    head.train()
    order: list[int] = []
    for _ in tqdm(range(steps), desc="Training the head", disable=not progress, leave=False):
        if len(order) < batch_size:
            order += torch.randperm(len(texts), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        inputs = _head_batch(tokenizer, [texts[i] for i in batch], max_length, device)
        with cpu_autocast(head):
            loss = head(**inputs, labels=torch.tensor([targets[i] for i in batch], device=device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    head.eval()
    return head, tokenizer, losses


@torch.no_grad()
def head_predict(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> list[str]:
    """Labels a classification head predicts for ``texts`` (the argmax of its logits)."""
    names = model.config.id2label
    predictions = []
    for start in range(0, len(texts), batch_size):
        with cpu_autocast(model):
            logits = model(**_head_batch(tokenizer, texts[start : start + batch_size], max_length, model_device(model))).logits
        predictions += [names[int(i)] for i in logits.argmax(-1)]
    return predictions


def run_fingerprint(model_name: str, method: str, lora: LoraSettings, settings: TrainingSettings, records: Sequence[dict],
                    packing: bool, init_text: str | None, fast_loss: bool = True, group_by_length: bool = True) -> str:
    """A hash of everything that determines a run's result."""
    payload = json.dumps(
        [model_name, method, settings_dict(lora), settings_dict(settings), list(records), packing, init_text, fast_loss, group_by_length],
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a run saved by :func:`fine_tune`."""
    return (Path(path) / RUN_RECORD).is_file()


def latest_run(folder: str | Path) -> Path:
    """``folder`` itself when it is a saved run, else the most recently finished run inside it."""
    folder = Path(folder)
    if is_run_dir(folder):
        return folder
    runs = [p for p in folder.iterdir() if is_run_dir(p)] if folder.is_dir() else []
    if not runs:
        raise CourseError(f"{folder} holds no fine-tuned run (no subfolder with {RUN_RECORD}).",
                          "train one first (scripts/fine_tune_model.py), or pass the run's folder.")
    return max(runs, key=lambda p: (_read_json(p / RUN_RECORD).get("finished_at", 0), p.stat().st_mtime))


def load_run(run_dir: str | Path, model: PreTrainedModel | None = None) -> RunResult:
    """Load a saved run: its adapter on the base model (or the full model), tokenizer, metrics and history.

    ``model`` is the base model to put the adapter on (default: load the one the run names).
    """
    from peft import PeftModel

    run_dir = Path(run_dir)
    record = _read_json(run_dir / RUN_RECORD)
    if not record:
        raise CourseError(f"{run_dir} is not a saved ftcourse run (no {RUN_RECORD}).", "train it first with fine_tune(), or pass the right folder.")
    spec = get_method(record["method"])
    check_weight_files(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))  # the tokenizer the run trained with
    tokenizer.padding_side = "right"
    if spec.name == "full":
        trained = load_model(str(run_dir))
    else:
        if model is None and not record["base_model"]:
            raise CourseError(f"{run_dir} was trained on a model without a name, so its base cannot be loaded.", "pass the base model: load_run(run_dir, model=...).")
        base = model if model is not None else load_model(record["base_model"], quantization=spec.quantization)
        trained = PeftModel.from_pretrained(base, str(run_dir))
    trained.eval()
    metrics = _read_json(run_dir / "metrics.json")
    return RunResult(run_dir.name, spec.name, trained, tokenizer, run_dir, metrics, record.get("history", []))


def _save_run(run_dir: Path, model, tokenizer, model_name: str, metrics: dict, record: dict, state_dict: dict | None = None) -> None:
    if run_dir.exists():
        print(f"Replacing the earlier run in {run_dir}")
    with atomic_directory(run_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(tmp)
        adapter_config = tmp / "adapter_config.json"
        if adapter_config.exists():  # name the base the way the user did, so the folder is portable
            config = json.loads(adapter_config.read_text())
            config["base_model_name_or_path"] = model_name
            atomic_write_json(adapter_config, config)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "training_config.json", record["training"])  # reusable: --config / load_settings
        if get_method(record["method"]).low_rank:
            atomic_write_json(tmp / "lora_config.json", record["lora"])
        atomic_write_json(tmp / RUN_RECORD, record)
    print(f"Saved the run to {run_dir}")
