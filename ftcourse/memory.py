"""Memory: what a model's weights take, what training it needs (one model, :func:`training_memory`), how much a block of
code needed at its peak (one mechanism, :func:`track_peak`), and base-model variants.

Peak memory is measured, not estimated: on CUDA with the allocator's peak counter, on Linux with the
process's resident-set high-water mark (reset through ``/proc/self/clear_refs``), elsewhere with the
process's lifetime peak (``ru_maxrss``), which cannot be reset and is marked as such; for child processes
(a notebook's kernel) by sampling the resident memory of the process tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import resource
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import torch

from ftcourse.errors import CourseError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from ftcourse.configs import LoraSettings

__all__ = [
    "ACTIVATION_BYTES_PER_HIDDEN", "available_memory", "cpu_4bit_unpacker", "footprint_breakdown", "footprint_bytes",
    "make_resident", "MB", "MemoryBreakdown", "model_shape", "MODEL_SHAPES", "NF4_BYTES", "PeakMemory", "PRECISION_BYTES",
    "quiet_bitsandbytes", "release_memory", "RUNTIME_OVERHEAD_BYTES", "track_peak", "training_memory", "unpack_cpu_4bit",
]

MB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Both constants are fitted on this course's CPU, to the embedded model's peak RSS when training LoRA with bf16 autocast,
# batch 8 x 153 tokens: 3.0 GB without gradient checkpointing, 1.8 GB with it (the estimate gives the same to within 2%).
# training_memory uses them for CPU training only; on a GPU it uses Korthikanti et al.'s activations and no overhead.
#: Memory the runtime needs on CPU besides weights, optimizer and activations (Python, torch, allocator caches).
RUNTIME_OVERHEAD_BYTES = 896 * 2**20
#: Activation bytes kept per token and layer on CPU, in units of hidden_size.
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


def _is_linear(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def _tensors_by_kind(model: torch.nn.Module, skip: Iterable[int] = ()) -> Iterator[tuple[str, torch.Tensor, bool]]:
    """(kind, tensor, quantizable) for each parameter and buffer of ``model`` once, the tensors whose ids are in ``skip`` left out.

    Kinds: ``embeddings`` (input embeddings, and the output layer when it is tied to them), ``lm_head`` (an untied output
    layer), ``linear`` (every other linear layer; bitsandbytes' 4-bit and 8-bit layers subclass ``nn.Linear``, GPT-2's are
    ``Conv1D``) and ``norms`` (the rest: norm weights and buffers). ``quantizable``: the weight of a ``linear`` layer, what 4-bit loading stores in NF4.
    """
    head = getattr(model, "get_output_embeddings", lambda: None)()
    seen = set(skip)
    for module in model.modules():
        kind = ("embeddings" if isinstance(module, torch.nn.Embedding) else "lm_head" if module is head
                else "linear" if _is_linear(module) else "norms")
        for name, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if id(t) not in seen:
                seen.add(id(t))
                yield kind, t, kind == "linear" and name == "weight"


def footprint_breakdown(model: torch.nn.Module) -> dict[str, float]:
    """MB per kind of module: ``embeddings``, ``linear layers`` (quantized ones and an untied output layer included) and
    ``other`` (norms, buffers)."""
    names = {"embeddings": "embeddings", "lm_head": "linear layers", "linear": "linear layers", "norms": "other"}
    kinds = dict.fromkeys(("embeddings", "linear layers", "other"), 0)
    for kind, t, _ in _tensors_by_kind(model):
        kinds[names[kind]] += _tensor_bytes([t])
    return {k: round(v / MB, 3) for k, v in kinds.items()}


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

    source: str  # "cuda", "rss" (resettable high-water mark), "rss-lifetime" (peak of the whole process) or "rss-children" (sampled)
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


class _TreeSampler:
    """Samples the summed resident memory of this process's children (recursively) in a thread."""

    def __init__(self, interval: float):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def sample() -> int:
        total = 0
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop sampling and take one last sample (the children still running count): its bytes."""
        self._stop.set()
        self._thread.join()
        last = self.sample()
        self.peak = max(self.peak, last)
        return last


def _start_peak(device: str | None) -> PeakMemory:
    """Reset the peak counter of ``device`` (CUDA, or this process's resident memory) and note where memory starts."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise CourseError("track_peak(device='cuda') was asked for, but CUDA is not available.", "leave device unset to measure process memory.")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return PeakMemory("cuda", start_mb=torch.cuda.memory_allocated() / MB)
    if _reset_peak_rss():
        return PeakMemory("rss", start_mb=_status_kb("VmRSS") / 1024)
    return PeakMemory("rss-lifetime", start_mb=psutil.Process().memory_info().rss / MB,
                      notes=["this system cannot reset the peak, so it is the process's lifetime peak"])


@contextlib.contextmanager
def track_peak(device: str | None = None, children: bool = False, interval: float = 0.5) -> Iterator[PeakMemory]:
    """Measure the peak memory and the time of the ``with`` block.

    ``device="cuda"`` (the default when CUDA is available) reads the allocator's peak; otherwise
    the process's resident memory. The result is filled in when the block ends::

        with track_peak() as mem:
            fine_tune(...)
        print(mem.added_mb)

    ``children=True`` measures the processes this one starts instead (a notebook's kernel and what it launches): their
    summed resident memory, sampled every ``interval`` seconds and once more when the block ends; a peak shorter than
    the interval can be missed.
    """
    sampler = _TreeSampler(interval) if children else None
    if sampler is None:
        result = _start_peak(device)
    elif device not in (None, "cpu"):
        raise CourseError(f"track_peak(device={device!r}, children=True): child processes are measured by their resident memory.",
                          "leave device unset with children=True.")
    else:
        result = PeakMemory("rss-children", start_mb=sampler.sample() / MB, notes=[f"sampled every {interval} s: a shorter peak can be missed"])
        sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = round(time.perf_counter() - start, 2)
        if result.source == "cuda":
            torch.cuda.synchronize()
            result.peak_mb, result.end_mb = torch.cuda.max_memory_allocated() / MB, torch.cuda.memory_allocated() / MB
        elif sampler is not None:
            result.end_mb = sampler.stop() / MB
            result.peak_mb = sampler.peak / MB
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


# ---------------------------------------------------------------- training memory (one model)

#: Bytes per weight of the 16- and 32-bit storage precisions.
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
#: Bytes per weight of NF4 with double quantization: 4 bits, an 8-bit absmax per block of 64 weights and an fp32 constant
#: per 256 blocks, 4 + 8/64 + 32/(64·256) = 4.127 bits (QLoRA, Dettmers et al. 2023, §3). bitsandbytes also keeps two code
#: tables (16 and 256 fp32 values) per layer, which this leaves out (~1 KiB a layer).
NF4_BYTES = 4.127 / 8
#: Published shapes (each model's config.json) for sizing a model without its weights: ``LlamaConfig(**MODEL_SHAPES[name])``.
MODEL_SHAPES = {
    "SmolLM2-1.7B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                         vocab_size=49152, tie_word_embeddings=True),
    "Llama-2-7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       vocab_size=32000, tie_word_embeddings=False),
    "Llama-2-70B": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                        vocab_size=32000, tie_word_embeddings=False),
}
_METHODS = ("full", "lora", "qlora")
_WEIGHT_PARTS = ("embeddings", "lm_head", "linear", "norms", "adapter")


def _check_setup(gpus: int, zero_stage: int) -> None:
    if zero_stage not in (0, 1, 2, 3) or not isinstance(gpus, int) or gpus < 1:
        raise CourseError(f"zero_stage={zero_stage}, gpus={gpus} is not a setup.", "zero_stage is 0-3 and gpus a whole number >= 1.")


def _trainable_states(numel: float, element_size: float) -> tuple[float, float]:
    """(gradient bytes, AdamW state bytes) of ``numel`` trainable weights of ``element_size`` bytes: the gradient in the
    weight's dtype; two fp32 moments, plus an fp32 master copy of a 16-bit weight (mixed precision: K = 12 in the ZeRO paper)."""
    return numel * element_size, numel * (8 + (4 if element_size < 4 else 0))


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes that training holds on one device, by part (:func:`training_memory` fills it in)."""

    embeddings: float = 0.0  # input embeddings, and the output layer when it is tied to them
    lm_head: float = 0.0  # an untied output layer
    linear: float = 0.0  # the decoder's linear layers (NF4 in QLoRA)
    norms: float = 0.0  # norms and the other small tensors (buffers such as rotary frequencies)
    adapter: float = 0.0  # the weights an adapter adds (LoRA's A and B)
    gradients: float = 0.0  # one per trainable weight, in its dtype
    optimizer: float = 0.0  # AdamW's two fp32 moments, and an fp32 master copy of 16-bit trainable weights
    activations: float = 0.0  # kept for the backward pass
    logits: float = 0.0  # the fp32 logits the loss is computed from
    overhead: float = 0.0  # the runtime (on CPU; fitted here)

    @property
    def weights(self) -> float:
        return sum(getattr(self, part) for part in _WEIGHT_PARTS)

    @property
    def model_states(self) -> float:
        """Weights, gradients and optimizer states: what ZeRO shards."""
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations + self.logits + self.overhead

    def sharded(self, gpus: int, zero_stage: int) -> MemoryBreakdown:
        """One GPU's part under ZeRO over ``gpus`` data-parallel GPUs (Rajbhandari et al. 2020): stage 1 divides the optimizer
        states, stage 2 also the gradients, stage 3 (= FSDP full shard) also the weights. Activations, logits and the runtime
        belong to each GPU's own micro-batch and process: never divided."""
        _check_setup(gpus, zero_stage)
        split = {stage: gpus if zero_stage >= stage else 1 for stage in (1, 2, 3)}
        return replace(self, optimizer=self.optimizer / split[1], gradients=self.gradients / split[2],
                       **{part: getattr(self, part) / split[3] for part in _WEIGHT_PARTS})

    @classmethod
    def of_counts(cls, frozen: float, trainable: float, frozen_bytes: float = 2.0, trainable_bytes: float = 4.0) -> MemoryBreakdown:
        """The model states of a model known only by its parameter counts: ``frozen`` weights of ``frozen_bytes`` each (all
        counted as ``linear``) and ``trainable`` ones of ``trainable_bytes`` (as ``adapter``) with their gradients and AdamW states."""
        gradients, optimizer = _trainable_states(trainable, trainable_bytes)
        return cls(linear=frozen * frozen_bytes, adapter=trainable * trainable_bytes, gradients=gradients, optimizer=optimizer)


def training_memory(model: torch.nn.Module | PretrainedConfig, method: str | None = None, precision: str | None = None, *,
                    batch_size: int = 1, seq_length: int = 2048, gradient_checkpointing: bool = False, gpus: int = 1,
                    zero_stage: int = 0, lora: LoraSettings | None = None, device: str | None = None) -> MemoryBreakdown:
    """What training ``model`` holds in memory, by part, on one of ``gpus`` data-parallel GPUs under ZeRO ``zero_stage`` (or on the CPU).

    ``method=None`` takes the model as it is: each tensor in its own dtype (4-bit layers with their quantization constants)
    and its own trainable parameters (``requires_grad``; a PEFT model's are its adapter). ``"full"``, ``"lora"`` or ``"qlora"``
    prices the model's *shape* instead, from a config, a weightless copy or a loaded model, without reading a weight (so 7B and
    70B shapes work): every weight in ``precision`` (default bf16), except that QLoRA stores the decoder's linear layers in
    NF4 (:data:`NF4_BYTES`) — transformers' bitsandbytes integration replaces every ``nn.Linear`` but the output layer, so the
    embeddings, an untied output layer and the norms stay in ``precision``. LoRA's A and B (``lora``, default
    :class:`~ftcourse.configs.LoraSettings`) are fp32, as PEFT keeps them; full fine-tuning trains every weight.

    Each trainable weight has a gradient in its dtype and AdamW's two fp32 moments, plus an fp32 master copy when it is
    16-bit. Activations of ``batch_size`` sequences of ``seq_length`` tokens: on a GPU (``device="cuda"``, the default when
    CUDA is available) Korthikanti et al. (2022)'s 16-bit count, ``s·b·h·(34 + 5·a·s/h)`` bytes per layer, or with full
    recomputation (``gradient_checkpointing``) each layer's input, ``2·s·b·h``, plus one layer's working set while it is
    recomputed; on the CPU the constants fitted on this course's CPU (:data:`ACTIVATION_BYTES_PER_HIDDEN`, fp32 layer inputs,
    :data:`RUNTIME_OVERHEAD_BYTES`), which hold for models like the one they were fitted on. Plus the fp32 logits, ``b·s·vocab·4``.

    Left out, and needed on top by a real run: the CUDA context and kernels' workspaces, allocator fragmentation, temporary
    buffers (the loss's softmax, a 4-bit layer's dequantized weight, the layer ZeRO-3 gathers while computing), bitsandbytes'
    code tables. Estimates, not bounds: Korthikanti et al. count a GPT layer (4h MLP, dropout masks) whose attention stores
    its ``5·a·s/h`` scores, which fused kernels (FlashAttention, SDPA) do not; an optimizer that keeps its moments in the
    weights' 16-bit dtype (torch's AdamW on bf16 weights) keeps less than the mixed-precision AdamW counted here.
    """
    _check_setup(gpus, zero_stage)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise CourseError(f"training_memory(device={device!r}) is not a device it models.", "use device='cpu' or 'cuda'.")
    if method is None:
        if precision is not None or lora is not None:
            raise CourseError("precision and lora price a model's shape; with method=None the model is taken as it is.",
                              "pass method='full', 'lora' or 'qlora' to price its shape.")
        config, parts = _config_of(model), _as_loaded(model)
    else:
        shell = model_shape(model)
        config, parts = shell.config, _as_shape(shell, method, precision or "bf16", lora)
    fitted = device == "cpu"
    memory = MemoryBreakdown(**parts, activations=_activation_bytes(config, batch_size, seq_length, gradient_checkpointing, fitted),
                             logits=batch_size * seq_length * config.vocab_size * 4, overhead=RUNTIME_OVERHEAD_BYTES if fitted else 0)
    return memory.sharded(gpus, zero_stage)


def _config_of(model: torch.nn.Module) -> PretrainedConfig:
    config = getattr(model, "config", None)
    if config is None:
        raise CourseError(f"{type(model).__name__} has no config: its layers and sizes are unknown.", "pass a transformers model or its config.")
    return config


def model_shape(model: torch.nn.Module | PretrainedConfig) -> torch.nn.Module:
    """The architecture of a config or a model (a PEFT model's base) on the ``meta`` device: its shapes without memory,
    for exact parameter counts. A model already there is returned as it is."""
    from transformers import AutoModelForCausalLM, PretrainedConfig

    from ftcourse.models import weightless_copy

    if isinstance(model, PretrainedConfig):
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model)
    if not hasattr(model, "get_base_model") and all(t.is_meta for t in model.parameters()):
        return model
    return weightless_copy(model)


def _as_loaded(model: torch.nn.Module) -> dict[str, float]:
    """Weights by kind in their own dtypes, and the states of the trainable parameters, of a model as it is."""
    from peft import PeftModel

    trainable = [p for p in _unique(model.parameters()) if p.requires_grad]
    adapter = trainable if isinstance(model, PeftModel) else []
    parts = dict.fromkeys(("embeddings", "lm_head", "linear", "norms"), 0)
    for kind, t, _ in _tensors_by_kind(model, skip=[id(p) for p in adapter]):
        parts[kind] += _tensor_bytes([t])
    states = [_trainable_states(p.numel(), p.element_size()) for p in trainable]
    return {**parts, "adapter": _tensor_bytes(adapter), "gradients": sum(g for g, _ in states), "optimizer": sum(o for _, o in states)}


def _as_shape(shell: torch.nn.Module, method: str, precision: str, lora: LoraSettings | None) -> dict[str, float]:
    """Weights by kind and the states of the trainable parameters of ``shell`` (meta) trained with ``method`` in ``precision``."""
    from ftcourse.configs import LoraSettings

    if method not in _METHODS or precision not in PRECISION_BYTES or (lora is not None and method == "full"):
        raise CourseError(f"method={method!r}, precision={precision!r}, lora={lora} is not a setup training_memory prices.",
                          f"method is one of {', '.join(_METHODS)} (lora settings only with lora or qlora), precision one of {', '.join(PRECISION_BYTES)}.")
    size = PRECISION_BYTES[precision]
    parts = dict.fromkeys(("embeddings", "lm_head", "linear", "norms"), 0.0)
    for kind, t, quantizable in _tensors_by_kind(shell):
        each = NF4_BYTES if method == "qlora" and quantizable else size if isinstance(t, torch.nn.Parameter) else t.element_size()
        parts[kind] += t.numel() * each
    numel, each = (sum(p.numel() for p in shell.parameters()), size) if method == "full" else (_lora_numel(shell, lora or LoraSettings()), 4)
    gradients, optimizer = _trainable_states(numel, each)
    return {**parts, "adapter": 0.0 if method == "full" else numel * each, "gradients": gradients, "optimizer": optimizer}


def _lora_numel(shell: torch.nn.Module, settings: LoraSettings) -> int:
    """Parameters of LoRA's A (r × in) and B (out × r) on the layers ``settings.target_modules`` names, resolved as
    :func:`~ftcourse.peft_methods.resolve_target_modules` resolves them and matched as PEFT matches them (a layer's name or
    its last parts; ``"all-linear"``: every linear layer but the output layer). ``bias="none"``: biases stay frozen."""
    from ftcourse.peft_methods import resolve_target_modules

    targets, head = resolve_target_modules(shell, settings.target_modules), shell.get_output_embeddings()

    def targeted(name: str, module: torch.nn.Module) -> bool:
        if targets == "all-linear":
            return _is_linear(module) and module is not head
        return (_is_linear(module) or isinstance(module, torch.nn.Embedding)) and any(name == t or name.endswith("." + t) for t in targets)

    return sum(settings.r * sum(m.weight.shape) for name, m in shell.named_modules() if targeted(name, m))


def _activation_bytes(config: PretrainedConfig, batch_size: int, seq_length: int, checkpointing: bool, fitted: bool) -> float:
    """Activation bytes kept for the backward pass (see :func:`training_memory`): per token, each layer's working set, or with
    full recomputation each layer's input plus one layer's working set."""
    h, layers = config.hidden_size, config.num_hidden_layers
    if fitted:
        working, kept = ACTIVATION_BYTES_PER_HIDDEN * h, 4 * h
    else:
        working, kept = h * (34 + 5 * config.num_attention_heads * seq_length / h), 2 * h
    return batch_size * seq_length * (layers * kept + working if checkpointing else layers * working)


def available_memory() -> int:
    """Bytes free for training: free GPU memory on CUDA, else available RAM."""
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    return int(psutil.virtual_memory().available)
