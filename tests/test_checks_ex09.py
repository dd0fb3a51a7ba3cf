"""Exercise 09's checks accept the right answers and reject the tempting wrong ones with a hint that teaches."""

from __future__ import annotations

import pytest

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed


def _split(gpus, zero_stage, stage):
    return gpus if zero_stage >= stage else 1


def lora_right(total, trainable, weight_bytes, gpus, zero_stage):
    weights = ((total - trainable) * weight_bytes + 4 * trainable) / _split(gpus, zero_stage, 3)
    return (weights + 4 * trainable / _split(gpus, zero_stage, 2) + 8 * trainable / _split(gpus, zero_stage, 1)) / 2**30


def full_right(params, gpus, zero_stage):
    return params * (2 / _split(gpus, zero_stage, 3) + 2 / _split(gpus, zero_stage, 2) + 12 / _split(gpus, zero_stage, 1)) / 1e9


def test_task1_accepts_the_rule_and_rejects_each_stage_mistake():
    assert "hidden cases" in checks.check_ex09_task1.verify(lora_right)
    everything_divided = lambda t, tr, wb, g, z: lora_right(t, tr, wb, g, 3 if z else 0) if z else lora_right(t, tr, wb, g, 0)
    with pytest.raises(CheckFailed, match="ZeRO-1 divides only the optimizer"):
        checks.check_ex09_task1.verify(everything_divided)
    stage2_like_1 = lambda t, tr, wb, g, z: lora_right(t, tr, wb, g, 1 if z == 2 else z)
    with pytest.raises(CheckFailed, match="ZeRO-2 divides the optimizer states and the gradients"):
        checks.check_ex09_task1.verify(stage2_like_1)
    no_trainable_weights = lambda t, tr, wb, g, z: lora_right(t, tr, wb, g, z) - 4 * tr / _split(g, z, 3) / 2**30
    with pytest.raises(CheckFailed, match="no sharding"):
        checks.check_ex09_task1.verify(no_trainable_weights)
    with pytest.raises(CheckFailed, match="2\\*\\*30"):
        checks.check_ex09_task1.verify(lambda *a: lora_right(*a) * 2**30 / 1e9)  # GB instead of GiB


def test_task2_reproduces_the_zero_paper_and_rejects_the_wrong_byte_counts():
    assert "Figure 1" in checks.check_ex09_task2.verify(full_right)
    with pytest.raises(CheckFailed, match="12 of optimizer state"):
        checks.check_ex09_task2.verify(lambda p, g, z: full_right(p, g, z) * 12 / 16)  # fp32 master copy forgotten
    with pytest.raises(CheckFailed, match="zero_stage=1"):
        checks.check_ex09_task2.verify(lambda p, g, z: full_right(p, g, 0) if z == 1 else full_right(p, g, z))


def test_task3_knows_how_accelerate_deals_out_batches():
    assert "[2, 3, 6, 7]" in checks.check_ex09_task3.verify([2, 3, 6, 7])
    with pytest.raises(CheckFailed, match="not give rank 1 the second half"):
        checks.check_ex09_task3.verify([4, 5, 6, 7])
    with pytest.raises(CheckFailed, match="4 examples per rank"):
        checks.check_ex09_task3.verify([2, 3])
    with pytest.raises(CheckFailed, match="trains on \\[2, 3, 6, 7\\]"):
        checks.check_ex09_task3.verify([1, 3, 5, 7])


def test_task4_accepts_the_fitting_setups_and_explains_the_tempting_ones():
    right = {"a": "ddp", "b": "single", "c": "zero3_qlora", "d": "fsdp"}
    assert "fits its budget" in checks.check_ex09_task4.verify(right)
    for key, wrong, why in (("a", "fsdp", "fits one GPU many times"), ("b", "fsdp_qlora", "one 24 GB GPU holds it"),
                            ("c", "fsdp", "4-bit brings it"), ("d", "zero2", "ZeRO-2 keeps the 2-byte weights whole")):
        with pytest.raises(CheckFailed, match=why):
            checks.check_ex09_task4.verify({**right, key: wrong})
    with pytest.raises(CheckFailed, match="not setups"):
        checks.check_ex09_task4.verify({**right, "a": "deepspeed"})
    with pytest.raises(CheckFailed, match="keys"):
        checks.check_ex09_task4.verify({"a": "ddp"})
