"""Merging adapters (issue 29): TIES computed step by step on one weight's task tensors equals what PEFT's
``add_weighted_adapter(..., combination_type="ties")`` stores for that weight, and linear is the weighted sum."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import tiny_model

DENSITY = 0.3
WEIGHTS = (1.0, 0.6)


def _ties_steps(tensors: list[torch.Tensor], weights: list[float], density: float) -> torch.Tensor:
    """Yadav et al.'s three steps, one tensor entry at a time where it helps to read them."""
    kept = []
    for tensor in tensors:  # trim: the k largest magnitudes of each task tensor stay
        k = int(density * tensor.numel())
        threshold_index = tensor.abs().flatten().argsort(descending=True)[:k]
        mask = torch.zeros(tensor.numel())
        mask[threshold_index] = 1
        kept.append(tensor.flatten() * mask)
    merged = torch.zeros_like(kept[0])
    for j in range(merged.numel()):
        values = [t[j].item() for t in kept]
        sign = 1.0 if sum(values) >= 0 else -1.0  # elect: the sign of the summed entries
        agreeing = [w * v for w, v in zip(weights, values) if v != 0 and math.copysign(1.0, v) == sign]
        merged[j] = sum(agreeing) / max(1, len(agreeing))  # disjoint merge: mean of the agreeing, weighted entries
    return merged.view_as(tensors[0])


@pytest.fixture(scope="module")
def two_task_model():
    model = tiny_model("llama")
    torch.manual_seed(1)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="one")
    torch.manual_seed(2)
    model.add_adapter("two", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.add_weighted_adapter(["one", "two"], list(WEIGHTS), "ties", combination_type="ties", density=DENSITY)
    model.add_weighted_adapter(["one", "two"], list(WEIGHTS), "linear", combination_type="linear")
    return model


def test_ties_by_hand_on_one_weight_equals_peft(two_task_model):
    layer = two_task_model.base_model.model.model.layers[1].self_attn.v_proj
    factor_weights = [math.sqrt(w * layer.scaling[a]) for w, a in zip(WEIGHTS, ("one", "two"))]  # PEFT's split of w·alpha/r
    for factors in (layer.lora_A, layer.lora_B):
        by_hand = _ties_steps([factors["one"].weight.data, factors["two"].weight.data], factor_weights, DENSITY)
        assert torch.allclose(by_hand, factors["ties"].weight.data, atol=1e-6)
        assert 0 < int((by_hand != 0).sum()) < by_hand.numel()  # trimmed, and not to nothing


def test_linear_merges_each_factor_as_a_weighted_sum(two_task_model):
    layer = two_task_model.base_model.model.model.layers[0].self_attn.q_proj
    factor_weights = [math.sqrt(w * layer.scaling[a]) for w, a in zip(WEIGHTS, ("one", "two"))]
    expected = factor_weights[0] * layer.lora_A["one"].weight + factor_weights[1] * layer.lora_A["two"].weight
    assert torch.allclose(layer.lora_A["linear"].weight, expected)
    # so the merged update B'A' holds cross terms B_one A_two: it is not the weighted sum of the two updates
    summed = sum(w * layer.get_delta_weight(a) for w, a in zip(WEIGHTS, ("one", "two")))
    assert not torch.allclose(layer.get_delta_weight("linear"), summed, atol=1e-3)
