"""Checks of exercise 09, scaling out (``solutions/ex09_scaling_out.ipynb``).

Memory per GPU under ZeRO / FSDP, the ZeRO paper's numbers, accelerate's data sharding, choosing a setup.
"""

from __future__ import annotations

from ftcourse.course.checks.core import expect, is_close, self_check

__all__ = [
    "check_ex09_task1", "check_ex09_task2", "check_ex09_task3", "check_ex09_task4", "EX09_SCENARIOS", "EX09_SETUPS",
]

#: (total params, trainable params, bytes per frozen weight, gpus, zero stage) cases of task 1.
_EX09_LORA_CASES = [(134_515_008 + 921_600, 921_600, 2, 1, 0), (6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 1),
                    (6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 2), (68_976_648_192 + 32_768_000, 32_768_000, 0.5, 4, 3)]


def _ex09_lora_gib(total: int, trainable: int, weight_bytes: float, gpus: int, stage: int) -> float:
    from ftcourse.memory import MemoryBreakdown

    return MemoryBreakdown.of_counts(total - trainable, trainable, weight_bytes).sharded(gpus, stage).model_states / 2**30


@self_check
def check_ex09_task1(lora_memory_gib) -> str:
    """``lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage)``: GiB per GPU of weights + gradients + Adam states."""
    expect(callable(lora_memory_gib), "`lora_memory_gib` is not a function.", "define def lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage): ...")
    hints = {0: "no sharding: frozen weights × weight_bytes + the trainable weights, gradients and two Adam moments, each 4 bytes (fp32).",
             1: "ZeRO-1 divides only the optimizer states (the two Adam moments) by the number of GPUs.",
             2: "ZeRO-2 divides the optimizer states and the gradients, not the weights.",
             3: "ZeRO-3 divides everything — frozen and trainable weights too — by the number of GPUs."}
    for total, trainable, weight_bytes, gpus, stage in _EX09_LORA_CASES:
        want = _ex09_lora_gib(total, trainable, weight_bytes, gpus, stage)
        got = lora_memory_gib(total, trainable, weight_bytes, gpus, stage)
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 1e-6),
               f"lora_memory_gib({total:,}, {trainable:,}, {weight_bytes}, gpus={gpus}, zero_stage={stage}) = {got}; want {want:.3f} GiB.",
               hints[stage] + " A GiB is 2**30 bytes.")
    return f"right on {len(_EX09_LORA_CASES)} hidden cases, ZeRO 0-3 (70B QLoRA over 4 GPUs with ZeRO-3: {want:.1f} GiB per GPU before activations)."


#: The ZeRO paper's Figure 1 (Rajbhandari et al. 2020): 7.5B parameters, 64 GPUs, mixed-precision Adam (K = 12), in GB.
_ZERO_FIGURE1 = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}


@self_check
def check_ex09_task2(full_finetune_gb) -> str:
    """``full_finetune_gb(params, gpus, zero_stage)``: GB (1e9 bytes) per GPU for full fine-tuning with mixed-precision Adam."""
    expect(callable(full_finetune_gb), "`full_finetune_gb` is not a function.", "define def full_finetune_gb(params, gpus, zero_stage): ...")
    for stage, want in _ZERO_FIGURE1.items():
        got = full_finetune_gb(7.5e9, 64, stage)
        expect(isinstance(got, (int, float)) and abs(float(got) - want) < 0.06,
               f"full_finetune_gb(7.5e9, 64, zero_stage={stage}) = {got}; the ZeRO paper's Figure 1 says {want} GB.",
               "per parameter: 2 bytes of bf16/fp16 weights, 2 of gradients, 12 of optimizer state (fp32 master copy + 2 Adam moments); "
               "stage 1 divides the 12, stage 2 also the gradients' 2, stage 3 all 16 — by the number of GPUs. GB here is 1e9 bytes.")
    got1 = full_finetune_gb(1e9, 1, 0)
    expect(is_close(float(got1), 16.0, 1e-6), f"full_finetune_gb(1e9, 1, 0) = {got1}; one GPU with no sharding needs 16 GB per billion parameters.",
           "2 + 2 + 12 = 16 bytes per parameter, and nothing is divided on one GPU.")
    return "reproduces the ZeRO paper's Figure 1: 120 → 31.4 → 16.6 → 1.9 GB per GPU for 7.5B parameters on 64 GPUs."


def _ex09_rank_examples(n: int, batch_size: int, accumulation: int, processes: int, rank: int) -> list[int]:
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    shard = BatchSamplerShard(BatchSampler(SequentialSampler(range(n)), batch_size, False), num_processes=processes, process_index=rank)
    return [i for batch in list(shard)[:accumulation] for i in batch]


@self_check
def check_ex09_task3(rank1_first_step) -> str:
    """``rank1_first_step``: example indices rank 1 trains on in the first optimizer step (16 examples in order,
    batch 2 per process, 2 gradient-accumulation steps, 2 processes)."""
    want = _ex09_rank_examples(16, 2, 2, 2, 1)
    expect(isinstance(rank1_first_step, (list, tuple)) and len(rank1_first_step) == len(want),
           f"rank1_first_step is {rank1_first_step!r}; rank 1 trains on {len(want)} examples per optimizer step.",
           "batch 2 per process × 2 accumulation steps = 4 examples per rank per optimizer step.")
    got = sorted(int(i) for i in rank1_first_step)
    expect(got != [4, 5, 6, 7], "accelerate does not give rank 1 the second half of the examples.",
           "the batch sampler makes batches of 2 in order, and the batches are dealt out in turn: batch 0 to rank 0, batch 1 to rank 1, batch 2 to rank 0, …")
    expect(got == want, f"rank 1's first optimizer step trains on {want}, not {got}.",
           "batches of 2 in order ([0,1], [2,3], [4,5], …) dealt out in turn; each optimizer step accumulates 2 of a rank's batches.")
    return f"rank 1 trains on {want} — accelerate deals whole batches out in turn (BatchSamplerShard), so the ranks interleave."


#: Task 4's situations and the setups that fit them (the configs in configs/accelerate/, or "single" GPU without a launcher).
EX09_SCENARIOS = {
    "a": "LoRA on the 135M embedded model; you have 4 × 24 GB GPUs and want the run to finish sooner",
    "b": "LoRA on Llama-2-7B with a bf16 base, batch 1 × 2,048 tokens, gradient checkpointing; you have 1 × 24 GB GPU",
    "c": "LoRA on Llama-2-70B; you have 2 × 24 GB GPUs",
    "d": "full fine-tuning (every weight trained, mixed-precision AdamW) of Llama-2-7B; you have 8 × 24 GB GPUs",
}
EX09_SETUPS = ("single", "ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_qlora")
_EX09_ANSWERS = {"a": {"ddp"}, "b": {"single"}, "c": {"fsdp_qlora", "zero3_qlora"}, "d": {"fsdp", "zero3"}}
_EX09_WHY = {
    "a": "the model fits one GPU many times over: plain data parallelism (ddp) multiplies the throughput, sharding would only add communication.",
    "b": "lesson 09's table: about 13 GiB for weights, adapter state and activations — one 24 GB GPU holds it; sharding or 4-bit would cost speed or quality for nothing.",
    "c": "70B in bf16 needs over 130 GiB; 4-bit brings it to ~36 GiB, and sharding that over 2 GPUs to ~19 GiB each: QLoRA + FSDP or ZeRO-3.",
    "d": "full fine-tuning costs 16 bytes per parameter (~108 GB for 6.7B): ZeRO-2 keeps the 2-byte weights whole (13.5 GB) plus 14/8 bytes "
         "(11.8 GB) — over 24 GB per GPU; ZeRO-3 / FSDP divides all 16 bytes by 8 (~13.5 GB each).",
}


@self_check
def check_ex09_task4(choices) -> str:
    """``choices``: a dict scenario letter -> one of EX09_SETUPS."""
    expect(isinstance(choices, dict) and set(choices) == set(EX09_SCENARIOS),
           f"choices should have the keys {sorted(EX09_SCENARIOS)}; got {sorted(choices) if isinstance(choices, dict) else type(choices).__name__}.",
           "choices = {'a': 'ddp', 'b': ..., 'c': ..., 'd': ...}.")
    unknown = {k: v for k, v in choices.items() if v not in EX09_SETUPS}
    expect(not unknown, f"{unknown} are not setups of this task.", f"choose from {EX09_SETUPS}.")
    for key in sorted(EX09_SCENARIOS):
        expect(choices[key] in _EX09_ANSWERS[key], f"({key}) {EX09_SCENARIOS[key]}: {choices[key]!r} is not the best fit.", _EX09_WHY[key])
    return "each setup fits its budget: DDP for speed when the model fits, one GPU when it fits there, sharding (and 4-bit) only when it must."
