"""The course's JSON configs (LoRA, training, quantization): typed, validated, with clear errors.

Each settings class is a frozen pydantic model: types are strict (a bool is not an int, ``1`` is a fine float), numbers
are finite and in range, choices are ``Literal``. A bad value is a :class:`CourseError` naming the field, the value and
what it must be; ``settings.replace(r=8)`` is a changed copy, validated again.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic.fields import FieldInfo

from ftcourse.errors import CourseError

__all__ = [
    "Count", "CourseSettings", "load_settings", "LoraSettings", "QuantizationSettings", "Real", "Settings", "settings_dict",
    "Steps", "TrainingSettings",
]


def _keep_int(value: Any, handler: Any) -> Any:
    """Validate as a float but keep an int as given (saved runs' fingerprints hash the values as they were passed)."""
    checked = handler(value)
    return value if type(value) is int else checked


def _steps(value: int) -> int:
    """``max_steps``: at least 1, or -1 (train ``num_epochs``)."""
    if value != -1 and value < 1:
        raise ValueError("not -1 and below 1")
    return value


#: A finite number (an int stays an int); a bool is refused.
Real = Annotated[float, Field(strict=True, allow_inf_nan=False), WrapValidator(_keep_int)]
#: A whole number of at least 1; a bool or a float is refused.
Count = Annotated[int, Field(strict=True, ge=1, description="at least 1")]
#: Optimizer steps: at least 1, or -1 to train ``num_epochs``.
Steps = Annotated[int, Field(strict=True, description="at least 1, or -1 to train num_epochs"), AfterValidator(_steps)]


class CourseSettings(BaseModel):
    """Frozen, validated settings; a bad value is a :class:`CourseError` (never a pydantic traceback)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _course_error(type(self), values, exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise CourseError(f"{type(self).__name__} is frozen: {name} cannot be changed in place.",
                          f"make a changed copy: settings = settings.replace({name}=...).")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like a new object."""
        return type(self)(**{**dict(self), **changes})


class LoraSettings(CourseSettings):
    """LoRA hyper-parameters, named as in ``peft.LoraConfig``."""

    r: Count = 16
    lora_alpha: Real = Field(32, gt=0, description="greater than 0")
    lora_dropout: Real = Field(0.05, ge=0, lt=1, description="at least 0 and below 1")
    target_modules: list[str] | Literal["all-linear", "auto"] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1, description="a non-empty list of layer names",
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    task_type: Literal["CAUSAL_LM", "SEQ_CLS"] = "CAUSAL_LM"


class TrainingSettings(CourseSettings):
    """Training hyper-parameters; names follow the original course's command-line flags."""

    num_epochs: Real = Field(3, gt=0, description="greater than 0")
    max_steps: Steps = -1  # > 0 overrides num_epochs
    batch_size: Count = 4
    gradient_accumulation_steps: Count = 4
    learning_rate: Real | None = Field(None, gt=0, description="greater than 0 (or None: the method's default)")
    warmup_ratio: Real = Field(0.05, ge=0, le=1, description="between 0 and 1")
    weight_decay: Real = Field(0.0, ge=0, description="at least 0")
    max_seq_length: Count = 256
    logging_steps: Count = 5
    save_steps: Count = 50
    eval_steps: int | None = Field(None, strict=True, ge=1, description="at least 1 (or None: evaluate once, at the last step)")
    seed: int = Field(42, strict=True, ge=0, description="at least 0")


class QuantizationSettings(CourseSettings):
    """4-bit quantization settings, named as in ``transformers.BitsAndBytesConfig``."""

    load_in_4bit: bool = Field(True, strict=True)
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = Field(True, strict=True)
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


Settings = TypeVar("Settings", bound=CourseSettings)

#: pydantic error types that mean "the right type, out of range" (the rest mean "the wrong type").
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "value_error", "finite_number"}


def _type_name(hint: Any) -> str:
    """``int``, ``float or None``, ``list of str or 'all-linear' or 'auto'``: a field's type in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return "None" if hint is type(None) else hint.__name__


def _field_error(name: str, field: FieldInfo, value: Any, kind: str) -> CourseError:
    """The error for one bad field: a missing value, a choice, a range or a type."""
    if kind == "missing":
        return CourseError(f"{name} is missing.", f"pass {name} as {_type_name(field.annotation)}.")
    if typing.get_origin(field.annotation) is Literal:
        return CourseError(f"{name} is {value!r}.", f"set {name} to one of: {', '.join(typing.get_args(field.annotation))}.")
    if kind in _RANGE_ERRORS:
        what = f"a finite number, {field.description}" if kind == "finite_number" else field.description
        return CourseError(f"{name} must be {what}, got {value!r}.", f"set {name} to a value that is {field.description}.")
    hint = _type_name(field.annotation)
    return CourseError(f"{name} must be {hint}, got {type(value).__name__} {value!r}.", f"pass {name} as a value of type {hint}.")


def _course_error(cls: type[CourseSettings], values: dict[str, Any], exc: ValidationError) -> CourseError:
    """The learner's error for pydantic's: unknown keys named with the valid ones, else the first bad field."""
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        return CourseError(f"unknown key{'s' if len(unknown) > 1 else ''} {keys} (not a field of {cls.__name__}).",
                           f"valid fields are: {', '.join(cls.model_fields)}.")
    first = errors[0]
    name = str(first["loc"][0])
    return _field_error(name, cls.model_fields[name], values.get(name), first["type"])


def load_settings(cls: type[Settings], path: str | Path) -> Settings:
    """Read a JSON config file into ``cls``, validating every key; an error names the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"Config file {path} does not exist.", "check the path (the course's configs live in configs/).") from None
    except json.JSONDecodeError as exc:
        raise CourseError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}).", "fix the JSON syntax at that line.") from None
    if not isinstance(values, dict):
        raise CourseError(f"{path}: expected a JSON object of settings, got {type(values).__name__}.", "wrap the settings in {...}.")
    try:
        return cls(**values)
    except CourseError as exc:
        raise CourseError(f"{path}: {exc.what}", exc.fix) from None


def settings_dict(settings: CourseSettings) -> dict[str, Any]:
    """Plain JSON-ready dict of a settings object (the values as given; ``target_modules`` a list or a string)."""
    return settings.model_dump()
