"""lm-eval on a local task (issue 29): its multiple-choice accuracy is the course's label-likelihood accuracy on the same
intent test messages, for the real embedded model and for the same model with an adapter; offline, nothing from a hub."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from ftcourse.course import bundled
from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.data import classification_instruction
from ftcourse.errors import CourseError
from ftcourse.generation import label_log_likelihoods
from ftcourse.profiles import get_profile

pytest.importorskip("lm_eval")

from ftcourse.harness import run_harness, write_choice_task  # noqa: E402

SYSTEM = classification_instruction(INTENT_LABELS)


@pytest.fixture(scope="module")
def records():
    return bundled.intent_records(get_profile("smoke"))["test"][:3]


@pytest.fixture(scope="module")
def task_yaml(tmp_path_factory, records, tokenizer):
    return write_choice_task(tmp_path_factory.mktemp("task"), "intents", records, INTENT_LABELS, end=tokenizer.eos_token)


def _check_harness_is_the_course(model, tokenizer, records, task_yaml):
    result = run_harness(model, tokenizer, task_yaml, system=SYSTEM)
    prompts = [r["messages"][:-1] for r in records]
    course = label_log_likelihoods(model, tokenizer, prompts, INTENT_LABELS, progress=False)
    picks = [max(range(len(INTENT_LABELS)), key=row.__getitem__) for row in course]
    assert result.contexts == [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    assert result.choices[0] == [label + tokenizer.eos_token for label in INTENT_LABELS]
    assert result.predictions == picks
    assert result.accuracy == pytest.approx(sum(INTENT_LABELS[i] == r["label"] for i, r in zip(picks, records)) / len(records))
    # lm-eval scores the template's final "\n" with each option: one shared term per message, the same for all ten options
    offsets = [[h - c for h, c in zip(h_row, c_row)] for h_row, c_row in zip(result.scores, course)]
    assert max(max(row) - min(row) for row in offsets) < 1e-3
    return result


def test_the_harness_accuracy_is_the_courses_label_likelihood_accuracy(base_model, tokenizer, records, task_yaml):
    _check_harness_is_the_course(base_model, tokenizer, records, task_yaml)


def test_the_same_holds_with_an_adapter_and_the_plain_format_is_another_prompt(fresh_model, tokenizer, records, task_yaml):
    torch.manual_seed(0)
    adapted = get_peft_model(fresh_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).eval()
    chat = _check_harness_is_the_course(adapted, tokenizer, records, task_yaml)
    plain = run_harness(adapted, tokenizer, task_yaml, system=SYSTEM, chat_template=False)
    assert plain.contexts[0] == f"{SYSTEM}\n\n{records[0]['messages'][-2]['content']}" and plain.choices[0][0] == f" {INTENT_LABELS[0]}<|im_end|>"
    assert plain.scores != chat.scores


def test_a_task_needs_records_whose_labels_are_choices(tmp_path):
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "greeting"}], "label": "greeting"}
    with pytest.raises(CourseError, match="labels not among the choices"):
        write_choice_task(tmp_path, "t", [record], INTENT_LABELS)
    with pytest.raises(CourseError, match="0 records"):
        write_choice_task(tmp_path, "t", [], INTENT_LABELS)
    with pytest.raises(CourseError, match="does not exist"):
        run_harness(None, None, tmp_path / "missing.yaml")
