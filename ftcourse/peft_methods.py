"""One registry of fine-tuning methods: each name builds its PEFT config (or none, for ``full``).

>>> spec = METHODS["lora"]; config = spec.build(model, LoraSettings(r=8))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import (
    AdaLoraConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
)
from peft.utils import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)

from ftcourse.configs import LoraSettings
from ftcourse.errors import CourseError

#: Number of virtual tokens for the prompt-learning methods.
NUM_VIRTUAL_TOKENS = 16


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """Short names (last path component) of the model's linear layers, the candidates for ``target_modules``."""
    linear_types = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear_types += (Conv1D,)
    except ImportError:  # pragma: no cover
        pass
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, linear_types) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _model_type(model: torch.nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", "")


def resolve_target_modules(model: torch.nn.Module, requested: list[str] | tuple[str, ...] | str | None) -> list[str] | str:
    """Check ``target_modules`` against the model; ``None`` picks PEFT's default for the architecture.

    ``"all-linear"`` passes through (PEFT skips the output head). A name matching no
    linear layer is a :class:`CourseError` that lists the model's linear layer names.
    """
    if requested == "all-linear":
        return "all-linear"
    if requested is None:
        default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(_model_type(model))
        if default is None:
            raise CourseError(
                f"No default target modules are known for model type {_model_type(model)!r}.",
                f"pass target_modules explicitly; this model's linear layers are: {', '.join(linear_layer_names(model))}.",
            )
        return list(default)
    requested = [requested] if isinstance(requested, str) else list(requested)
    available = linear_layer_names(model)
    full_names = [n for n, _ in model.named_modules()]
    missing = [t for t in requested if t not in available and not any(n.endswith("." + t) for n in full_names)]
    if missing:
        raise CourseError(
            f"target_modules {missing} match no layer of this {_model_type(model) or 'model'}.",
            f"choose from its linear layers: {', '.join(available)} (or use 'all-linear').",
        )
    return requested


def _lora(model, settings: LoraSettings, **extra) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=resolve_target_modules(model, settings.target_modules),
        bias=settings.bias,
        task_type=TaskType.CAUSAL_LM,
        **extra,
    )


def _adalora(model, settings: LoraSettings, total_steps: int = 100) -> AdaLoraConfig:
    total_steps = max(total_steps, 10)
    return AdaLoraConfig(
        init_r=settings.r,
        target_r=max(1, settings.r // 2),
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=resolve_target_modules(model, settings.target_modules),
        tinit=max(1, total_steps // 10),
        tfinal=max(1, total_steps // 5),
        deltaT=max(1, total_steps // 20),
        total_step=total_steps,
        task_type=TaskType.CAUSAL_LM,
    )


def _ia3(model, settings: LoraSettings) -> IA3Config:
    model_type = _model_type(model)
    targets = TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(model_type)
    feedforward = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type)
    if targets is None:
        raise CourseError(f"IA3 has no default modules for model type {model_type!r}.", "use lora, or a Llama/OPT/GPT-2/GPT-NeoX/Qwen2 model.")
    return IA3Config(target_modules=list(targets), feedforward_modules=list(feedforward), task_type=TaskType.CAUSAL_LM)


def _prompt_tuning(model, settings: LoraSettings, init_text: str | None = None, tokenizer_path: str | None = None) -> PromptTuningConfig:
    if init_text and tokenizer_path:
        return PromptTuningConfig(
            num_virtual_tokens=NUM_VIRTUAL_TOKENS,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=init_text,
            tokenizer_name_or_path=tokenizer_path,
            task_type=TaskType.CAUSAL_LM,
        )
    return PromptTuningConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, task_type=TaskType.CAUSAL_LM)


def _p_tuning(model, settings: LoraSettings) -> PromptEncoderConfig:
    return PromptEncoderConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, encoder_hidden_size=128, task_type=TaskType.CAUSAL_LM)


def _prefix_tuning(model, settings: LoraSettings) -> PrefixTuningConfig:
    return PrefixTuningConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, task_type=TaskType.CAUSAL_LM)


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: how to build its PEFT config and how to train it."""

    name: str
    description: str
    build: Callable[..., PeftConfig | None]
    learning_rate: float  # course default, tuned on the embedded model
    quantization: str | None = None  # base-model quantization the method needs
    prompt_learning: bool = False  # virtual tokens: the model's forward is changed


def _none(model, settings):
    return None


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("lora", "LoRA: low-rank update B·A added to the target layers", _lora, 1e-3),
        Method("qlora", "LoRA on a 4-bit NF4 (double-quantized) frozen base", _lora, 1e-3, quantization="4bit"),
        Method("dora", "DoRA: LoRA with a learned magnitude per output column", lambda m, s: _lora(m, s, use_dora=True), 1e-3),
        Method("rslora", "rsLoRA: LoRA scaled by alpha/sqrt(r) instead of alpha/r", lambda m, s: _lora(m, s, use_rslora=True), 5e-4),
        Method("adalora", "AdaLoRA: LoRA whose rank budget is re-allocated during training", _adalora, 2e-3),
        Method("ia3", "IA3: learned scaling vectors on keys, values and feed-forward", _ia3, 1e-2),
        Method("prompt_tuning", "Prompt tuning: trainable virtual-token embeddings before the input", _prompt_tuning, 3e-2, prompt_learning=True),
        Method("p_tuning", "P-Tuning: virtual tokens produced by a small prompt encoder (MLP)", _p_tuning, 3e-3, prompt_learning=True),
        Method("prefix_tuning", "Prefix tuning (P-Tuning v2): trainable key/value prefixes in every layer", _prefix_tuning, 1e-2, prompt_learning=True),
        Method("full", "Full fine-tuning: every weight is trained (for comparison)", _none, 5e-5),
    ]
}


def get_method(name: str) -> Method:
    """Look a method up by name; an unknown name is a :class:`CourseError` listing the valid ones."""
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise CourseError(f"Unknown fine-tuning method {name!r}.", f"use one of: {', '.join(METHODS)}.")
    return METHODS[key]


def build_peft_config(method: str, model: torch.nn.Module, settings: LoraSettings | None = None, **kwargs) -> PeftConfig | None:
    """The PEFT config for ``method`` on ``model`` (``None`` for full fine-tuning)."""
    settings = settings or LoraSettings()
    spec = get_method(method)
    if spec.name in ("prompt_tuning", "adalora"):
        return spec.build(model, settings, **kwargs)
    return spec.build(model, settings)
