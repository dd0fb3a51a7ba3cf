"""What this machine offers: platform, accelerator, precision support, memory, and whether the Hub is reachable."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec

import psutil
import torch

from ftcourse.errors import CourseError

__all__ = ["CPU_BF16_VARIABLE", "cpu_supports_bf16", "cuda_supports_bf16", "detect_environment", "Environment", "hub_offline",
           "table"]

#: Set to ``0`` to make the course treat this CPU as one without fast bf16 (the fp32 path: a CPU whose bf16 is slow, or
#: to reproduce another kind of machine's numbers), ``1`` to force bf16; unset, ``/proc/cpuinfo`` decides.
CPU_BF16_VARIABLE = "FTCOURSE_CPU_BF16"


@dataclass(frozen=True)
class Environment:
    """What this machine offers for training."""

    platform: str  # "colab", "kaggle" or "local"
    device: str  # "cuda", "mps" or "cpu"
    device_name: str
    bf16: bool  # bf16 (autocast on CPU, native on GPU) is supported and fast
    fp16: bool
    ram_gb: float
    vram_gb: float | None
    cpu_count: int
    bitsandbytes: bool
    python: str = field(default_factory=lambda: platform.python_version())
    torch: str = field(default_factory=lambda: torch.__version__)

    def __str__(self) -> str:
        return table("Environment", dataclasses.asdict(self))


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX), or is Apple silicon; the environment
    variable :data:`CPU_BF16_VARIABLE` (``0`` or ``1``) overrides what the CPU says."""
    override = os.environ.get(CPU_BF16_VARIABLE, "").strip().lower()
    if override in {"0", "false", "no"}:
        return False
    if override in {"1", "true", "yes"}:
        return True
    if override:
        raise CourseError(f"{CPU_BF16_VARIABLE}={os.environ[CPU_BF16_VARIABLE]!r} is not understood",
                          "set it to 0 (the fp32 path) or 1 (bf16 autocast), or unset it to let the CPU decide")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return True
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cuda_supports_bf16(capability: tuple[int, int]) -> bool:
    """True for GPUs with native bf16 (compute capability 8.0+: Ampere, Ada, Hopper and later).

    ``torch.cuda.is_bf16_supported()`` can say True on older GPUs (a T4 is 7.5) because it counts
    emulation, which is slower than fp16 there; the course trains those in fp16.
    """
    return tuple(capability) >= (8, 0)


def _platform_name() -> str:
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return "kaggle"
    return "local"


@cache
def detect_environment() -> Environment:
    """Detect platform, accelerator, precision support, memory and bitsandbytes."""
    ram_gb = round(psutil.virtual_memory().total / 2**30, 1)
    common = dict(
        platform=_platform_name(),
        ram_gb=ram_gb,
        cpu_count=os.cpu_count() or 1,
        bitsandbytes=find_spec("bitsandbytes") is not None,
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Environment(
            device="cuda",
            device_name=props.name,
            bf16=cuda_supports_bf16(torch.cuda.get_device_capability(0)),
            fp16=True,
            vram_gb=round(props.total_memory / 2**30, 1),
            **common,
        )
    if torch.backends.mps.is_available():
        return Environment(device="mps", device_name="Apple MPS", bf16=False, fp16=True, vram_gb=None, **common)
    return Environment(
        device="cpu",
        device_name=platform.processor() or platform.machine(),
        bf16=cpu_supports_bf16(),
        fp16=False,
        vram_gb=None,
        **common,
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def table(title: str, values: dict) -> str:
    width = max(len(k) for k in values)
    return "\n".join([title, *(f"  {k:<{width}}  {v}" for k, v in values.items())])
