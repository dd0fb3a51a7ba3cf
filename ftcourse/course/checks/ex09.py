"""Checks of exercise 09, scaling out (``solutions/ex09_scaling_out.ipynb``).

Memory per GPU under ZeRO / FSDP, the ZeRO paper's numbers, accelerate's data sharding, choosing a setup. Every task
follows the grading protocol (``core``'s docstring): the practice cases are here; the hidden inputs and expected answers
the grader uses are in ``solutions/hidden/ex09.json``.
"""

from __future__ import annotations

from ftcourse.course.checks.core import Case, describe, expect, forbid_source_helpers, graded_check, is_close, output_of, outputs_of, run_learner

__all__ = [
    "check_ex09_task1", "check_ex09_task2", "check_ex09_task3", "check_ex09_task4", "EX09_SCENARIOS", "EX09_SETUPS",
]

#: The course's helpers that compute memory per GPU: a function that calls one hands the task over.
_EX09_HELPERS = {"MemoryBreakdown": "ftcourse.memory.MemoryBreakdown", "of_counts": "ftcourse.memory.MemoryBreakdown.of_counts",
                 "sharded": "ftcourse.memory.MemoryBreakdown.sharded", "training_memory": "ftcourse.memory.training_memory"}
_EX09_OWN = "add the bytes yourself from the task's rules: that is the exercise."


def _split(gpus: int, zero_stage: int, stage: int) -> int:
    return gpus if zero_stage >= stage else 1


def _lora_gib(total: float, trainable: float, weight_bytes: float, gpus: int, stage: int) -> float:
    """GiB per GPU of frozen weights, fp32 trainable weights, gradients and Adam's two moments under ZeRO ``stage``."""
    weights = ((total - trainable) * weight_bytes + 4 * trainable) / _split(gpus, stage, 3)
    return (weights + 4 * trainable / _split(gpus, stage, 2) + 8 * trainable / _split(gpus, stage, 1)) / 2**30


def _full_gb(params: float, gpus: int, stage: int) -> float:
    """GB per GPU of full fine-tuning with mixed-precision Adam: 2 + 2 + 12 bytes per parameter under ZeRO ``stage``."""
    return params * (2 / _split(gpus, stage, 3) + 2 / _split(gpus, stage, 2) + 12 / _split(gpus, stage, 1)) / 1e9


def _numbers(data: dict, count: int, name: str, define: str) -> list[float]:
    """The collected numbers the learner's ``name`` returned, one per input."""
    values = []
    for value, kind in outputs_of(data, count, name, define):
        expect(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} returns a {kind}, not a number.", "return a float.")
        values.append(float(value))
    return values


@graded_check({"inputs": {"cases": [[134_515_008 + 921_600, 921_600, 2, 1, 0], [134_515_008 + 921_600, 921_600, 2, 4, 0], [6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 1],
                                    [6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 2], [68_976_648_192 + 32_768_000, 32_768_000, 0.5, 4, 3]]},
               "expected": {}})
def check_ex09_task1(inputs, lora_memory_gib) -> dict:
    """``lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage)``: GiB per GPU of weights + gradients + Adam states."""
    return {"outputs": [run_learner(lora_memory_gib, *case) for case in inputs["cases"]]}


@check_ex09_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "lora_memory_gib", _EX09_HELPERS, _EX09_OWN)
    hints = {0: "no sharding: frozen weights × weight_bytes + the trainable weights, gradients and two Adam moments, each 4 bytes (fp32).",
             1: "ZeRO-1 divides only the optimizer states (the two Adam moments) by the number of GPUs.",
             2: "ZeRO-2 divides the optimizer states and the gradients, not the weights.",
             3: "ZeRO-3 divides everything — frozen and trainable weights too — by the number of GPUs."}
    cases = case.inputs["cases"]
    define = "define def lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage): ..."
    for (total, trainable, weight_bytes, gpus, stage), got in zip(cases, _numbers(data, len(cases), "lora_memory_gib", define)):
        expect(is_close(got, _lora_gib(total, trainable, weight_bytes, gpus, stage), 1e-6),
               f"lora_memory_gib({total:,}, {trainable:,}, {weight_bytes}, gpus={gpus}, zero_stage={stage}) = {got} on a {case.kind} case: "
               "not the GiB one GPU holds.", hints[stage] + " A GiB is 2**30 bytes; the trainable weights are fp32 whatever the frozen ones are.")
    total, trainable, weight_bytes, gpus, stage = cases[-1]
    return (f"right on {len(cases)} {case.kind} cases, ZeRO 0-3" + ("" if case.hidden else
            f" ({total / 1e9:.0f}B, {gpus} GPUs, ZeRO-{stage}: {_lora_gib(*cases[-1]):.1f} GiB per GPU before activations; the grader runs more cases)") + ".")


#: The ZeRO paper's Figure 1 (Rajbhandari et al. 2020): 7.5B parameters, 64 GPUs, mixed-precision Adam (K = 12), in GB.
_ZERO_FIGURE1 = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}


@graded_check({"inputs": {"cases": [[7.5e9, 64, stage] for stage in _ZERO_FIGURE1] + [[1e9, 1, 0], [1e9, 1, 3]]}, "expected": {}})
def check_ex09_task2(inputs, full_finetune_gb) -> dict:
    """``full_finetune_gb(params, gpus, zero_stage)``: GB (1e9 bytes) per GPU for full fine-tuning with mixed-precision Adam."""
    return {"outputs": [run_learner(full_finetune_gb, *case) for case in inputs["cases"]]}


@check_ex09_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "full_finetune_gb", _EX09_HELPERS, _EX09_OWN)
    cases = case.inputs["cases"]
    for (params, gpus, stage), got in zip(cases, _numbers(data, len(cases), "full_finetune_gb", "define def full_finetune_gb(params, gpus, zero_stage): ...")):
        want = _full_gb(params, gpus, stage)
        if is_close(got, want, 1e-6):
            continue
        hint = ("per parameter: 2 bytes of bf16/fp16 weights, 2 of gradients, 12 of optimizer state (fp32 master copy + 2 Adam moments); "
                "stage 1 divides the 12, stage 2 also the gradients' 2, stage 3 all 16 — by the number of GPUs. GB here is 1e9 bytes.")
        if abs(got - want) < 0.06:
            hint = "compute it from the bytes per parameter: the paper's figure rounds (1.875 GB is drawn as 1.9). " + hint
        expect(False, f"full_finetune_gb({params:g}, {gpus}, zero_stage={stage}) = {got} on a {case.kind} case: not the GB per GPU.", hint)
    return "reproduces the ZeRO paper's Figure 1: 120 → 31.4 → 16.6 → 1.9 GB per GPU for 7.5B parameters on 64 GPUs" + (
        " (and the grader's other cases)." if case.hidden else "; the grader runs more cases.")


def _ex09_rank_examples(n: int, batch_size: int, accumulation: int, processes: int, rank: int) -> list[int]:
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    shard = BatchSamplerShard(BatchSampler(SequentialSampler(range(n)), batch_size, False), num_processes=processes, process_index=rank)
    return [i for batch in list(shard)[:accumulation] for i in batch]


@graded_check({"inputs": {"examples": 16, "batch_size": 2, "accumulation": 2, "processes": 2, "rank": 1}, "expected": {}})
def check_ex09_task3(inputs, rank1_first_step) -> dict:
    """``rank1_first_step``: example indices rank 1 trains on in the first optimizer step (16 examples in order,
    batch 2 per process, 2 gradient-accumulation steps, 2 processes)."""
    return {"prediction": describe(rank1_first_step)}


@check_ex09_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    setup = case.inputs
    n, batch, steps, processes = setup["examples"], setup["batch_size"], setup["accumulation"], setup["processes"]
    want = sorted(_ex09_rank_examples(n, batch, steps, processes, setup["rank"]))
    got, _ = output_of(data.get("prediction"), "rank1_first_step")
    expect(isinstance(got, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in got),
           f"rank1_first_step is {got!r:.80}, not a list of example indices.", "write the indices as a list of ints, e.g. [0, 1, …].")
    expect(len(got) == len(want), f"rank1_first_step has {len(got)} examples: not how many one rank trains on per optimizer step.",
           "a rank trains on batch_size examples per micro-batch, and accumulates gradient_accumulation_steps micro-batches before each optimizer step.")
    got = sorted(got)
    block = list(range(setup["rank"] * len(want), (setup["rank"] + 1) * len(want)))
    half = list(range(n // processes * setup["rank"], n // processes * setup["rank"] + len(want)))
    hint = {str(block): "accelerate does not hand each rank a contiguous block of the examples of a step.",
            str(half): "accelerate does not split the dataset into one half per rank.",
            str(list(range(setup["rank"], processes * len(want), processes))): "accelerate deals out whole batches, not single examples."}.get(
        str(got), "")
    expect(got == want, "rank1_first_step is not the examples rank 1 trains on in the first optimizer step. " + hint,
           "the batch sampler first makes batches of batch_size examples in order; then accelerate shares them out among the ranks. "
           "Which batches does rank 1 get, and how many of them make one optimizer step? Then run the next cell to see it.")
    return "rank 1's first step is what accelerate gives it: whole batches dealt out in turn (BatchSamplerShard), so the ranks interleave."


#: Task 4's situations (the configs in configs/accelerate/, or "single" GPU without a launcher); a GPU holds 24 GB = 22.35 GiB.
EX09_SCENARIOS = {
    "a": "LoRA on the 135M embedded model (134,515,008 frozen + 921,600 trainable parameters, bf16 base); you have 4 × 24 GB GPUs "
         "and want the run to finish sooner",
    "b": "LoRA on Llama-2-7B (6,738,415,616 frozen + 4,194,304 trainable parameters, bf16 base), batch 1 × 2,048 tokens, "
         "gradient checkpointing; you have 1 × 24 GB GPU",
    "c": "LoRA on Llama-2-70B (68,976,648,192 frozen + 32,768,000 trainable parameters, bf16 base, or NF4 at 0.516 bytes per "
         "weight with a _qlora setup); you have 2 × 24 GB GPUs",
    "d": "full fine-tuning (every weight trained, mixed-precision AdamW) of Llama-2-7B (6,738,415,616 parameters); you have 8 × 24 GB GPUs",
}
EX09_SETUPS = ("single", "ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_qlora")
#: A setup's ZeRO stage (FSDP shards like ZeRO-3) and its bytes per frozen weight (None: the base's own).
_EX09_SETUP_RULES = {"single": (0, None), "ddp": (0, None), "zero2": (2, None), "zero3": (3, None), "fsdp": (3, None),
                     "fsdp_qlora": (3, 0.516), "zero3_qlora": (3, 0.516)}
#: Per scenario: (full fine-tuning?, frozen parameters, trainable parameters, GPUs, the run should go faster).
_EX09_SHAPES = {"a": [False, 134_515_008, 921_600, 4, True], "b": [False, 6_738_415_616, 4_194_304, 1, False],
                "c": [False, 68_976_648_192, 32_768_000, 2, False], "d": [True, 6_738_415_616, 6_738_415_616, 8, False]}
_EX09_GPU_GIB = 24e9 / 2**30


def _ex09_setup_gib(shape: list, setup: str) -> float | None:
    """GiB per GPU of weights, gradients and optimizer states of ``setup`` in a scenario; None when the setup cannot train it."""
    full, frozen, trainable, gpus, _ = shape
    stage, weight_bytes = _EX09_SETUP_RULES[setup]
    gpus = 1 if setup == "single" else gpus
    if full:
        return None if weight_bytes is not None else _full_gb(frozen, gpus, stage) * 1e9 / 2**30
    return _lora_gib(frozen + trainable, trainable, 2 if weight_bytes is None else weight_bytes, gpus, stage)


@graded_check({"inputs": {"shapes": _EX09_SHAPES},
               "expected": {"fits": {"a": ["ddp"], "b": ["single"], "c": ["fsdp_qlora", "zero3_qlora"], "d": ["fsdp", "zero3"]}}})
def check_ex09_task4(inputs, choices, gib_per_gpu) -> dict:
    """``choices``: scenario letter -> one of EX09_SETUPS; ``gib_per_gpu``: letter -> the GiB per GPU of weights, gradients and
    optimizer states your setup needs there."""
    return {"choices": describe(choices), "gib": describe(gib_per_gpu)}


def _ex09_dicts(data: dict) -> tuple[dict, dict]:
    choices, _ = output_of(data.get("choices"), "choices")
    expect(isinstance(choices, dict) and set(choices) == set(EX09_SCENARIOS),
           f"choices should have the keys {sorted(EX09_SCENARIOS)}; got {sorted(choices) if isinstance(choices, dict) else type(choices).__name__}.",
           "choices = {'a': ..., 'b': ..., 'c': ..., 'd': ...}.")
    unknown = {k: v for k, v in choices.items() if v not in EX09_SETUPS}
    expect(not unknown, f"{unknown} are not setups of this task.", f"choose from {EX09_SETUPS}.")
    gib, _ = output_of(data.get("gib"), "gib_per_gpu")
    expect(isinstance(gib, dict) and set(gib) == set(EX09_SCENARIOS) and all(isinstance(v, (int, float)) for v in gib.values()),
           "gib_per_gpu should map each scenario letter to a number (GiB per GPU).", "use your lora_memory_gib (task 1) or full_finetune_gb (task 2; GB → GiB).")
    return choices, gib


@check_ex09_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    choices, gib = _ex09_dicts(data)
    for key in sorted(EX09_SCENARIOS):
        shape, setup, what = case.inputs["shapes"][key], choices[key], f"({key}) {EX09_SCENARIOS[key]}"
        need = _ex09_setup_gib(shape, setup)
        expect(need is not None, f"{what}: {setup!r} keeps the base in 4 bits, and 4-bit weights cannot be trained.",
               "QLoRA trains adapters on a frozen 4-bit base; full fine-tuning updates every weight in 16 bits.")
        expect(is_close(float(gib[key]), need, 0.02), f"{what}: gib_per_gpu[{key!r}] = {gib[key]} is not what {setup!r} needs per GPU.",
               "the number behind your choice: task 1's lora_memory_gib (or task 2's full_finetune_gb, converted from GB to GiB) with the "
               "setup's stage (ddp and single: 0; fsdp: 3), its GPUs (single: 1) and, for a _qlora setup, 0.516 bytes per frozen weight.")
        if setup in case.expected["fits"][key]:
            continue
        if need > _EX09_GPU_GIB:
            hint = f"{need:.1f} GiB per GPU before activations is more than a 24 GB GPU holds ({_EX09_GPU_GIB:.1f} GiB): divide more, or store less."
        elif shape[4] and setup == "single":
            hint = "the run should finish sooner and you have several GPUs: one GPU leaves the others idle."
        else:
            hint = ("it fits, but a cheaper setup fits too: sharding costs communication between GPUs, 4-bit costs quality. Try them in "
                    "order — single, ddp, zero2, zero3 / fsdp, 4-bit with sharding — and take the first that fits (and uses the GPUs you have when speed is asked for).")
        expect(False, f"{what}: {setup!r} is not the best fit.", hint)
    return "each setup fits its budget, with the numbers behind it: DDP for speed when the model fits, one GPU when it fits there, sharding (and 4-bit) only when it must."

