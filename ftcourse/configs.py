"""The course's JSON configs (LoRA, training, quantization): typed, validated, with clear errors."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ftcourse.errors import CourseError


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters, named as in ``peft.LoraConfig``."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = ("q_proj", "v_proj")  # or "all-linear"
    bias: str = "none"
    task_type: str = "CAUSAL_LM"


@dataclass(frozen=True)
class TrainingSettings:
    """Training hyper-parameters; names follow the original course's command-line flags."""

    num_epochs: float = 3
    max_steps: int = -1  # > 0 overrides num_epochs
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    learning_rate: float | None = None  # None: the method's default (ftcourse.peft_methods)
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_seq_length: int = 256
    logging_steps: int = 5
    save_steps: int = 50
    seed: int = 42


@dataclass(frozen=True)
class QuantizationSettings:
    """4-bit quantization settings, named as in ``transformers.BitsAndBytesConfig``."""

    load_in_4bit: bool = True
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str = "bfloat16"


_CHOICES = {
    "bias": ("none", "all", "lora_only"),
    "task_type": ("CAUSAL_LM", "SEQ_CLS"),
    "bnb_4bit_quant_type": ("nf4", "fp4"),
    "bnb_4bit_compute_dtype": ("bfloat16", "float16", "float32"),
}

Settings = TypeVar("Settings", LoraSettings, TrainingSettings, QuantizationSettings)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def validate_settings(cls: type[Settings], values: dict[str, Any], source: str = "config") -> Settings:
    """Build ``cls`` from a dict; an unknown key, wrong type or bad choice is a :class:`CourseError` naming it."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key, value in values.items():
        if key not in hints:
            raise CourseError(f"{source}: unknown key {key!r}.", f"valid keys are: {', '.join(known)}.")
        if not _type_ok(value, hints[key]):
            raise CourseError(
                f"{source}: key {key!r} must be {_type_name(hints[key])}, got {type(value).__name__} {value!r}.",
                f"change {key!r} to a value of type {_type_name(hints[key])}.",
            )
        if key in _CHOICES and value not in _CHOICES[key]:
            raise CourseError(f"{source}: key {key!r} is {value!r}.", f"use one of: {', '.join(_CHOICES[key])}.")
    return cls(**values)


def load_settings(cls: type[Settings], path: str | Path) -> Settings:
    """Read a JSON config file into ``cls``, validating every key."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"Config file {path} does not exist.", "check the path (the course's configs live in configs/).") from None
    except json.JSONDecodeError as exc:
        raise CourseError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}).", "fix the JSON syntax at that line.") from None
    if not isinstance(values, dict):
        raise CourseError(f"{path}: expected a JSON object of settings, got {type(values).__name__}.", "wrap the settings in {...}.")
    return validate_settings(cls, values, source=str(path))


def settings_dict(settings: LoraSettings | TrainingSettings | QuantizationSettings) -> dict[str, Any]:
    """Plain JSON-ready dict of a settings object (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
