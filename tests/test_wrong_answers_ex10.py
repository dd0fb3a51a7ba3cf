"""Planted wrong answers of exercise 10: each tempting mistake fails its check with a hint that says why, on the practice
case and on the grader's hidden one (``tests/planted.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_model

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.deploy import export_onnx, logits_on, max_logit_diff, onnx_logits, onnx_session
from ftcourse.generation import encode_prompt
from ftcourse.inference import first_layers
from tests.planted import fails, passes

PROMPTS = [[{"role": "user", "content": "Where is my parcel?"}], [{"role": "user", "content": "Cancel order 4471."}]]


def _best(stats, budget_ms):
    within = [s for s in stats if 1000 * s.p95_s <= budget_ms]
    return max(within, key=lambda s: s.row()["requests/s"]).batch_size if within else None


def _within(stats, budget, key):
    within = [s for s in stats if 1000 * s.p95_s <= budget]
    return max(within, key=key).batch_size if within else None


def _by_latency(stat):
    def rule(stats, budget):
        within = [s for s in stats if 1000 * stat(s) <= budget]
        return max(within, key=lambda s: s.row()["requests/s"]).batch_size if within else None

    return rule


WRONG_TASK1 = {
    "ignores the budget": (lambda stats, budget: max(stats, key=lambda s: s.row()["requests/s"]).batch_size, "highest throughput"),
    "budget in seconds": (lambda stats, budget: max((s for s in stats if s.p95_s <= budget), key=lambda s: s.row()["requests/s"]).batch_size,
                          "highest throughput"),
    "p50": (_by_latency(lambda s: s.p50_s), "median"),
    "mean": (_by_latency(lambda s: float(np.mean(s.latencies_s))), "the mean hides the slow requests"),
    "p90": (_by_latency(lambda s: s.percentile(90)), "90th percentile"),
    "p99": (_by_latency(lambda s: s.percentile(99)), "lets 5% of the requests be slower"),
    "max": (_by_latency(lambda s: max(s.latencies_s)), "lets 5% of the requests be slower"),
    "decode tokens/s as throughput": (lambda stats, budget: _within(stats, budget, lambda s: s.row()["decode tok/s"]),
                                      "decode tokens/s counts tokens"),
    "largest batch within budget": (lambda stats, budget: max((s.batch_size for s in stats if 1000 * s.p95_s <= budget), default=None),
                                    "not the largest batch size"),
    "never None": (lambda stats, budget: _best(stats, budget) or stats[0].batch_size, "return None"),
    "its throughput": (lambda stats, budget: max((s.row()["requests/s"] for s in stats if 1000 * s.p95_s <= budget), default=None),
                       "not a batch size"),
}


def test_task1_accepts_the_right_rule():
    assert "3 practice sweeps" in passes(checks.check_ex10_task1, _best)


@pytest.mark.parametrize("name", sorted(WRONG_TASK1))
def test_task1_rejects_tempting_wrong_rules(name):
    rule, hint = WRONG_TASK1[name]
    message = fails(checks.check_ex10_task1, rule, hint=hint)
    assert "the right batch size" not in message


@pytest.fixture(scope="module")
def exported(tokenizer):
    """A tiny Llama (2 layers) and its export, in a folder inside the course folder (where the grader reads files)."""
    import tempfile

    model = tiny_model("llama", vocab_size=len(tokenizer)).eval()
    runs = paths.project_root() / "runs"
    runs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="test-ex10-", dir=runs) as tmp:
        yield model, export_onnx(first_layers(model, 2), tokenizer, f"{tmp}/onnx")


def test_task2_accepts_the_verified_export(exported, tokenizer):
    model, folder = exported
    diff = max_logit_diff(logits_on(model, tokenizer, PROMPTS), onnx_logits(onnx_session(folder), tokenizer, PROMPTS))
    assert "answers like PyTorch" in passes(checks.check_ex10_task2, folder, diff, model, tokenizer, PROMPTS)


def test_task2_rejects_self_comparison_a_partial_difference_another_model_and_a_folder_outside(exported, tokenizer, tmp_path):
    model, folder = exported
    fails(checks.check_ex10_task2, folder, 0.0, model, tokenizer, PROMPTS, hint="not one runtime with itself")  # PyTorch vs PyTorch
    ours, theirs = logits_on(model, tokenizer, PROMPTS), onnx_logits(onnx_session(folder), tokenizer, PROMPTS)
    full = max_logit_diff(ours, theirs)
    fails(checks.check_ex10_task2, folder, full / 2, model, tokenizer, PROMPTS, hint="not only the last position")  # a part of it
    fails(checks.check_ex10_task2, folder, torch.tensor(full), model, tokenizer, PROMPTS, hint="max_diff = float(")
    other = tiny_model("llama", seed=1, vocab_size=len(tokenizer)).eval()
    fails(checks.check_ex10_task2, folder, full, other, tokenizer, PROMPTS, hint="export small_model itself")
    fails(checks.check_ex10_task2, folder.parent, full, model, tokenizer, PROMPTS, hint="writes it")
    fails(checks.check_ex10_task2, tmp_path, full, model, tokenizer, PROMPTS, hint="inside the course folder")


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
    assert "pads on the left" in passes(checks.check_ex10_task3, _batched(True, True), base_model, tokenizer)
    for wrong in (_batched(False, True), _batched(True, False)):
        fails(checks.check_ex10_task3, wrong, base_model, tokenizer, hint="put the pads on the left")


def test_task3_rejects_a_fix_that_stops_batching(base_model, tokenizer):
    """Generating the prompts one at a time gives the right answers, but it is not the fix the task asks for."""
    right = _batched(True, True)

    def one_at_a_time(model, tokenizer, prompts, max_new_tokens):
        return [right(model, tokenizer, [p], max_new_tokens)[0] for p in prompts]

    fails(checks.check_ex10_task3, one_at_a_time, base_model, tokenizer, hint="not to avoid it")
