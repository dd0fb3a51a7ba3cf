"""The course's JSON configs (LoRA, training, quantization): typed, validated, with clear errors."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from ftcourse.errors import CourseError

__all__ = [
    "check_fields", "LIMITS", "load_settings", "LoraSettings", "QuantizationSettings", "Settings", "settings_dict",
    "TrainingSettings", "validate_settings",
]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters, named as in ``peft.LoraConfig``."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = ("q_proj", "v_proj")  # or "all-linear"
    bias: str = "none"
    task_type: str = "CAUSAL_LM"

    def __post_init__(self):
        check_fields(self)


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

    def __post_init__(self):
        check_fields(self)


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

_AT_LEAST_1 = (lambda v: v >= 1, "at least 1")
_OPTIONAL_COUNT = (lambda v: v is None or v >= 1, "at least 1 (or None: all)")
#: Allowed values per field (of the settings above and of ``hardware.Profile``): (test, what the value must be).
LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "r": _AT_LEAST_1,
    "lora_alpha": (lambda v: v > 0, "greater than 0"),
    "lora_dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "num_epochs": (lambda v: v > 0, "greater than 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, "at least 1, or -1 to train num_epochs"),
    "batch_size": _AT_LEAST_1,
    "eval_batch_size": _AT_LEAST_1,
    "gradient_accumulation_steps": _AT_LEAST_1,
    "max_seq_length": _AT_LEAST_1,
    "logging_steps": _AT_LEAST_1,
    "save_steps": _AT_LEAST_1,
    "learning_rate": (lambda v: v is None or v > 0, "greater than 0 (or None: the method's default)"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "weight_decay": (lambda v: v >= 0, "at least 0"),
    "seed": (lambda v: v >= 0, "at least 0"),
    "n_train": _OPTIONAL_COUNT,
    "n_eval": _OPTIONAL_COUNT,
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


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(obj: Any) -> None:
    """Check every field of a settings dataclass by type, range (:data:`LIMITS`) and choice.

    A bad value is a :class:`CourseError` that names the field, the value and what it must be.
    """
    hints = _hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if not _type_ok(list(value) if isinstance(value, tuple) else value, hint):
            raise CourseError(f"{f.name} must be {_type_name(hint)}, got {type(value).__name__} {value!r}.",
                              f"pass {f.name} as a value of type {_type_name(hint)}.")
        test, what = LIMITS.get(f.name, (None, ""))
        if test is not None and not test(value):
            raise CourseError(f"{f.name} must be {what}, got {value!r}.", f"set {f.name} to a value {what}.")
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise CourseError(f"{f.name} is {value!r}.", f"use one of: {', '.join(_CHOICES[f.name])}.")


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
    try:
        return cls(**values)
    except CourseError as exc:  # a value out of range
        raise CourseError(f"{source}: {exc.what}", exc.fix) from None


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
