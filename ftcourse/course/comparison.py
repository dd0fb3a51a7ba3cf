"""Compare fine-tuning configurations on the same data and step budget: parameters, memory, time, accuracy.

Every number in the tables is measured on the model: parameter counts by PEFT itself (on a
weightless copy of the model), peak memory with :func:`ftcourse.memory.track_peak`, accuracy by
label-constrained generation on held-out records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ftcourse.configs import LoraSettings
from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.errors import CourseError
from ftcourse.evaluation import evaluate_model
from ftcourse.fileio import slug
from ftcourse.generation import perplexity
from ftcourse.memory import MB, footprint_breakdown, footprint_bytes, make_resident, quiet_bitsandbytes, release_memory, track_peak
from ftcourse.metrics import wilson_interval
from ftcourse.models import count_parameters, load_model, load_tokenizer, resolve_model, weightless_copy
from ftcourse.peft_methods import build_peft_config, get_method
from ftcourse.profiles import Profile
from ftcourse.train import fine_tune, settings_from_profile

__all__ = [
    "accuracy_with_interval", "classification_accuracy", "classification_correct", "compare_methods", "config_summary", "load_variant", "lora_parameter_table",
    "peft_parameter_count", "run_and_score", "TARGET_SETS", "VariantLoad", "VARIANTS",
]

#: Target-module sets of the LoRA parameter table (lesson 02).
TARGET_SETS: dict[str, list[str] | str] = {
    "q, v": ["q_proj", "v_proj"],
    "q, k, v, o": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": "all-linear",
}


#: Base-model variants of lesson 04: name -> keyword arguments of :func:`ftcourse.models.load_model`.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"dtype": "float32"},
    "bf16": {"dtype": "bfloat16"},
    "8bit": {"quantization": "8bit"},
    "4bit": {"quantization": "4bit"},
}


@dataclass
class VariantLoad:
    """One base-model variant loaded (or not) by :func:`load_variant`, with what was measured."""

    variant: str
    model: Any = None
    footprint_mb: float | None = None
    breakdown: dict[str, float] | None = None  # MB per kind of module, at load (see :func:`footprint_breakdown`)
    load_seconds: float | None = None
    perplexity: float | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """A table row: the numbers, or the error that stopped the variant."""
        return {"variant": self.variant, "footprint_mb": self.footprint_mb, "load_seconds": self.load_seconds,
                "perplexity": self.perplexity, "status": "ok" if self.error is None else f"failed: {self.error}"}


def load_variant(name: str, variant: str, texts: Sequence[str] = (), tokenizer=None, max_length: int = 128,
                 progress: bool = True) -> VariantLoad:
    """Load ``name`` as one of :data:`VARIANTS`, measure its footprint and load time, and (with ``texts``) its perplexity.

    A variant that cannot load or run here (e.g. no bitsandbytes backend for this device) does not raise:
    the returned :class:`VariantLoad` carries the error message instead of a model.
    """
    if variant not in VARIANTS:
        raise CourseError(f"Unknown base-model variant {variant!r}.", f"use one of: {', '.join(VARIANTS)}.")
    resolve_model(name)  # a wrong name is the caller's mistake: raise it, do not report it as the variant failing
    result = VariantLoad(variant)
    start = time.perf_counter()
    try:
        with quiet_bitsandbytes():
            result.model = load_model(name, **VARIANTS[variant])
            result.load_seconds = round(time.perf_counter() - start, 1)
            result.footprint_mb = round(footprint_bytes(result.model) / MB, 1)  # before any forward pass, which may repack 4-bit weights
            result.breakdown = footprint_breakdown(result.model)
            if texts:
                result.perplexity = round(perplexity(result.model, tokenizer, texts, max_length=max_length, progress=progress), 2)
    except Exception as exc:  # e.g. no bitsandbytes backend for this device: report it, keep going
        message = " ".join(str(exc).split())
        result.model, result.error = None, f"{type(exc).__name__}: {message[:300]}"
    return result


def classification_correct(model, tokenizer, records: Sequence[dict[str, Any]], labels: Sequence[str] = INTENT_LABELS,
                           progress: bool = True) -> list[bool]:
    """Per record: is the label-constrained answer (:func:`ftcourse.evaluation.evaluate_model`) its reference label?

    What a paired test of two models on the same records needs (:func:`ftcourse.metrics.mcnemar_test`).
    """
    result = evaluate_model(model, tokenizer, records, metrics=["accuracy"], labels=labels, progress=progress)
    task = next(iter(result.tasks.values()))
    return [p == r for p, r in zip(task.predictions, task.references)]


def classification_accuracy(model, tokenizer, records: Sequence[dict[str, Any]], labels: Sequence[str] = INTENT_LABELS,
                            progress: bool = True) -> float:
    """Accuracy on processed classification records: the share of :func:`classification_correct`."""
    correct = classification_correct(model, tokenizer, records, labels, progress)
    return sum(correct) / len(correct) if correct else 0.0


def accuracy_with_interval(correct: Sequence[bool]) -> str:
    """An accuracy and its 95% Wilson interval (:func:`ftcourse.metrics.wilson_interval`) as text: ``0.80 (95% CI 0.49–0.94)``."""
    low, high = wilson_interval(sum(correct), len(correct))
    return f"{sum(correct) / len(correct):.2f} (95% CI {low:.2f}–{high:.2f})"


def peft_parameter_count(model: torch.nn.Module, method: str, lora: LoraSettings | None = None) -> dict[str, float]:
    """Trainable and total parameters that ``method`` would give ``model``, counted by PEFT on a weightless copy."""
    from peft import get_peft_model

    shell = weightless_copy(model)
    config = build_peft_config(method, shell, lora)
    return count_parameters(shell if config is None else get_peft_model(shell, config))


def lora_parameter_table(model: torch.nn.Module, ranks: Sequence[int] = (4, 8, 16, 32),
                         target_sets: Mapping[str, list[str] | str] | None = None) -> list[dict[str, Any]]:
    """Trainable LoRA parameters for each rank × target-module set, counted on the real model's shapes."""
    rows = []
    for label, targets in (target_sets or TARGET_SETS).items():
        for r in ranks:
            counts = peft_parameter_count(model, "lora", LoraSettings(r=r, lora_alpha=2 * r, target_modules=targets))
            rows.append({"target_modules": label, "r": r, "trainable": counts["trainable"],
                         "trainable_percent": round(counts["trainable_percent"], 4)})
    return rows


def config_summary(config) -> dict[str, Any]:
    """The fields of a PEFT config that differ from its class defaults (what the method actually sets)."""
    defaults = type(config)()
    skip = {"peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode"}
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in skip and value != getattr(defaults, f.name, None):
            out[f.name] = sorted(value) if isinstance(value, set) else value
    return out


def run_and_score(name: str, train_records: Sequence[dict[str, Any]], test_records: Sequence[dict[str, Any]] | None,
                  profile: Profile, labels: Sequence[str] = INTENT_LABELS, eval_records: Sequence[dict[str, Any]] | None = None,
                  model: torch.nn.Module | None = None, run_prefix: str = "compare", progress: bool = True,
                  **fine_tune_kwargs: Any) -> dict[str, Any]:
    """Train one configuration (``fine_tune_kwargs``, e.g. ``method="ia3"``) and score it; one table row.

    The base is ``model`` (modified in place) or a fresh ``profile.model``. Memory is split in two:
    ``weights_mb``, the base model's tensors, and ``training_mb``, what training added on top at its
    peak (adapter, gradients, optimizer states, activations). ``accuracy`` is on ``test_records``
    (skipped when None), and ``correct`` says for each test record whether it was answered right. The run is saved as ``models/fine_tuned/<run_prefix>-<name>-<profile>``
    (lower case; spaces and signs become ``-``).
    """
    method = get_method(fine_tune_kwargs.pop("method", "lora"))
    settings = fine_tune_kwargs.pop("settings", None) or settings_from_profile(profile)
    tokenizer = load_tokenizer(profile.model)
    model = model if model is not None else load_model(profile.model, quantization=method.quantization)
    weights_mb = footprint_bytes(model) / MB
    make_resident(model)
    release_memory()
    with track_peak() as mem:
        run = fine_tune(train_records, model=model, tokenizer=tokenizer, method=method.name, settings=settings,
                        eval_records=eval_records, run_name=slug(f"{run_prefix}-{name}-{profile.name}".lower()),
                        progress=progress, **fine_tune_kwargs)
    row = {
        "name": name,
        "method": method.name,
        "trainable_parameters": run.metrics["trainable_parameters"],
        "trainable_percent": run.metrics["trainable_percent"],
        "weights_mb": round(weights_mb, 1),
        "training_mb": mem.added_mb,
        "train_seconds": run.metrics["train_seconds"],
        "seconds_per_step": round(run.metrics["train_seconds"] / max(1, run.metrics["steps"]), 2),
        "train_loss": run.metrics["train_loss"],
        "gradient_checkpointing": run.metrics["gradient_checkpointing"],  # on when asked, or when memory needed it
    }
    if test_records:
        row["correct"] = classification_correct(run.model, tokenizer, test_records, labels, progress)
        row["accuracy"] = round(sum(row["correct"]) / len(row["correct"]), 4)
    del run, model
    release_memory()
    return row


def compare_methods(methods: Sequence[str], train_records: Sequence[dict[str, Any]], test_records: Sequence[dict[str, Any]],
                    profile: Profile, **kwargs: Any) -> list[dict[str, Any]]:
    """Train each method on the same data and step budget, each from a fresh base; one :func:`run_and_score` row per method."""
    return [run_and_score(m, train_records, test_records, profile, method=m, **kwargs) for m in methods]
