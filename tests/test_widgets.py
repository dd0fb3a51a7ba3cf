"""The playground widget (issue 5), driven without a browser: set ``.value``, call ``.click()``."""

from __future__ import annotations

import pytest
import torch

from ftcourse.course.playground import Playground
from ftcourse.generation import generate

PROMPT = "Name one fruit."


@pytest.fixture(scope="module")
def adapted():
    """The embedded model with two random LoRA adapters (they change the outputs; no training needed)."""
    from peft import LoraConfig, get_peft_model

    from ftcourse.models import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model("embedded"), LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="tuned")
    model.add_adapter("other", LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return model


def _answer(model, tokenizer, adapter: str | None, tokens: int) -> str:
    messages = [[{"role": "user", "content": PROMPT}]]
    if adapter is None:
        with model.disable_adapter():
            return generate(model, tokenizer, messages, max_new_tokens=tokens, progress=False)[0]
    model.set_adapter(adapter)
    return generate(model, tokenizer, messages, max_new_tokens=tokens, progress=False)[0]


def test_click_fills_base_and_selected_adapter_side_by_side(adapted, tokenizer):
    adapted.set_adapter("tuned")
    pg = Playground(adapted, tokenizer)
    assert list(pg.choice.options) == ["base", "tuned", "other"]
    pg.prompt.value = PROMPT
    pg.choice.value = "tuned"
    pg.max_new_tokens.value = 6
    pg.button.click()
    left, right = pg.outputs["left"].value, pg.outputs["right"].value
    assert "base" in pg.titles["left"].value and "tuned" in pg.titles["right"].value
    assert adapted.active_adapter == "tuned"  # the selection does not leak into the model's state
    assert left == _answer(adapted, tokenizer, None, 6)
    assert right == _answer(adapted, tokenizer, "tuned", 6)
    assert left != right
    assert "greedy" in pg.status.value


def test_selector_switches_adapter_and_restores_the_active_one(adapted, tokenizer):
    expected = _answer(adapted, tokenizer, "other", 6)
    adapted.set_adapter("tuned")
    pg = Playground(adapted, tokenizer, prompt=PROMPT, max_new_tokens=6)
    pg.choice.value = "other"
    assert pg.generate()["other"] == expected
    assert adapted.active_adapter == "tuned"
    pg.choice.value = "base"
    pg.generate()
    assert pg.outputs["left"].value == pg.outputs["right"].value == _answer(adapted, tokenizer, None, 6)


def test_settings_are_applied(adapted, tokenizer):
    pg = Playground(adapted, tokenizer, prompt=PROMPT)
    pg.max_new_tokens.value = 2
    pg.generate()
    assert len(tokenizer(pg.outputs["right"].value, add_special_tokens=False)["input_ids"]) <= 2
    pg.max_new_tokens.value, pg.temperature.value, pg.seed.value = 8, 1.2, 7
    first = pg.generate()
    assert pg.generate() == first  # same seed: same sample
    assert "temperature 1.2, seed 7" in pg.status.value


def test_empty_prompt_asks_for_one(adapted, tokenizer):
    pg = Playground(adapted, tokenizer)
    pg.prompt.value = "   "
    pg.button.click()
    assert "Type a prompt" in pg.status.value and pg.outputs["right"].value == ""


def test_other_loaded_models_can_be_chosen(base_model, tokenizer):
    pg = Playground(base_model, tokenizer, choices={"base": base_model, "same weights": base_model}, prompt=PROMPT, max_new_tokens=4)
    answers = pg.generate()
    expected = generate(base_model, tokenizer, [[{"role": "user", "content": PROMPT}]], max_new_tokens=4, progress=False)[0]
    assert answers == {"base": expected, "same weights": expected}
    assert pg.outputs["left"].value == pg.outputs["right"].value == expected
