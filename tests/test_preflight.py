"""Pre-flight checks: each one passes on good data and fires on a planted fault (issue 4)."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import tiny_model

import ftcourse.preflight as preflight
import ftcourse.train as train
from ftcourse.configs import LoraSettings, TrainingSettings
from ftcourse.course.bundled import intent_records
from ftcourse.errors import CourseError
from ftcourse.memory import training_memory
from ftcourse.preflight import (
    ParameterChangeCheck,
    check_eos_trained,
    check_label_mask,
    check_memory,
    check_pad_token,
    check_sequence_length,
    check_template_parity,
    run_preflight,
    training_checks,
)
from ftcourse.profiles import get_profile
from ftcourse.tokenization import IGNORE_INDEX, collate, tokenize_messages, tokenize_records
from ftcourse.train import fine_tune

STEPS = TrainingSettings(max_steps=1, batch_size=2, gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def records():
    return intent_records(get_profile("smoke"))["train"][:6]


@pytest.fixture(scope="module")
def examples(tokenizer, records):
    return tokenize_records(tokenizer, records, 256)


def masking_collator(pad_token_id):
    """The classic bug (DataCollatorForLanguageModeling does this): labels = -100 wherever input_ids == pad."""
    def collator(batch):
        out = collate(batch, pad_token_id)
        out["labels"][out["input_ids"] == pad_token_id] = IGNORE_INDEX
        return out
    return collator


def run(records, tmp_path, **kwargs):
    kwargs.setdefault("settings", STEPS)
    return fine_tune(records, progress=False, run_name="preflight", output_root=tmp_path / "runs", checkpoint_root=tmp_path / "ckpt", **kwargs)


def test_all_checks_pass_on_course_data(tokenizer, records, examples, base_model):
    checks = run_preflight(training_checks(tokenizer, examples, [r["messages"] for r in records],
                                           lambda b: collate(b, tokenizer.pad_token_id), base_model, 2, 256), printer=None)
    assert [c.name for c in checks] == ["pad token", "label mask", "EOS trained", "chat template", "sequence length", "memory"]
    assert all(c.ok for c in checks)
    assert "(== EOS" in checks[0].message  # SmolLM2 pads with its EOS token


# ---------------------------------------------------------------- pad token


def test_missing_pad_token_stops_before_collating(tokenizer, records, examples, base_model):
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    assert not check_pad_token(no_pad).ok
    with pytest.raises(CourseError, match="(?s)'pad token' failed.*tokenizer.pad_token = tokenizer.eos_token"):
        run_preflight(training_checks(no_pad, examples, [r["messages"] for r in records],
                                      lambda b: collate(b, no_pad.pad_token_id), base_model, 2, 256), printer=None)


# ---------------------------------------------------------------- label mask


def test_empty_label_mask_fires(tokenizer, records, tmp_path):
    cut = tokenize_records(tokenizer, records, max_length=24)  # the prompt alone is longer: no answer token left
    check = check_label_mask(cut)
    assert not check.ok and "6 of 6 examples train no token at all" in check.message
    with pytest.raises(CourseError, match="(?s)'label mask' failed.*raise max_seq_length"):
        run(records, tmp_path, settings=TrainingSettings(max_steps=1, batch_size=2, max_seq_length=24))


def test_prompt_trained_too_fires(tokenizer, records, examples, tmp_path):
    unmasked = [{"messages": r["messages"], "input_ids": e["input_ids"], "labels": list(e["input_ids"])} for r, e in zip(records, examples)]
    check = check_label_mask(tokenize_records(tokenizer, unmasked, 256))
    assert not check.ok and "prompt included" in check.message
    with pytest.raises(CourseError, match="'label mask' failed"):
        run(unmasked, tmp_path)


def test_label_mask_counts_trained_tokens(examples):
    check = check_label_mask(examples)
    trained = sum(sum(label != IGNORE_INDEX for label in e["labels"]) for e in examples)
    assert check.ok and f"{trained:,} of" in check.message


# ---------------------------------------------------------------- EOS


def test_collate_keeps_eos_trained_when_pad_is_eos(tokenizer, examples):
    batch = collate(examples, tokenizer.pad_token_id)
    assert check_eos_trained(batch, tokenizer.eos_token_id).ok
    assert batch["input_ids"].shape[1] % 8 == 0 and (batch["attention_mask"].sum(1) == torch.tensor([len(e["input_ids"]) for e in examples])).all()


def test_pad_masking_collator_fires(tokenizer, records, examples, tmp_path):
    faulty = masking_collator(tokenizer.pad_token_id)
    check = check_eos_trained(faulty(examples), tokenizer.eos_token_id)
    assert not check.ok and "6 of 6 responses" in check.message
    with pytest.raises(CourseError, match="(?s)'EOS trained' failed.*completion mask"):
        run(records, tmp_path, data_collator=faulty)


# ---------------------------------------------------------------- chat template


def test_template_mismatch_fires(tokenizer, records, tmp_path):
    alpaca = copy.deepcopy(tokenizer)
    alpaca.chat_template = None  # formats with the Alpaca prompt instead of the chat template
    mismatched = [{"messages": r["messages"], **tokenize_messages(alpaca, r["messages"])} for r in records]
    check = check_template_parity(tokenizer, mismatched, [r["messages"] for r in records])
    assert not check.ok and "example #0" in check.message
    assert check_template_parity(alpaca, mismatched, [r["messages"] for r in records]).ok
    with pytest.raises(CourseError, match="'chat template' failed"):
        run(mismatched, tmp_path)


# ---------------------------------------------------------------- sequence length


def test_truncation_is_a_warning_that_does_not_stop_training(tokenizer, records, examples, base_model):
    limit = max(e["labels"].count(IGNORE_INDEX) for e in examples) + 1  # every example keeps >= 1 answer token
    cut = tokenize_records(tokenizer, records, max_length=limit)
    share = sum(e["truncated"] for e in cut) / len(cut)
    check = check_sequence_length(cut, limit)
    assert share > preflight.MAX_TRUNCATED_SHARE and not check.ok and check.warning
    checks = run_preflight(training_checks(tokenizer, cut, [r["messages"] for r in records],
                                           lambda b: collate(b, tokenizer.pad_token_id), base_model, 2, limit), printer=None)
    assert [c.ok for c in checks if c.name != "sequence length"] == [True] * 5  # truncated rows are left out of the EOS check


# ---------------------------------------------------------------- memory


def test_memory_check_fires_when_memory_is_short(base_model):
    need = training_memory(base_model, batch_size=8, seq_length=128).total
    assert not check_memory(base_model, 8, 128, available=need).ok
    assert check_memory(base_model, 8, 128, available=2 * need).ok
    assert training_memory(base_model, batch_size=8, seq_length=128, gradient_checkpointing=True).total < need
    with pytest.raises(CourseError, match="(?s)'memory' failed.*lower batch_size"):
        run_preflight([check_memory(base_model, 8, 128, available=2**30)], printer=None)


def test_gradient_checkpointing_turns_on_when_memory_needs_it(tokenizer, records, examples, tmp_path, monkeypatch):
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    probe = tiny_model("llama", vocab_size=len(tokenizer))
    probe = get_peft_model(probe, build_peft_config("lora", probe))
    longest = max(len(e["input_ids"]) for e in examples)
    low = training_memory(probe, batch_size=2, seq_length=longest, gradient_checkpointing=True).total
    high = training_memory(probe, batch_size=2, seq_length=longest).total
    tight = int((low + high) / 2 / 0.9)  # fits with checkpointing only
    monkeypatch.setattr(preflight, "available_memory", lambda: tight)
    monkeypatch.setattr(train, "available_memory", lambda: tight)
    result = run(records, tmp_path, model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer,
                 settings=TrainingSettings(max_steps=2, batch_size=2, logging_steps=1, warmup_ratio=0.0))
    assert result.metrics["gradient_checkpointing"] is True
    assert result.metrics["checks"]["memory"] and result.metrics["checks"]["parameters update"]
    assert torch.isfinite(torch.tensor(result.metrics["train_loss"]))


# ---------------------------------------------------------------- parameters update


def test_a_learning_rate_too_small_to_move_anything_fires_after_the_first_step(records, tmp_path):
    """A learning rate of 0 is refused up front; 1e-46 passes that check, but every update underflows to 0 in float32."""
    with pytest.raises(CourseError, match="(?s)'parameters update' failed: no trainable parameter changed.*learning rate"):
        run(records, tmp_path, settings=TrainingSettings(max_steps=2, batch_size=2, learning_rate=1e-46, warmup_ratio=0.0))


def test_frozen_parameter_that_moves_fires():
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    model = tiny_model("llama")
    model = get_peft_model(model, build_peft_config("lora", model, LoraSettings(r=4)))
    check = ParameterChangeCheck(model)
    assert not check.verify(model).ok  # nothing trained yet
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(0.01)
    assert check.verify(model).ok
    frozen_name = next(iter(check.frozen))
    with torch.no_grad():
        dict(model.named_parameters())[frozen_name].add_(0.01)
    result = check.verify(model)
    assert not result.ok and "frozen parameters changed" in result.message and frozen_name in result.message


# ---------------------------------------------------------------- target modules


def test_wrong_target_module_fires_before_training(records, tmp_path):
    with pytest.raises(CourseError, match=r"(?s)\['query'\] match no linear layer of this llama.*q_proj") as err:
        run(records, tmp_path, lora=LoraSettings(target_modules=["query"]))
    assert "down_proj" in str(err.value) and "all-linear" in str(err.value)
