"""One device and precision policy, decided once from the machine and the launch and passed to everything that loads,
trains or runs a model (the pattern of nanoGPT/nanochat: decide once, pass everywhere).

=============================  ======  =============  ==========  =========  ======  ===================  ====================
machine                        device  frozen weights  trainable  autocast   scaler  4-bit compute dtype  4-bit storage dtype
=============================  ======  =============  ==========  =========  ======  ===================  ====================
CPU with AVX512-BF16 or AMX    cpu     fp32           fp32        bf16       no      bf16                 uint8
CPU without bf16               cpu     fp32           fp32        none       no      fp32                 uint8
Apple GPU (MPS)                mps     fp32           fp32        none       no      fp32                 uint8
CUDA, capability 8.0 or more   cuda    bf16           fp32        bf16       no      bf16                 uint8 (sharded: bf16)
CUDA, capability below 8.0     cuda    fp16           fp32        fp16       yes     fp16                 uint8 (sharded: fp16)
=============================  ======  =============  ==========  =========  ======  ===================  ====================

* **Trainable weights are fp32** under mixed precision: the optimizer's small updates survive, and the fp16 gradient
  scaler refuses to unscale fp16 gradients. Frozen weights can be 16-bit, since they are never updated.
* **fp16 needs a gradient scaler**: its range is small, so the loss is multiplied before backward (no underflow) and the
  gradients divided before the step. bf16 has fp32's range and needs none.
* A T4 (capability 7.5) emulates bf16 slowly, so it gets fp16 although ``torch.cuda.is_bf16_supported()`` may say True.
* Under a launch that **shards the weights** (FSDP, DeepSpeed ZeRO-3) every rank loads on the CPU (or ``meta``) with no
  device map and the launcher shards; 4-bit weights are stored in the frozen weights' dtype, because FSDP and ZeRO-3 shard
  flat tensors of one dtype (peft's FSDP-QLoRA recipe). Under a plain multi-process launch with CUDA (DDP) each rank loads
  its copy onto its own GPU (``{"": local_rank}``); a single process loads and then moves the model to ``device``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ftcourse.distributed import shards_weights, world_info
from ftcourse.hardware import Environment, detect_environment

__all__ = ["DevicePolicy", "device_policy"]


@dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which precision (the table in :mod:`ftcourse.device`); build it with :func:`device_policy`."""

    device: torch.device
    weights_dtype: torch.dtype  # frozen weights are loaded in it (``load_model(dtype="auto")``)
    autocast_dtype: torch.dtype | None  # mixed precision: the dtype of the matrix products, or None (plain fp32)
    shards_weights: bool = False  # FSDP or ZeRO-3 launch: load with no device map, the launcher shards
    launched: bool = False  # started by a multi-process launcher
    trainable_dtype: torch.dtype = torch.float32  # trained weights (and their optimizer states), always fp32

    @property
    def scaler(self) -> bool:
        """Whether training needs a gradient scaler (fp16 mixed precision)."""
        return self.autocast_dtype == torch.float16

    @property
    def compute_dtype_4bit(self) -> torch.dtype:
        """The dtype 4-bit weights are dequantized to for each matrix product: the autocast dtype, else fp32."""
        return self.autocast_dtype or torch.float32

    @property
    def storage_dtype_4bit(self) -> torch.dtype:
        """The dtype packed 4-bit weights are stored in: bitsandbytes' uint8, or the frozen weights' dtype when sharded."""
        return self.weights_dtype if self.shards_weights else torch.uint8

    @property
    def device_map(self) -> dict[str, int] | None:
        """``from_pretrained``'s device map: this rank's GPU under a plain multi-process CUDA launch, else None."""
        if self.launched and not self.shards_weights and self.device.type == "cuda":
            return {"": self.device.index or 0}
        return None

    def training_flags(self) -> dict[str, bool]:
        """The ``TrainingArguments`` precision and device flags."""
        return {"bf16": self.autocast_dtype == torch.bfloat16, "fp16": self.scaler, "use_cpu": self.device.type == "cpu"}

    def autocast(self):
        """A context manager: autocast to the policy's dtype on its device, or nothing without mixed precision."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA and MPS run asynchronously); nothing on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()


def device_policy(env: Environment | None = None) -> DevicePolicy:
    """The policy for ``env`` (default: this machine, :func:`ftcourse.hardware.detect_environment`) and this launch."""
    env = env or detect_environment()
    info, sharded = world_info(), shards_weights()
    if env.device == "cuda":
        half = torch.bfloat16 if env.bf16 else torch.float16
        return DevicePolicy(torch.device("cuda", info.local_rank), half, half, sharded, info.launched)
    if env.device == "cpu" and env.bf16:
        return DevicePolicy(torch.device("cpu"), torch.float32, torch.bfloat16, sharded, info.launched)
    return DevicePolicy(torch.device(env.device), torch.float32, None, sharded, info.launched)
