"""Fine-tune a model with any method of :mod:`ftcourse.peft_methods`: a thin layer over ``transformers.Trainer``.

Course defaults, each measured on the embedded model (see ``benchmarks/README.md``):

* completion-only loss from the label mask (EOS trained even when pad == EOS);
* dynamic padding, batches grouped by length (less padding);
* the LM head runs only at positions that have a label (``fast_loss``);
* bf16 autocast where the hardware supports it (CPUs with AVX512-BF16/AMX included);
* gradient checkpointing only when asked (it trades ~7-20% speed for memory);
* a learning rate per method; everything seeded.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ftcourse import paths
from ftcourse.configs import LoraSettings, TrainingSettings, settings_dict
from ftcourse.data import IGNORE_INDEX, tokenize_messages, tokenize_text
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_json
from ftcourse.hardware import Profile, detect_environment
from ftcourse.models import count_parameters, load_model, load_tokenizer
from ftcourse.peft_methods import build_peft_config, get_method
from ftcourse.preflight import (
    ParameterChangeCheck,
    check_eos_trained,
    check_label_mask,
    check_memory,
    check_pad_token,
    check_sequence_length,
    check_template_parity,
    run_preflight,
)

RUN_RECORD = "ftcourse_run.json"


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


# ---------------------------------------------------------------- data for the trainer


def tokenize_records(tokenizer, records: Sequence[dict[str, Any]], max_length: int, packing: bool = False) -> list[dict[str, Any]]:
    """Tokenize processed records: chat ``messages`` (completion-only labels) or plain ``text`` (all labels)."""
    if not records:
        raise CourseError("No training records were given.", "check the dataset path and the profile's n_train.")
    if "messages" in records[0]:
        return [tokenize_messages(tokenizer, r["messages"], max_length) for r in records]
    if "text" in records[0]:
        return tokenize_text(tokenizer, [r["text"] for r in records], max_length, packing=packing)
    raise CourseError(f"Records with fields {sorted(records[0])} cannot be tokenized.", "pass processed records with 'messages' or 'text' (ftcourse.data.processed_records).")


def collate(examples: Sequence[dict[str, Any]], pad_token_id: int, pad_to_multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example; labels come from the mask, so EOS stays trained when pad == EOS."""
    longest = max(len(e["input_ids"]) for e in examples)
    width = int(math.ceil(longest / pad_to_multiple_of) * pad_to_multiple_of)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        attention[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Seeded sampler: shuffle, then sort by length inside mega-batches, then shuffle the batches.

    Examples of similar length share a batch, so dynamic padding wastes little compute.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, mega: int = 16):
        self.lengths, self.batch_size, self.seed, self.mega, self.epoch = list(lengths), batch_size, seed, mega, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * self.mega
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter([i for b in batches for i in b])


# ---------------------------------------------------------------- trainer


class CourseTrainer(Trainer):
    """``Trainer`` with the course's loss (head only where labels are) and length-grouped batches."""

    def __init__(self, *args, fast_loss: bool = True, group_by_length: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast_loss = fast_loss
        self.group_by_length = group_by_length
        self.model_accepts_loss_kwargs = True
        self.tokens = {"input": 0, "trained": 0}

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length:
            return super()._get_train_sampler(dataset)
        lengths = [len(e["input_ids"]) for e in dataset]
        return LengthGroupedSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        if model.training:
            self.tokens["input"] += int(inputs["attention_mask"].sum())
            self.tokens["trained"] += int((labels != IGNORE_INDEX).sum())
        if not self.fast_loss or isinstance(model, torch.nn.parallel.DistributedDataParallel):
            outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        shifted = labels[:, 1:]
        keep = shifted != IGNORE_INDEX
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        denominator = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)
        loss = F.cross_entropy(logits, shifted[keep], reduction="sum") / denominator
        return (loss, {"loss": loss}) if return_outputs else loss


class _AdaLoraAllocator(TrainerCallback):
    """AdaLoRA re-allocates its rank budget after every optimizer step (gradients still present)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


class _PeakMemory(TrainerCallback):
    def __init__(self):
        self.peak = 0

    def on_step_end(self, args, state, control, **kwargs):
        now = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else psutil.Process().memory_info().rss
        self.peak = max(self.peak, now)


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
    kwargs = {}
    if spec.name == "prompt_tuning":
        kwargs = {"init_text": init_text, "tokenizer_path": tokenizer_path}
    elif spec.name == "adalora":
        kwargs = {"total_steps": total_steps}
    config = build_peft_config(method, model, lora, **kwargs)
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
    gradient_checkpointing: bool = False,
    fast_loss: bool = True,
    group_by_length: bool = True,
    packing: bool = False,
    prompt_init_text: str | None = None,
    report_to: str = "none",
    preflight: bool = True,
    progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
    reuse: bool = False,
) -> RunResult:
    """Train ``model`` on processed records with ``method``; save the adapter and metrics under ``models/fine_tuned/<run_name>``.

    ``model`` is a name for :func:`ftcourse.models.load_model` (loaded 4-bit for ``qlora``)
    or an already loaded model (it is modified in place). Checkpoints go to
    ``models/checkpoints/<run_name>``; ``resume=True`` continues from the last one.
    ``reuse=True`` loads the saved run instead of training when its fingerprint (model,
    method, settings, data) matches — lessons that build on an earlier lesson's run use it.
    """
    settings = settings or TrainingSettings()
    lora = lora or LoraSettings()
    spec = get_method(method)
    set_seed(settings.seed)
    model_name = model if isinstance(model, str) else getattr(model, "name_or_path", "model")
    out_root = Path(output_root) if output_root else paths.fine_tuned_dir()
    run_dir = out_root / run_name
    key = run_fingerprint(model_name, spec.name, lora, settings, train_records, packing, prompt_init_text)
    if reuse and _recorded(run_dir).get("fingerprint") == key:
        print(f"Reusing the saved run {run_dir} (same model, method, settings and data).")
        return load_run(run_dir, model=None if isinstance(model, str) else model)
    if isinstance(model, str):
        model = load_model(model, quantization=spec.quantization)
    tokenizer = tokenizer or load_tokenizer(model_name if isinstance(model_name, str) else "embedded")
    if run_dir.exists() and not overwrite and not (run_dir / RUN_RECORD).exists():
        raise CourseError(f"{run_dir} exists and was not written by ftcourse; not overwriting it.", "choose another run_name, or pass overwrite=True.")
    ckpt_dir = paths.checkpoints_dir() / run_name
    if not resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)

    train_examples = tokenize_records(tokenizer, train_records, settings.max_seq_length, packing)
    eval_examples = tokenize_records(tokenizer, eval_records, settings.max_seq_length, packing) if eval_records else None
    total_steps = _total_steps(len(train_examples), settings)
    is_text = "text" in train_records[0]
    model = _prepare_model(model, method, lora, str(getattr(model, "name_or_path", "")), prompt_init_text, total_steps, gradient_checkpointing)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads() if hasattr(model, "enable_input_require_grads") else None
    params = count_parameters(model)

    collator = lambda batch: collate(batch, tokenizer.pad_token_id)  # noqa: E731
    warmup_steps = max(0, round(settings.warmup_ratio * total_steps))
    # the first optimizer step under linear warm-up has learning rate 0: check after the first real one
    param_check = ParameterChangeCheck(model, after_steps=min(warmup_steps + 1, total_steps))
    if preflight:
        sample = train_examples[: settings.batch_size * 4]
        checks = [
            check_pad_token(tokenizer),
            check_label_mask(train_examples, prompt_masked=not is_text),
            check_eos_trained(collator(sample), tokenizer.eos_token_id) if not is_text else None,
            check_template_parity(tokenizer, sample, [r["messages"] for r in train_records[: len(sample)]]) if not is_text else None,
            check_sequence_length(train_examples, settings.max_seq_length),
            check_memory(model, settings.batch_size, max(len(e["input_ids"]) for e in train_examples)),
        ]
        run_preflight([c for c in checks if c is not None])

    env = detect_environment()
    use_bf16 = env.bf16 and not (env.device == "cuda" and not torch.cuda.is_bf16_supported())
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size * 2,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate or spec.learning_rate,
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
        bf16=use_bf16,
        fp16=env.device == "cuda" and not use_bf16,
        use_cpu=env.device == "cpu",
        report_to=report_to,
        disable_tqdm=not progress,
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        eval_strategy="no",
    )
    peak = _PeakMemory()
    extra = [param_check, peak, *callbacks] + ([_AdaLoraAllocator()] if spec.name == "adalora" else [])
    trainer = CourseTrainer(
        model=model,
        args=args,
        train_dataset=train_examples,
        eval_dataset=eval_examples,
        data_collator=collator,
        callbacks=extra,
        fast_loss=fast_loss and not spec.prompt_learning and spec.name != "adalora",
        group_by_length=group_by_length,
    )
    last = get_last_checkpoint(str(ckpt_dir)) if resume and ckpt_dir.exists() else None
    if resume:
        print(f"Resuming from {last}" if last else "No checkpoint to resume from; starting fresh.")
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {
        "method": spec.name,
        "train_loss": round(output.training_loss, 4),
        "train_seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
        "trained_tokens": trainer.tokens["trained"],
        "input_tokens": trainer.tokens["input"],
        "trained_tokens_per_second": round(trainer.tokens["trained"] / seconds, 1) if seconds else None,
        "input_tokens_per_second": round(trainer.tokens["input"] / seconds, 1) if seconds else None,
        "peak_memory_mb": round(peak.peak / 2**20, 1),
        "trainable_parameters": params["trainable"],
        "total_parameters": params["total"],
        "trainable_percent": round(params["trainable_percent"], 4),
        "learning_rate": args.learning_rate,
        "bf16": use_bf16,
    }
    if eval_examples:
        metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
    history = [h for h in trainer.state.log_history if "loss" in h or "eval_loss" in h]
    model.eval()
    record = {"base_model": model_name, "method": spec.name, "fingerprint": key, "lora": settings_dict(lora),
              "training": settings_dict(settings), "history": history}
    _save_run(run_dir, model, tokenizer, model_name, metrics, record)
    return RunResult(run_name, spec.name, model, tokenizer, run_dir, metrics, history)


def run_fingerprint(model_name: str, method: str, lora: LoraSettings, settings: TrainingSettings, records: Sequence[dict], packing: bool, init_text: str | None) -> str:
    """A hash of everything that determines a run's result."""
    payload = json.dumps(
        [model_name, method, settings_dict(lora), settings_dict(settings), list(records), packing, init_text],
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _recorded(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return {}


def load_run(run_dir: str | Path, model: PreTrainedModel | None = None) -> RunResult:
    """Load a saved run: its adapter on the base model (or the full model), tokenizer, metrics and history."""
    from peft import PeftModel

    run_dir = Path(run_dir)
    record = _recorded(run_dir)
    if not record:
        raise CourseError(f"{run_dir} is not a saved ftcourse run (no {RUN_RECORD}).", "train it first with fine_tune(), or pass the right folder.")
    spec = get_method(record["method"])
    tokenizer = load_tokenizer(str(run_dir))
    if spec.name == "full":
        trained = load_model(str(run_dir))
    else:
        base = model if model is not None else load_model(record["base_model"], quantization=spec.quantization)
        trained = PeftModel.from_pretrained(base, str(run_dir))
    trained.eval()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunResult(run_dir.name, spec.name, trained, tokenizer, run_dir, metrics, record.get("history", []))


def _save_run(run_dir: Path, model, tokenizer, model_name: str, metrics: dict, record: dict) -> None:
    if run_dir.exists():
        print(f"Replacing the earlier run in {run_dir}")
    with atomic_directory(run_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        adapter_config = tmp / "adapter_config.json"
        if adapter_config.exists():  # name the base the way the user did, so the folder is portable
            config = json.loads(adapter_config.read_text())
            config["base_model_name_or_path"] = model_name
            atomic_write_json(adapter_config, config)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / RUN_RECORD, record)
