"""ftcourse: fine-tune a language model in a few readable steps; the course's notebooks, scripts and tests call it.

The names a user needs are here, each loaded on first use (``import ftcourse`` stays cheap: no torch until then)::

    import ftcourse
    profile = ftcourse.get_profile("cpu")
    run = ftcourse.fine_tune(records, model=profile.model)

The rest of the library is in its modules (``ftcourse.models``, ``ftcourse.train``, ...); the course's own content is in
``ftcourse.course`` and its tooling in ``ftcourse.tools``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"


class _DropKernelDownloadNotice(logging.Filter):
    """bitsandbytes, imported by peft and the Trainer, tries to download an optional CPU kernel from the Hub on CPUs with
    AVX512-BF16 and logs a warning that asks for ``pip install kernels`` when it cannot; it falls back to its own kernel.
    Offline that advice cannot work, so the course drops this one message (a logging filter on that logger alone; no
    warning filter of the process changes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelDownloadNotice())

#: Public name -> the module that defines it.
_EXPORTS = {
    "CourseError": "errors",
    "detect_environment": "hardware",
    "DevicePolicy": "device",
    "device_policy": "device",
    "Profile": "profiles",
    "get_profile": "profiles",
    "LoraSettings": "configs",
    "TrainingSettings": "configs",
    "QuantizationSettings": "configs",
    "read_dataset": "data",
    "split_dataset": "data",
    "load_model": "models",
    "load_tokenizer": "models",
    "fine_tune": "train",
    "RunResult": "runs",
    "load_run": "runs",
    "evaluate_model": "evaluation",
    "compare": "evaluation",
    "generate": "generation",
    "classify": "generation",
    "merge_adapter": "deploy",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ftcourse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ftcourse.{_EXPORTS[name]}"), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
