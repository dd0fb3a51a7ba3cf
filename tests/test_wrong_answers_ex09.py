"""Planted wrong answers of exercise 09: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

from ftcourse.course import checks
from ftcourse.memory import MemoryBreakdown
from tests.planted import fails, passes


def _split(gpus, zero_stage, stage):
    return gpus if zero_stage >= stage else 1


def lora_right(total, trainable, weight_bytes, gpus, zero_stage):
    weights = ((total - trainable) * weight_bytes + 4 * trainable) / _split(gpus, zero_stage, 3)
    return (weights + 4 * trainable / _split(gpus, zero_stage, 2) + 8 * trainable / _split(gpus, zero_stage, 1)) / 2**30


def full_right(params, gpus, zero_stage):
    return params * (2 / _split(gpus, zero_stage, 3) + 2 / _split(gpus, zero_stage, 2) + 12 / _split(gpus, zero_stage, 1)) / 1e9


def test_ex09_task1_each_stage_mistake_ddp_splitting_bf16_adapters_gb_and_the_helper_fail():
    assert "practice cases" in passes(checks.check_ex09_task1, lora_right)

    def everything_divided(t, tr, wb, g, z):
        return lora_right(t, tr, wb, g, 3 if z else 0)

    def stage2_like_1(t, tr, wb, g, z):
        return lora_right(t, tr, wb, g, 1 if z == 2 else z)

    def no_trainable_weights(t, tr, wb, g, z):
        return lora_right(t, tr, wb, g, z) - 4 * tr / _split(g, z, 3) / 2**30

    def ddp_splits(t, tr, wb, g, z):  # plain DDP keeps a whole copy on every GPU
        return lora_right(t, tr, wb, g, 3 if z == 0 else z)

    def bf16_adapters(t, tr, wb, g, z):  # the trainable weights stored like the frozen ones
        return lora_right(t, tr, wb, g, z) + (wb - 4) * tr / _split(g, z, 3) / 2**30

    def helper(t, tr, wb, g, z):
        return MemoryBreakdown.of_counts(t - tr, tr, wb).sharded(g, z).model_states / 2**30

    fails(checks.check_ex09_task1, everything_divided, hint="ZeRO-1 divides only the optimizer")
    fails(checks.check_ex09_task1, stage2_like_1, hint="ZeRO-2 divides the optimizer states and the gradients")
    fails(checks.check_ex09_task1, no_trainable_weights, hint="no sharding")
    fails(checks.check_ex09_task1, ddp_splits, hint="no sharding")
    fails(checks.check_ex09_task1, bf16_adapters, hint="the trainable weights are fp32")
    fails(checks.check_ex09_task1, lambda *a: lora_right(*a) * 2**30 / 1e9, hint="2**30")  # GB instead of GiB
    fails(checks.check_ex09_task1, helper, hint="the course's helper for this very task")
    message = fails(checks.check_ex09_task1, lambda *a: 1.0, hint="not the GiB one GPU holds")
    assert "want" not in message


def test_ex09_task2_the_master_copy_stage_1_the_papers_rounded_figure_and_the_helper_fail():
    assert "Figure 1" in passes(checks.check_ex09_task2, full_right)
    fails(checks.check_ex09_task2, lambda p, g, z: full_right(p, g, z) * 12 / 16, hint="12 of optimizer state")  # fp32 master copy forgotten
    fails(checks.check_ex09_task2, lambda p, g, z: full_right(p, g, 0) if z == 1 else full_right(p, g, z), hint="zero_stage=1")
    fails(checks.check_ex09_task2, lambda p, g, z: full_right(p, g, z) * 1e9 / 2**30, hint="GB here is 1e9 bytes")
    figure = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    fails(checks.check_ex09_task2, lambda p, g, z: figure[z], hint="not the GB per GPU")  # the paper's numbers typed in

    def helper(p, g, z):
        return MemoryBreakdown.of_counts(0, p, 2, 2).sharded(g, z).model_states / 1e9

    fails(checks.check_ex09_task2, helper, hint="the course's helper for this very task")


def test_ex09_task3_contiguous_blocks_halves_single_examples_and_one_micro_batch_fail_without_giving_the_answer():
    assert "whole batches dealt out in turn" in passes(checks.check_ex09_task3, [2, 3, 6, 7])
    for wrong, hint in (([4, 5, 6, 7], "contiguous block"), ([8, 9, 10, 11], "one half per rank"), ([1, 3, 5, 7], "not single examples"),
                        ([2, 3], "how many one rank trains on"), ([0, 1, 4, 5], "shares them out among the ranks")):
        message = fails(checks.check_ex09_task3, wrong, hint=hint)
        assert "[2, 3, 6, 7]" not in message and "2, 3, 6, 7" not in message
    fails(checks.check_ex09_task3, "2, 3, 6, 7", hint="list of example indices")


GPU_GIB = 24e9 / 2**30


def _numbers(choices):
    """The GiB per GPU behind each choice, from the task 1-2 functions (what a learner computes)."""
    rules = {"single": (0, 2, 1), "ddp": (0, 2, None), "zero2": (2, 2, None), "zero3": (3, 2, None), "fsdp": (3, 2, None),
             "fsdp_qlora": (3, 0.516, None), "zero3_qlora": (3, 0.516, None)}
    shapes = {"a": (134_515_008, 921_600, 4), "b": (6_738_415_616, 4_194_304, 1), "c": (68_976_648_192, 32_768_000, 2)}
    numbers = {}
    for key, setup in choices.items():
        stage, weight_bytes, gpus = rules[setup]
        if key == "d":
            numbers[key] = full_right(6_738_415_616, gpus or 8, stage) * 1e9 / 2**30
        else:
            frozen, trainable, all_gpus = shapes[key]
            numbers[key] = lora_right(frozen + trainable, trainable, weight_bytes, gpus or all_gpus, stage)
    return numbers


def test_ex09_task4_setups_that_do_not_fit_or_cost_more_and_numbers_that_do_not_back_the_choice_fail():
    right = {"a": "ddp", "b": "single", "c": "zero3_qlora", "d": "fsdp"}
    assert "fits its budget" in passes(checks.check_ex09_task4, right, _numbers(right))
    passes(checks.check_ex09_task4, {**right, "c": "fsdp_qlora", "d": "zero3"}, _numbers({**right, "c": "fsdp_qlora", "d": "zero3"}))
    for key, wrong, why in (("a", "fsdp", "a cheaper setup fits too"), ("a", "single", "leaves the others idle"),
                            ("b", "fsdp_qlora", "a cheaper setup fits too"), ("c", "fsdp", "more than a 24 GB GPU holds"),
                            ("c", "zero3", "more than a 24 GB GPU holds"), ("d", "zero2", "more than a 24 GB GPU holds"),
                            ("d", "ddp", "more than a 24 GB GPU holds")):
        choices = {**right, key: wrong}
        message = fails(checks.check_ex09_task4, choices, _numbers(choices), hint=why)
        assert "plain data parallelism (ddp)" not in message and "QLoRA + FSDP or ZeRO-3" not in message  # the old give-aways
    fails(checks.check_ex09_task4, {**right, "d": "fsdp_qlora"}, {**_numbers(right), "d": 1.0}, hint="4-bit weights cannot be trained")
    fails(checks.check_ex09_task4, right, {**_numbers(right), "c": _numbers({"c": "fsdp"})["c"]}, hint="the number behind your choice")
    fails(checks.check_ex09_task4, right, {key: 10.0 for key in right}, hint="the number behind your choice")  # a guess behind every choice
    fails(checks.check_ex09_task4, {**right, "a": "deepspeed"}, _numbers(right), hint="not setups")
    fails(checks.check_ex09_task4, {"a": "ddp"}, _numbers(right), hint="keys")
    fails(checks.check_ex09_task4, right, [1, 2, 3, 4], hint="gib_per_gpu should map")
    assert _numbers({"d": "zero2"})["d"] > GPU_GIB > _numbers({"d": "zero3"})["d"]
