"""Memory: what a model's weights take, how much a block of code needed at its peak, and base-model variants.

Peak memory is measured, not estimated: on CUDA with the allocator's peak counter, on Linux with the
process's resident-set high-water mark (reset through ``/proc/self/clear_refs``), elsewhere with the
process's lifetime peak (``ru_maxrss``), which cannot be reset and is marked as such.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch

from ftcourse.errors import CourseError

__all__ = [
    "ACTIVATION_BYTES_PER_HIDDEN", "available_memory", "cpu_4bit_unpacker", "estimate_training_memory",
    "footprint_breakdown", "footprint_bytes", "make_resident", "MB", "PeakMemory", "quiet_bitsandbytes",
    "release_memory", "RUNTIME_OVERHEAD_BYTES", "track_peak", "unpack_cpu_4bit",
]

MB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Both constants are fitted to the embedded model's peak RSS when training LoRA with bf16 autocast on CPU, batch 8 x 153
# tokens: 3.0 GB without gradient checkpointing, 1.8 GB with it (the estimate gives the same to within 2%).
#: Memory the runtime needs besides weights, optimizer and activations (Python, torch, allocator caches).
RUNTIME_OVERHEAD_BYTES = 896 * 2**20
#: Activation bytes kept per token and layer, in units of hidden_size.
ACTIVATION_BYTES_PER_HIDDEN = 64

# ---------------------------------------------------------------- weights


def _quantization_bytes(param: torch.Tensor) -> int:
    """Bytes of a bitsandbytes parameter's quantization constants, kept beside the packed weights:
    4-bit block scales (absmax, nested absmax, code tables), 8-bit row scales (``SCB``)."""
    tensors = [getattr(param, "SCB", None)]
    state = getattr(param, "quant_state", None)
    if state is not None:  # bitsandbytes sets ``offset`` and ``state2`` only with double quantization
        nested = getattr(state, "state2", None)
        tensors += [state.absmax, state.code, getattr(state, "offset", None)]
        tensors += [nested.absmax, nested.code] if nested is not None else []
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() + _quantization_bytes(t) for t in tensors)


def footprint_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, 4-bit quantization constants included.

    Shared tensors (tied input/output embeddings) count once.
    """
    return _tensor_bytes(_unique(model.parameters(), model.buffers()))


def _unique(*groups) -> list[torch.Tensor]:
    seen, out = set(), []
    for group in groups:
        for t in group:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def footprint_breakdown(model: torch.nn.Module) -> dict[str, float]:
    """MB per kind of module: ``embeddings``, ``linear layers`` (quantized ones included) and ``other`` (norms, buffers)."""
    kinds: dict[str, float] = {"embeddings": 0.0, "linear layers": 0.0, "other": 0.0}
    seen: set[int] = set()
    for module in model.modules():
        own = [t for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)] if id(t) not in seen]
        seen.update(id(t) for t in own)
        if isinstance(module, torch.nn.Embedding):
            kind = "embeddings"
        elif isinstance(module, torch.nn.Linear):  # bitsandbytes' Linear4bit/Linear8bitLt subclass it
            kind = "linear layers"
        else:
            kind = "other"
        kinds[kind] += _tensor_bytes(own) / MB
    return {k: round(v, 3) for k, v in kinds.items()}


def make_resident(model: torch.nn.Module) -> None:
    """Read every weight once, so that memory-mapped weights are in RAM before a measurement starts.

    ``from_pretrained`` maps safetensors files into memory lazily: pages are only read (and counted
    as the process's memory) when first used, which would put the weights into whatever is measured next.
    """
    with torch.no_grad():
        for t in _unique(model.parameters(), model.buffers()):
            if t.device.type != "meta" and t.numel():
                t.view(-1)[:: max(1, 4096 // t.element_size())].sum()


def unpack_cpu_4bit(model: torch.nn.Module) -> int:
    """Undo bitsandbytes' CPU repacking of 4-bit weights, so that the model can be trained again; returns the layers restored.

    On CPUs with AVX512-BF16, the first inference of a 4-bit layer in eval mode repacks its weights for a fast kernel
    that has no backward pass: training afterwards gets no gradients (the pre-flight "parameters update" check fails).
    bitsandbytes itself undoes the packing only when saving or moving to a GPU.
    """
    restored = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            weight.data, weight.quant_state = cpu_4bit_unpacker()(weight.data, state)
            restored += 1
    return restored


def cpu_4bit_unpacker():
    """bitsandbytes' private inverse of its CPU weight packing (present in 0.50, the tested version), with a clear error when it is gone."""
    import bitsandbytes
    import bitsandbytes.functional as bnbf

    unpack = getattr(bnbf, "_convert_weight_packed_for_cpu_inverse", None)
    if unpack is None:
        raise CourseError(
            f"bitsandbytes {bitsandbytes.__version__} has no _convert_weight_packed_for_cpu_inverse, which the course uses to "
            "make 4-bit weights trainable again after CPU inference.",
            "install the tested version (pip install -c constraints.txt bitsandbytes), or reload the 4-bit model before training it.",
        )
    return unpack


# ---------------------------------------------------------------- peak memory


def release_memory() -> None:
    """Give freed memory back: collect garbage, empty the CUDA cache and trim glibc's heap (Linux)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset the process's resident-set high-water mark to its current size (Linux ≥ 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kb("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def _lifetime_peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


@dataclass
class PeakMemory:
    """What :func:`track_peak` measured: memory at the start, at the peak and at the end, and the time taken."""

    source: str  # "cuda", "rss" (resettable high-water mark) or "rss-lifetime" (peak of the whole process)
    start_mb: float = 0.0
    peak_mb: float = 0.0
    end_mb: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def added_mb(self) -> float:
        """How far memory rose above where it started: what the block needed at its peak."""
        return round(max(0.0, self.peak_mb - self.start_mb), 1)

    def __str__(self) -> str:
        return f"peak {self.peak_mb:,.0f} MB ({self.added_mb:+,.0f} MB over the start, {self.source}) in {self.seconds:.1f} s"


@contextlib.contextmanager
def track_peak(device: str | None = None) -> Iterator[PeakMemory]:
    """Measure the peak memory and the time of the ``with`` block.

    ``device="cuda"`` (the default when CUDA is available) reads the allocator's peak; otherwise
    the process's resident memory. The result is filled in when the block ends::

        with track_peak() as mem:
            fine_tune(...)
        print(mem.added_mb)
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise CourseError("track_peak(device='cuda') was asked for, but CUDA is not available.", "leave device unset to measure process memory.")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = PeakMemory("cuda", start_mb=torch.cuda.memory_allocated() / MB)
    elif _reset_peak_rss():
        result = PeakMemory("rss", start_mb=_status_kb("VmRSS") / 1024)
    else:
        result = PeakMemory("rss-lifetime", start_mb=psutil.Process().memory_info().rss / MB,
                            notes=["this system cannot reset the peak, so it is the process's lifetime peak"])
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = round(time.perf_counter() - start, 2)
        if result.source == "cuda":
            torch.cuda.synchronize()
            result.peak_mb, result.end_mb = torch.cuda.max_memory_allocated() / MB, torch.cuda.memory_allocated() / MB
        elif result.source == "rss":
            result.peak_mb, result.end_mb = _status_kb("VmHWM") / 1024, _status_kb("VmRSS") / 1024
        else:
            result.peak_mb, result.end_mb = _lifetime_peak_rss() / MB, psutil.Process().memory_info().rss / MB
        result.start_mb, result.peak_mb, result.end_mb = (round(v, 1) for v in (result.start_mb, result.peak_mb, result.end_mb))


# ---------------------------------------------------------------- base-model variants


@contextlib.contextmanager
def quiet_bitsandbytes() -> Iterator[None]:
    """Silence bitsandbytes' per-call 8-bit warning ("inputs will be cast ... to float16") inside the block."""
    log = logging.getLogger("bitsandbytes")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def estimate_training_memory(model: torch.nn.Module, batch_size: int, seq_length: int, gradient_checkpointing: bool = False) -> int:
    """Rough bytes needed: runtime + weights + (grad + 2 Adam states) of trainable params + activations.

    Activations: ``ACTIVATION_BYTES_PER_HIDDEN * hidden`` bytes per token and layer, plus fp32 logits;
    with gradient checkpointing only each layer's input is kept, plus one layer recomputed at a time.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", 1024) or 1024
    layers = getattr(config, "num_hidden_layers", 12) or 12
    vocab = getattr(config, "vocab_size", 32000) or 32000
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * hidden
    kept = layers * hidden * 4 + per_layer if gradient_checkpointing else layers * per_layer
    activations = batch_size * seq_length * (kept + vocab * 4)
    overhead = RUNTIME_OVERHEAD_BYTES if not torch.cuda.is_available() else 0
    return int(overhead + weights + trainable * 12 + activations)


def available_memory() -> int:
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    return int(psutil.virtual_memory().available)
