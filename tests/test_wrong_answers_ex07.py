"""Planted wrong answers of exercise 07: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import torch

from ftcourse import paths
from ftcourse.configs import LoraSettings
from ftcourse.course import checks
from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.data import classification_instruction, to_messages
from ftcourse.tokenization import prompt_ids
from tests.planted import fails, passes

# ---------------------------------------------------------------- ex07


@pytest.fixture(scope="module")
def merge_case(tokenizer):
    """A tiny Llama (tied embeddings, like the embedded model) saved as a base, and a LoRA adapter with non-zero B saved on it,
    under the course folder (the checks read saved files inside the workspace only); removed afterwards."""
    from peft import get_peft_model

    from ftcourse.models import load_model
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import save_tiny

    folder = paths.fine_tuned_dir() / f"pytest-ex07-{uuid.uuid4().hex[:8]}"
    base_dir = save_tiny("llama", folder / "base", tokenizer, vocab_size=len(tokenizer), tie_word_embeddings=True)
    base = load_model(str(base_dir))
    lora = get_peft_model(base, build_peft_config("lora", base, LoraSettings(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    lora.save_pretrained(folder / "adapter")
    yield folder, base_dir, folder / "adapter"
    shutil.rmtree(folder, ignore_errors=True)


def _lora(adapter_dir):
    from peft import PeftModel

    from ftcourse.models import load_model

    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base), str(adapter_dir))


def _merged(adapter_dir):


    return _lora(adapter_dir).merge_and_unload()


def test_ex07_task1_a_merge_into_4_bit_and_wrong_diagnoses_fail(merge_case, tokenizer):
    _, _, adapter_dir = merge_case
    assert "full-precision base" in passes(checks.check_ex07_task1, {"4bit_base"}, _merged(adapter_dir), adapter_dir, tokenizer)
    fails(checks.check_ex07_task1, {"4bit_base"}, checks.ex07_classmate_merge(adapter_dir), adapter_dir, tokenizer, hint="16 levels per block")
    for named in ({"scale"}, {"dropout", "tokenizer"}, set()):
        message = fails(checks.check_ex07_task1, named, _merged(adapter_dir), adapter_dir, tokenizer, hint="Test a suspicion")
        assert "4-bit" not in message and "4bit" not in message  # the hint says how to find the cause, never which it is
    message = fails(checks.check_ex07_task1, {"4bit_base", "dropout"}, _merged(adapter_dir), adapter_dir, tokenizer, hint="did not happen here")
    assert "dropout" not in message.split("Hint:")[0]
    fails(checks.check_ex07_task1, {"4bit_base"}, _lora(adapter_dir), adapter_dir, tokenizer, hint="still has LoRA layers")
    unmerged = _merged(adapter_dir)
    with torch.no_grad():
        for name, p in unmerged.named_parameters():
            if "q_proj" in name:
                p.mul_(1.01)  # weights changed after merging
    fails(checks.check_ex07_task1, {"4bit_base"}, unmerged, adapter_dir, tokenizer, hint="full-precision base")


def test_ex07_task2_tied_weights_twice_16_bits_mib_and_saving_to_measure_fail(merge_case, tokenizer):
    from ftcourse.models import load_model

    folder, _, adapter_dir = merge_case
    merged = _merged(adapter_dir)
    merged_dir = folder / "merged"
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    reloaded = load_model(str(merged_dir))

    def right(model):
        return sum(p.numel() * p.element_size() for p in model.parameters())

    def save_and_measure(model):
        model.save_pretrained(folder / "measured")
        return sum(p.stat().st_size for p in (folder / "measured").glob("*.safetensors"))

    args = (merged_dir, reloaded, adapter_dir, tokenizer)
    assert "predicted exactly" in passes(checks.check_ex07_task2, *args, right, merged)
    fails(checks.check_ex07_task2, *args, lambda m: sum(t.numel() * t.element_size() for t in m.state_dict().values()), merged, hint="stored once")
    fails(checks.check_ex07_task2, *args, lambda m: sum(p.numel() * 2 for p in m.parameters()), merged, hint="not always in 16 bits")
    fails(checks.check_ex07_task2, *args, lambda m: sum(p.numel() * 4 for p in m.parameters()), merged, hint="not always as 4-byte floats")
    fails(checks.check_ex07_task2, *args, lambda m: right(m) / 2**20, merged, hint="bytes, not MiB")
    fails(checks.check_ex07_task2, *args, save_and_measure, merged, hint="calls `save_pretrained`")

    def footprint(model):
        return model.get_memory_footprint()

    fails(checks.check_ex07_task2, *args, footprint, merged, hint="calls `get_memory_footprint`")
    printed = right(merged)
    fails(checks.check_ex07_task2, *args, lambda m: printed, merged, hint="each parameter tensor once")
    fails(checks.check_ex07_task2, merged_dir, _lora(adapter_dir), adapter_dir, tokenizer, right, merged, hint="reloaded = load_model")
    fails(checks.check_ex07_task2, adapter_dir, reloaded, adapter_dir, tokenizer, right, merged, hint="save the merged model, not lora_model")


def test_ex07_task3_megabytes_one_file_and_swapped_sizes_fail(merge_case):
    folder, base_dir, adapter_dir = merge_case

    def mib(path, unit=2**20, files="*"):
        return sum(p.stat().st_size for p in Path(path).rglob(files) if p.is_file()) / unit

    assert "the adapter takes" in passes(checks.check_ex07_task3, mib(adapter_dir), mib(base_dir), adapter_dir, base_dir)
    fails(checks.check_ex07_task3, mib(adapter_dir, unit=1e6), mib(base_dir, unit=1e6), adapter_dir, base_dir, hint="2**20")
    fails(checks.check_ex07_task3, mib(adapter_dir, files="*.safetensors"), mib(base_dir), adapter_dir, base_dir, hint="rglob")
    fails(checks.check_ex07_task3, mib(base_dir), mib(adapter_dir), adapter_dir, base_dir, hint="adapter_mb is")


def test_ex07_task4_peft_s_merge_and_wrong_scales_fail():
    assert "matches PEFT" in passes(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + alpha / r * b @ a)
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + alpha * r * b @ a, hint="by alpha * r: LoRA's scale is alpha / r")
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + alpha * b @ a, hint="by alpha alone: LoRA's scale is alpha / r")
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + b @ a, hint="by no scale: LoRA's scale is alpha / r")
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + r / alpha * b @ a, hint="by r / alpha: LoRA's scale is alpha / r")
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + 3 * b @ a, hint="W + (alpha / r) * B @ A")  # a scale that ignores alpha and r
    fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: (w + alpha / r * b @ a).T, hint="B @ A has the weight's shape")

    def via_peft(w, a, b, alpha, r):
        layer = torch.nn.Linear(1, 1)
        return w + layer.get_delta_weight("default")  # the helper: merge_weight must not hand the job to PEFT

    fails(checks.check_ex07_task4, via_peft, hint="calls `get_delta_weight`")


def _inference_ids(tokenizer, message):
    messages = [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]


def test_ex07_task5_plain_text_a_missing_system_message_or_generation_prompt_and_the_helper_fail(tokenizer):
    assert "equals the training prompt" in passes(checks.check_ex07_task5, _inference_ids, tokenizer)

    def no_system(tokenizer, message):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    def no_generation_prompt(tokenizer, message):
        messages = [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True, return_dict=True)["input_ids"]

    def helper(tokenizer, message):
        return prompt_ids(tokenizer, [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}])

    fails(checks.check_ex07_task5, checks.ex07_broken_prompt_ids, tokenizer, hint="not plain text")
    fails(checks.check_ex07_task5, no_system, tokenizer, hint="default one")
    fails(checks.check_ex07_task5, no_generation_prompt, tokenizer, hint="add_generation_prompt=True")
    fails(checks.check_ex07_task5, helper, tokenizer, hint="calls `prompt_ids`")

    def via_to_messages(tokenizer, message):
        messages = to_messages({"text": message, "label": INTENT_LABELS[0]}, "classification", INTENT_LABELS)[:-1]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    fails(checks.check_ex07_task5, via_to_messages, tokenizer, hint="calls `to_messages`")
