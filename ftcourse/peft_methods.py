"""One registry of fine-tuning methods: each name builds its PEFT config (or none, for ``full``).

>>> spec = get_method("lora"); config = build_peft_config("lora", model, LoraSettings(r=8))

``target_modules`` resolve per architecture: a list of layer names, ``"all-linear"``, or
``"auto"``/``None`` for PEFT's default for the model type (``q_proj``/``v_proj`` on Llama, OPT and
Qwen2, ``c_attn`` on GPT-2, ``query_key_value`` on GPT-NeoX). A name that matches no layer is a
:class:`~ftcourse.errors.CourseError` listing the model's linear layers. A LoRA rank above the smallest target
layer's input or output size is refused before PEFT allocates the adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

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
from transformers.pytorch_utils import Conv1D

from ftcourse.configs import LoraSettings
from ftcourse.errors import CourseError

__all__ = [
    "build_peft_config", "get_method", "linear_layer_names", "Method", "METHODS", "NUM_VIRTUAL_TOKENS",
    "resolve_target_modules",
]

#: Number of virtual tokens for the prompt-learning methods.
NUM_VIRTUAL_TOKENS = 16
#: Layer types LoRA can adapt: linear layers (GPT-2's ``Conv1D`` is one, transposed), their
#: bitsandbytes-quantized versions, and embeddings.
_LINEAR_TYPES = (torch.nn.Linear, Conv1D)
_QUANTIZED_LINEAR = {"Linear4bit", "Linear8bitLt"}


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, _LINEAR_TYPES) or type(module).__name__ in _QUANTIZED_LINEAR


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """Short names (last path component) of the model's linear layers, the candidates for ``target_modules``."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name and _is_linear(module)})


def _adaptable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The layers ``target_modules`` may name, by full name: linear layers and embeddings."""
    return {n: m for n, m in model.named_modules() if n and (_is_linear(m) or isinstance(m, torch.nn.Embedding))}


def _matches(name: str, target: str) -> bool:
    """Whether a layer's full name matches a ``target_modules`` entry by its last path components, as PEFT matches it."""
    return name == target or name.endswith("." + target)


def _model_type(model: torch.nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", "")


def resolve_target_modules(model: torch.nn.Module, requested: Sequence[str] | str | None) -> list[str] | str:
    """Check ``target_modules`` against the model and return what PEFT should get.

    ``"all-linear"`` passes through (PEFT skips the output head); ``None`` or ``"auto"`` pick PEFT's
    default for the architecture. Each other name must match a linear (or embedding) layer by its
    last path components, as PEFT matches it; otherwise a :class:`CourseError` lists the linear layers.
    """
    if requested == "all-linear":
        return "all-linear"
    if requested is None or requested == "auto":
        default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(_model_type(model))
        if default is None:
            raise CourseError(
                f"No default target modules are known for model type {_model_type(model)!r}.",
                f"pass target_modules explicitly; this model's linear layers are: {', '.join(linear_layer_names(model))}.",
            )
        return list(default)
    requested = [requested] if isinstance(requested, str) else list(requested)
    adaptable = _adaptable_layers(model)
    missing = [t for t in requested if not any(_matches(n, t) for n in adaptable)]
    if missing:
        raise CourseError(
            f"target_modules {missing} match no linear layer of this {_model_type(model) or 'model'}.",
            f"choose from its linear layers: {', '.join(linear_layer_names(model))} (or use 'all-linear').",
        )
    return requested


def _layer_sizes(module: torch.nn.Module) -> tuple[int, int]:
    """(input, output) size of an adaptable layer (GPT-2's ``Conv1D`` stores its weight as input × output)."""
    if isinstance(module, torch.nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.nf
    return module.in_features, module.out_features


def _low_rank_targets(model: torch.nn.Module, settings: LoraSettings) -> list[str] | str:
    """The resolved ``target_modules``, after checking that ``settings.r`` fits the smallest target layer.

    A rank above a layer's min(input, output) adds parameters but no capacity (the rank of B·A is at most that); refused
    here, before PEFT allocates r × (input + output) weights per layer.
    """
    targets = resolve_target_modules(model, settings.target_modules)
    layers = _adaptable_layers(model)
    if targets == "all-linear":  # as PEFT: every linear layer but the output head
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        chosen = {n: m for n, m in layers.items() if _is_linear(m) and m is not head}
    else:
        chosen = {n: m for n, m in layers.items() if any(_matches(n, t) for t in targets)}
    sizes = {n: _layer_sizes(m) for n, m in chosen.items()}
    name = min(sizes, key=lambda n: min(sizes[n]), default=None)
    if name is not None and settings.r > min(sizes[name]):
        inputs, outputs = sizes[name]
        raise CourseError(
            f"LoRA rank r={settings.r} is larger than the smallest target layer ({name.rsplit('.', 1)[-1]}: {inputs} inputs, {outputs} outputs).",
            f"use r <= {min(inputs, outputs)}: a rank above min(inputs, outputs) adds weights but no capacity.",
        )
    return targets


def _lora(model, settings: LoraSettings, use_dora: bool = False, use_rslora: bool = False, **_) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=_low_rank_targets(model, settings),
        bias=settings.bias,
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),  # GPT-2 stores weights transposed
        use_dora=use_dora,
        use_rslora=use_rslora,
        task_type=TaskType.CAUSAL_LM,
    )


def _adalora(model, settings: LoraSettings, total_steps: int = 100, **_) -> AdaLoraConfig:
    # AdaLoRA needs a budgeting phase between its warm-up (tinit) and final (tfinal) phases.
    total_steps = max(total_steps, 10)
    return AdaLoraConfig(
        init_r=settings.r,
        target_r=max(1, settings.r // 2),
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=_low_rank_targets(model, settings),
        tinit=max(1, total_steps // 10),
        tfinal=max(1, total_steps // 5),
        deltaT=max(1, total_steps // 20),
        total_step=total_steps,
        task_type=TaskType.CAUSAL_LM,
    )


def _ia3(model, settings: LoraSettings, **_) -> IA3Config:
    model_type = _model_type(model)
    targets = TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(model_type)
    if targets is None:
        raise CourseError(f"IA3 has no default modules for model type {model_type!r}.", "use lora, or a Llama/OPT/GPT-2/GPT-NeoX/Qwen2 model.")
    feedforward = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[model_type]
    return IA3Config(target_modules=list(targets), feedforward_modules=list(feedforward), task_type=TaskType.CAUSAL_LM)


def _prompt_tuning(model, settings: LoraSettings, init_text: str | None = None, tokenizer_path: str | None = None, **_) -> PromptTuningConfig:
    if init_text and tokenizer_path:
        return PromptTuningConfig(
            num_virtual_tokens=NUM_VIRTUAL_TOKENS,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=init_text,
            tokenizer_name_or_path=tokenizer_path,
            task_type=TaskType.CAUSAL_LM,
        )
    return PromptTuningConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, task_type=TaskType.CAUSAL_LM)


def _p_tuning(model, settings: LoraSettings, **_) -> PromptEncoderConfig:
    return PromptEncoderConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, encoder_hidden_size=128, task_type=TaskType.CAUSAL_LM)


def _prefix_tuning(model, settings: LoraSettings, **_) -> PrefixTuningConfig:
    return PrefixTuningConfig(num_virtual_tokens=NUM_VIRTUAL_TOKENS, task_type=TaskType.CAUSAL_LM)


def _none(model, settings: LoraSettings, **_) -> None:
    return None


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: how to build its PEFT config and how to train it."""

    name: str
    description: str
    build: Callable[..., PeftConfig | None]
    learning_rate: float  # course default, tuned on the embedded model
    quantization: str | None = None  # base-model quantization the method needs
    prompt_learning: bool = False  # virtual tokens: the model's forward is changed
    low_rank: bool = False  # configured by LoraSettings (r, alpha, dropout, target modules)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("lora", "LoRA: low-rank update B·A added to the target layers", _lora, 2e-3, low_rank=True),
        Method("qlora", "LoRA on a 4-bit NF4 (double-quantized) frozen base", _lora, 2e-3, quantization="4bit", low_rank=True),
        Method("dora", "DoRA: LoRA with a learned magnitude per output column", partial(_lora, use_dora=True), 1e-3, low_rank=True),
        Method("rslora", "rsLoRA: LoRA scaled by alpha/sqrt(r) instead of alpha/r", partial(_lora, use_rslora=True), 5e-4, low_rank=True),
        Method("adalora", "AdaLoRA: LoRA whose rank budget is re-allocated during training", _adalora, 2e-3, low_rank=True),
        Method("ia3", "IA3: learned scaling vectors on keys, values and feed-forward", _ia3, 1e-2),
        Method("prompt_tuning", "Prompt tuning: trainable virtual-token embeddings before the input", _prompt_tuning, 3e-2, prompt_learning=True),
        Method("p_tuning", "P-Tuning: virtual tokens produced by a small prompt encoder (MLP)", _p_tuning, 3e-3, prompt_learning=True),
        Method("prefix_tuning", "Prefix tuning (P-Tuning v2): trainable key/value prefixes in every layer", _prefix_tuning, 1e-2, prompt_learning=True),
        Method("full", "Full fine-tuning: every weight is trained (for comparison)", _none, 5e-5),
    ]
}


def get_method(name: str) -> Method:
    """Look a method up by name (``-`` and ``_`` alike, any case); an unknown name is a :class:`CourseError` listing the valid ones."""
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise CourseError(f"Unknown fine-tuning method {name!r}.", f"use one of: {', '.join(METHODS)}.")
    return METHODS[key]


def build_peft_config(method: str, model: torch.nn.Module, settings: LoraSettings | None = None, **options) -> PeftConfig | None:
    """The PEFT config for ``method`` on ``model`` (``None`` for full fine-tuning).

    ``options`` reach the methods that use them: ``total_steps`` (AdaLoRA's rank schedule),
    ``init_text`` and ``tokenizer_path`` (prompt tuning initialised from a text).
    """
    return get_method(method).build(model, settings or LoraSettings(), **options)
