"""Running one training across processes (``torchrun``, ``accelerate launch``): who am I, and did the launch do what was asked.

A launcher starts N copies of the same script and tells each one its place through environment
variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``). The Trainer (through accelerate) then joins
them into one process group, wraps the model in DDP (or FSDP / DeepSpeed on GPUs), gives each
rank its shard of every batch and averages the gradients. Two silent failures are common, and
:func:`check_launch` turns them into clear messages:

* processes started but never joined (on CPU without ``use_cpu``: N independent runs);
* FSDP or DeepSpeed requested but the run is plain DDP (accelerate only shards on GPU-like devices).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ftcourse.errors import CourseError

__all__ = [
    "check_launch", "end_process", "fsdp2_shard", "launch", "local_numel", "requested_sharding", "shards_weights", "world_info",
    "WorldInfo", "zero_stage",
]


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in the launch, read from the launcher's environment variables."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """True when a launcher started more than one process."""
        return self.world_size > 1


def world_info() -> WorldInfo:
    """Rank, local rank and world size as the launcher set them (1 process when not launched)."""
    return WorldInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def requested_sharding(fsdp_option: object = None) -> str | None:
    """``"FSDP"`` or ``"DEEPSPEED"`` when the launch (accelerate config, env or Trainer ``fsdp=``) asks for sharding, else None."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "DEEPSPEED"
    if _flag("ACCELERATE_USE_FSDP") or fsdp_option:
        return "FSDP"
    return None


def check_launch(world_size: int, distributed_type: str, fsdp_option: object = None) -> str | None:
    """Compare what the launcher asked for with what the Trainer set up; raise or return a warning line.

    ``world_size`` and ``distributed_type`` are the Trainer's (``args.world_size``,
    ``str(trainer.accelerator.distributed_type)``). Raises a :class:`CourseError` when a launcher
    started N > 1 processes but each trains alone; returns a warning when sharding was requested
    but the processes run plain data parallel (every rank holds the whole model).
    """
    launched = world_info().world_size
    if launched > 1 and world_size == 1:
        raise CourseError(
            f"The launcher started {launched} processes, but each one trains alone (world size 1): {launched} independent runs, not one.",
            "on CPU set TrainingArguments(use_cpu=True) or ACCELERATE_USE_CPU=true (fine_tune does this when no GPU is found).",
        )
    wanted = requested_sharding(fsdp_option)
    kind = distributed_type.split(".")[-1]
    if wanted and kind != wanted:
        return (f"Warning: {wanted} was requested but the run is {kind} (plain data parallel, every rank holds the whole model): "
                f"accelerate shards only on GPU-like devices. Sharding runs on the GPU workflow; see lesson 09.")
    return None


def zero_stage() -> int | None:
    """The DeepSpeed ZeRO stage the launch asks for (accelerate's DeepSpeed config file, else
    ``ACCELERATE_DEEPSPEED_ZERO_STAGE``, default 2, as accelerate reads them); None without DeepSpeed."""
    if requested_sharding() != "DEEPSPEED":
        return None
    config = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    if config != "none":
        try:
            return int(json.loads(Path(config).read_text(encoding="utf-8")).get("zero_optimization", {}).get("stage", 0))
        except (OSError, ValueError) as exc:
            raise CourseError(f"Cannot read the DeepSpeed config {config} ({exc}).",
                              "pass accelerate launch a readable JSON file with a zero_optimization.stage.") from None
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", 2))


def shards_weights() -> bool:
    """True when the launch shards the weights over the ranks (FSDP, or DeepSpeed ZeRO stage 3), so that no rank
    may load the whole model onto its own GPU: it loads on the CPU (or ``meta``) and the launcher shards it."""
    return requested_sharding() == "FSDP" or zero_stage() == 3


# ---------------------------------------------------------------- launching and FSDP2


def launch(module_args: Sequence[str], nproc: int = 2, printer: Callable[[str], None] = print, env: dict[str, str] | None = None) -> list[str]:
    """Run ``torchrun --nproc_per_node nproc`` on ``module_args`` (a script path or ``-m module`` and its arguments),
    streaming its output line by line; return the lines. Raises a :class:`CourseError` when it fails.

    One thread per process (``OMP_NUM_THREADS=1``) unless ``env`` says otherwise.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(_free_port()), *module_args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment) as process:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            printer(lines[-1])
    if process.returncode:
        raise CourseError(f"torchrun exited with code {process.returncode}: {' '.join(module_args)}\n{_failure_summary(lines)}",
                          "the first rank's error in the log is the cause.")
    return lines


def _failure_summary(lines: list[str]) -> str:
    """What a failed launch's log says about the cause: the script's own CourseError if it printed one; else the ranks'
    last lines before torchrun's agent took over, and the agent's root cause (which rank, which exit code or signal)."""
    errors = [line for line in lines if line.startswith(("error:", "Fix:"))]
    if errors:
        return "\n".join(errors)
    agent = next((i for i, line in enumerate(lines) if "torch/distributed/elastic/" in line), len(lines))
    ranks = [line for line in lines[:agent] if line.strip()][-20:]
    root = next((i for i, line in enumerate(lines) if line.startswith("Root Cause")), len(lines))
    cause = [line.strip() for line in lines[root:] if line.strip().startswith(("rank ", "exitcode ", "traceback "))]
    return "\n".join(ranks + (["torchrun's root cause: " + "; ".join(cause)] if cause else []))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsdp2_shard(model) -> int:
    """FSDP2 as accelerate's TRANSFORMER_BASED_WRAP does it: ``fully_shard`` each decoder layer, then the root.

    Needs an initialised process group. Every parameter becomes a DTensor of which this rank keeps ``1/world``
    (dimension 0); returns the number of decoder layers sharded.
    """
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise CourseError(f"{type(base).__name__} names no decoder layer class (_no_split_modules).", "shard a transformers model, or wrap its layers yourself.")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return len(layers)


def end_process(code: int = 0) -> NoReturn:
    """End this rank of a ``torchrun`` script: wait for every rank (barrier), destroy the process group, exit.
    (Without a process group it only exits.)

    The exit is ``os._exit``, which skips Python's interpreter shutdown. Gloo's worker threads can still be releasing a
    finished collective, whose tensors Python owns, while the interpreter shuts down; taking the GIL then aborts the rank
    (SIGABRT, "terminate called without an active exception") although every step succeeded. Measured here: 4 of 107
    FSDP2 demo runs with the CPU busy (core dump: ``ProcessGroupGloo::runLoop`` freeing an all-gather during
    ``Py_FinalizeEx``). Call it last: output is flushed, but nothing after it runs, atexit handlers included.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()  # every rank has everything the others sent
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def local_numel(model, name_filter: str = "lora_") -> tuple[int, int]:
    """(values this rank stores, values in the whole model) of the parameters whose name contains ``name_filter``."""
    from torch.distributed.tensor import DTensor

    mine = whole = 0
    for name, p in model.named_parameters():
        if name_filter in name:
            whole += p.numel()
            mine += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return mine, whole
