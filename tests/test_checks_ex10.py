"""Exercise 10's checks accept the right answers and reject the tempting wrong ones (planted here)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_model

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed
from ftcourse.deploy import export_onnx, logits_on, max_logit_diff, onnx_logits, onnx_session
from ftcourse.generation import encode_prompt

PROMPTS = [[{"role": "user", "content": "Where is my parcel?"}], [{"role": "user", "content": "Cancel order 4471."}]]


def _best(stats, budget_ms):
    within = [s for s in stats if 1000 * s.p95_s <= budget_ms]
    return max(within, key=lambda s: s.row()["requests/s"]).batch_size if within else None


WRONG_TASK1 = {
    "ignores the budget": (lambda stats, budget: max(stats, key=lambda s: s.row()["requests/s"]).batch_size, "highest throughput"),
    "uses p50": (lambda stats, budget: max((s for s in stats if 1000 * s.p50_s <= budget), key=lambda s: s.row()["requests/s"]).batch_size,
                 "median"),
    "largest batch within budget": (lambda stats, budget: max((s.batch_size for s in stats if 1000 * s.p95_s <= budget), default=None),
                                    "not the largest batch size"),
    "never None": (lambda stats, budget: _best(stats, budget) or stats[0].batch_size, "return None"),
    "budget in seconds": (lambda stats, budget: max((s for s in stats if s.p95_s <= budget), key=lambda s: s.row()["requests/s"]).batch_size,
                          "highest throughput"),
}


def test_task1_accepts_the_right_rule():
    assert "3 hidden sweeps" in checks.check_ex10_task1.verify(_best)


@pytest.mark.parametrize("name", sorted(WRONG_TASK1))
def test_task1_rejects_tempting_wrong_rules(name):
    rule, hint = WRONG_TASK1[name]
    with pytest.raises(CheckFailed) as info:
        checks.check_ex10_task1.verify(rule)
    assert hint in str(info.value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    model = tiny_model("llama", vocab_size=len(tokenizer)).eval()
    folder = export_onnx(model, tokenizer, tmp_path_factory.mktemp("ex10") / "onnx")
    return model, folder


def test_task2_accepts_the_verified_export(exported, tokenizer):
    model, folder = exported
    diff = max_logit_diff(logits_on(model, tokenizer, PROMPTS), onnx_logits(onnx_session(folder), tokenizer, PROMPTS))
    assert "answers like PyTorch" in checks.check_ex10_task2.verify(folder, diff, model, tokenizer, PROMPTS)


def test_task2_rejects_self_comparison_a_partial_difference_and_another_model(exported, tokenizer):
    model, folder = exported
    with pytest.raises(CheckFailed, match="exactly 0"):
        checks.check_ex10_task2.verify(folder, 0.0, model, tokenizer, PROMPTS)  # PyTorch vs PyTorch
    theirs = onnx_logits(onnx_session(folder), tokenizer, PROMPTS)
    ours = logits_on(model, tokenizer, PROMPTS)
    full = max_logit_diff(ours, theirs)
    with pytest.raises(CheckFailed, match="every position"):
        checks.check_ex10_task2.verify(folder, full / 2, model, tokenizer, PROMPTS)
    with pytest.raises(CheckFailed, match="should be a float"):
        checks.check_ex10_task2.verify(folder, torch.tensor(full), model, tokenizer, PROMPTS)
    other = tiny_model("llama", seed=1, vocab_size=len(tokenizer)).eval()
    with pytest.raises(CheckFailed, match="hidden prompts"):
        checks.check_ex10_task2.verify(folder, full, other, tokenizer, PROMPTS)
    with pytest.raises(CheckFailed, match="holds no model.onnx"):
        checks.check_ex10_task2.verify(folder.parent, full, model, tokenizer, PROMPTS)


def _batched(pad_left: bool, mask_pads: bool):
    def batched_greedy(model, tokenizer, prompts, max_new_tokens):
        encoded = [encode_prompt(tokenizer, p) for p in prompts]
        width = max(len(seq) for seq in encoded)
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(encoded), width), dtype=torch.long) if mask_pads else torch.ones((len(encoded), width), dtype=torch.long)
        for row, seq in enumerate(encoded):
            span = slice(width - len(seq), None) if pad_left else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq)
            mask[row, span] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]

    return batched_greedy


def test_task3_accepts_left_padding_and_rejects_right_padding_and_unmasked_pads(base_model, tokenizer):
    assert "pads on the left" in checks.check_ex10_task3.verify(_batched(True, True), base_model, tokenizer)
    for wrong in (_batched(False, True), _batched(True, False)):
        with pytest.raises(CheckFailed, match="put the pads on the left"):
            checks.check_ex10_task3.verify(wrong, base_model, tokenizer)
