"""Evaluation (issue 5): metrics and their registry, generation, classification three ways, base vs fine-tuned, reports."""

from __future__ import annotations

import json

import pytest
import torch

from ftcourse.course import bundled
from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.errors import CourseError
from ftcourse.evaluation import METRICS, compare, evaluate_model, group_tasks
from ftcourse.generation import classify, encode_prompt, generate, label_log_likelihoods, perplexity, text_nll
from ftcourse.metrics import (
    classification_metrics,
    confusion_matrix,
    exact_match,
    generation_checks,
    json_metrics,
    mcnemar_test,
    rouge,
    wilson_interval,
)
from ftcourse.profiles import get_profile
from ftcourse.reports import write_report

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def intent_test():
    return bundled.intent_records(SMOKE)["test"][:6]


@pytest.fixture
def random_adapter(fresh_model):
    """The embedded model with a LoRA adapter whose B is random (it changes the outputs) — no training needed."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(fresh_model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))


# ---------------------------------------------------------------- metrics, by hand


def test_macro_and_per_label_f1_by_hand():
    refs = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", None]
    m = classification_metrics(preds, refs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_label"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_label"]["b"]["recall"] == 1.0
    assert m["per_label"]["c"]["f1"] == 0.0
    assert m["f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_confusion_matrix_has_a_no_label_column():
    matrix = confusion_matrix(["a", "b", None], ["a", "a", "b"], ["a", "b"])
    assert matrix == [[1, 1, 0], [0, 0, 1]]


def test_exact_match_ignores_case_and_spacing():
    assert exact_match(["Hello  World", "x", None], ["hello world", "y", "z"]) == pytest.approx(1 / 3)


def test_rouge1_and_rougeL_by_hand():
    same_words = rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert same_words == {"rouge1": pytest.approx(5 / 6), "rougeL": pytest.approx(5 / 6)}
    shuffled = rouge(["mat the on cat the"], ["the cat on the mat"])
    assert shuffled["rouge1"] == pytest.approx(1.0)  # the same words...
    assert shuffled["rougeL"] == pytest.approx(3 / 5)  # ...but only 3 in order
    assert rouge([""], ["anything"]) == {"rouge1": 0.0, "rougeL": 0.0}


def test_json_metrics_valid_rate_and_per_field_accuracy():
    refs = ['{"intent":"order_status","order_id":"123","product":null}'] * 3
    preds = [
        '{"intent": "order_status", "order_id": "123", "product": null}',
        '```json\n{"intent":"order_status","order_id":123,"product":"Lamp"}\n```',
        "order_status, 123",
    ]
    m = json_metrics(preds, refs)
    assert m["valid_json"] == pytest.approx(2 / 3)
    assert m["field_accuracy"] == {"intent": pytest.approx(2 / 3), "order_id": pytest.approx(2 / 3), "product": pytest.approx(1 / 3)}
    assert m["all_fields"] == pytest.approx(1 / 3)


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71674, half 1.41602 · √(0.016 + 0.009604) = 0.22658
    assert wilson_interval(8, 10) == (pytest.approx(0.49016, abs=1e-5), pytest.approx(0.94332, abs=1e-5))
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(3.8416 / 23.8416, abs=1e-9)  # at p = 0 the upper end is z²/(n + z²)
    assert wilson_interval(20, 20)[0] == pytest.approx(20 / 23.8416, abs=1e-9) and wilson_interval(20, 20)[1] == 1.0
    half = (0.25 / 100 + 1 / 40000) ** 0.5 / 1.01  # 50 of 100 at z = 1: centre 0.5, the interval symmetric
    assert wilson_interval(50, 100, z=1.0) == (pytest.approx(0.5 - half, abs=1e-12), pytest.approx(0.5 + half, abs=1e-12))
    with pytest.raises(CourseError, match="successes <= n"):
        wilson_interval(11, 10)
    with pytest.raises(CourseError):
        wilson_interval(0, 0)


def test_mcnemar_exact_test_by_hand():
    # A right on 6 examples B gets wrong, B right on 1 that A gets wrong, 3 where they agree: p = 2·(C(7,0)+C(7,1))/2⁷
    a = [True] * 6 + [False] + [True, True, False]
    b = [False] * 6 + [True] + [True, True, False]
    assert mcnemar_test(a, b) == {"b_only": 1, "a_only": 6, "p_value": pytest.approx(16 / 128)}
    assert mcnemar_test(b, a) == {"b_only": 6, "a_only": 1, "p_value": pytest.approx(16 / 128)}
    assert mcnemar_test([False] * 5, [True] * 5)["p_value"] == pytest.approx(2 / 32)
    assert mcnemar_test([True, False, True, False], [False, True, False, True])["p_value"] == 1.0  # 2 vs 2: capped at 1
    assert mcnemar_test([True, False], [True, False]) == {"b_only": 0, "a_only": 0, "p_value": 1.0}
    assert mcnemar_test([False] * 2000, [True] * 2000)["p_value"] == 0.0  # 2·2⁻²⁰⁰⁰ underflows, no overflow error
    with pytest.raises(CourseError):
        mcnemar_test([True], [True, False])


def test_intervals_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for successes, n in [(8, 10), (0, 20), (61, 100), (98, 100)]:
        ci = stats.binomtest(successes, n).proportion_ci(method="wilson")
        assert wilson_interval(successes, n) == (pytest.approx(ci.low, abs=1e-3), pytest.approx(ci.high, abs=1e-3))
    for b_only, a_only in [(1, 6), (9, 2), (4, 4), (0, 13)]:
        a = [True] * a_only + [False] * b_only
        b = [False] * a_only + [True] * b_only
        expected = stats.binomtest(b_only, b_only + a_only, 0.5).pvalue
        assert mcnemar_test(a, b)["p_value"] == pytest.approx(expected, rel=1e-9)


def test_unknown_metric_is_an_error_listing_the_valid_ones(intent_test):
    with pytest.raises(CourseError) as err:
        evaluate_model(None, None, intent_test, metrics=["accuracy", "bleu"])
    assert "'bleu'" in str(err.value) and all(name in str(err.value) for name in METRICS)


def test_a_metric_that_fits_no_task_is_an_error(intent_test):
    with pytest.raises(CourseError, match="(?s)does not apply.*accuracy"):
        evaluate_model(None, None, intent_test, metrics=["rouge"])


def test_records_are_grouped_into_tasks_by_kind():
    instruction = bundled.instruction_records(SMOKE)["test"]
    tasks = group_tasks(instruction + [{"text": "plain text"}])
    assert {name: t.kind for name, t in tasks.items()} == {
        "classify": "classification", "extract": "extraction", "reply": "generation", "text": "text"}
    assert tasks["classify"].labels == sorted(set(tasks["classify"].references))  # no labels given: the ones found
    assert json.loads(tasks["extract"].references[0]).keys() == {"intent", "order_id", "product"}


def test_generation_checks_flag_loops_and_invalid_labels():
    checks = generation_checks(["order_status", "I think it is cancel_order", "", "yes yes yes yes yes yes"], labels=INTENT_LABELS)
    assert checks["valid_label"] == 0.25 and checks["names_a_label"] == 0.5
    assert checks["empty"] == 0.25 and checks["looping"] == 0.25
    assert checks["repeated_trigrams"] == pytest.approx(0.75 / 4)


# ---------------------------------------------------------------- on the real model


def test_batched_left_padded_generation_equals_one_at_a_time(base_model, tokenizer):
    """Padding must not change answers (the French-capital prompt has a near tie between "The" and "L'")."""
    prompts = [[{"role": "user", "content": q}] for q in ("Hi!", "Name a colour.", "What is 2 + 2? Answer with a number only, please.")]
    prompts += ["The capital of France is", [{"role": "user", "content": "What is the capital of France?"}]]
    batched = generate(base_model, tokenizer, prompts, max_new_tokens=8, batch_size=5, progress=False)
    single = [generate(base_model, tokenizer, [p], max_new_tokens=8, progress=False)[0] for p in prompts]
    assert batched == single
    assert "Paris" in batched[-2] and "Paris" in batched[-1]


def test_sampling_is_seeded(base_model, tokenizer):
    prompt = [[{"role": "user", "content": "Write one word."}]]
    runs = [generate(base_model, tokenizer, prompt, max_new_tokens=6, temperature=1.0, seed=s, progress=False)[0] for s in (1, 1, 2, 3)]
    assert runs[0] == runs[1]
    assert len(set(runs)) > 1


def test_prefix_tuning_answers_come_from_the_prefix(fresh_model, tokenizer, intent_test):
    """model.generate ignores a prefix-tuning cache (transformers 5.24, peft 0.21); the answers must be the adapted model's."""
    from peft import PrefixTuningConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(fresh_model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8)).eval()
    prompts = [r["messages"][:-1] for r in intent_test[:4]]
    with torch.no_grad():
        tuned = [model(input_ids=torch.tensor([encode_prompt(tokenizer, p)])).logits[0, -1].argmax().item() for p in prompts]
        with model.disable_adapter():
            base = [model(input_ids=torch.tensor([encode_prompt(tokenizer, p)])).logits[0, -1].argmax().item() for p in prompts]
    assert tuned != base  # the random prefix changes the next token
    answers = generate(model, tokenizer, prompts, max_new_tokens=1, progress=False)
    assert answers == [tokenizer.decode([t], skip_special_tokens=True).strip() for t in tuned]
    assert set(classify(model, tokenizer, prompts, INTENT_LABELS, progress=False)) <= set(INTENT_LABELS)


def test_constrained_and_likelihood_classification_give_labels(base_model, tokenizer, intent_test):
    prompts = [r["messages"][:-1] for r in intent_test[:4]]
    for by in ("generation", "likelihood"):
        predictions = classify(base_model, tokenizer, prompts, INTENT_LABELS, by=by, progress=False)
        assert len(predictions) == len(prompts) and set(predictions) <= set(INTENT_LABELS)


def test_label_likelihood_equals_a_full_forward_pass(base_model, tokenizer, intent_test):
    """The cached scoring gives the same log-probabilities as scoring each prompt + label from scratch."""
    prompt, labels = intent_test[0]["messages"][:-1], ["order_status", "talk_to_human"]
    scores = label_log_likelihoods(base_model, tokenizer, [prompt], labels, progress=False)[0]
    prompt_ids = encode_prompt(tokenizer, prompt)
    for label, score in zip(labels, scores):
        answer = tokenizer(label, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logp = base_model(input_ids=torch.tensor([prompt_ids + answer])).logits[0].log_softmax(-1)
        expected = sum(logp[len(prompt_ids) - 1 + j, tok].item() for j, tok in enumerate(answer))
        assert score == pytest.approx(expected, abs=1e-3)


def test_perplexity_is_lower_on_fluent_text(base_model, tokenizer):
    fluent = "The weather today is sunny and warm, so we are going to the park for a picnic with our friends."
    scrambled = " ".join(sorted(fluent.split()))
    per_text = text_nll(base_model, tokenizer, [fluent, scrambled], progress=False)
    assert per_text[0][1] == len(tokenizer(fluent, add_special_tokens=False)["input_ids"])  # every token after the first, + EOS
    assert perplexity(base_model, tokenizer, [fluent], progress=False) < perplexity(base_model, tokenizer, [scrambled], progress=False)


def test_compare_uses_the_disabled_adapter_as_base(random_adapter, base_model, tokenizer, intent_test):
    trainable = [n for n, p in random_adapter.named_parameters() if p.requires_grad]
    result = compare(random_adapter, tokenizer, intent_test, metrics=["accuracy", "f1"], progress=False)
    assert [n for n, p in random_adapter.named_parameters() if p.requires_grad] == trainable
    alone = evaluate_model(base_model, tokenizer, intent_test, metrics=["accuracy", "f1"], progress=False)
    assert result.base.tasks["classification"].predictions == alone.tasks["classification"].predictions
    assert result.tuned.tasks["classification"].predictions != alone.tasks["classification"].predictions
    assert [r["metric"] for r in result.rows()] == ["classification/accuracy", "classification/f1"]
    counts = result.counts()["classification"]
    assert sum(counts.values()) == len(intent_test)
    shown = result.examples(n=1)
    assert {e["change"] for e in shown} <= {"worse", "better", "same"} and all(e["reference"] in INTENT_LABELS for e in shown)


def test_compare_needs_an_adapter_or_a_base(base_model, tokenizer, intent_test):
    with pytest.raises(CourseError, match="base_model"):
        compare(base_model, tokenizer, intent_test)


def test_report_is_json_and_markdown_and_never_replaces_a_user_file(base_model, tokenizer, intent_test, tmp_path):
    result = evaluate_model(base_model, tokenizer, intent_test[:3], metrics=["accuracy"], progress=False, name="embedded")
    json_path, md_path = write_report(result, tmp_path)
    saved = json.loads(json_path.read_text())
    assert saved["ftcourse_report"] == "evaluation" and "accuracy" in saved["tasks"]["classification"]["metrics"]
    assert md_path.read_text().startswith("<!-- ftcourse_report -->") and "| classification/accuracy |" in md_path.read_text()
    write_report(result, tmp_path)  # our own report: replaced
    (tmp_path / "mine.md").write_text("my notes")
    with pytest.raises(CourseError, match="not a report written by ftcourse"):
        write_report(result, tmp_path, name="mine")
    assert (tmp_path / "mine.md").read_text() == "my notes" and not (tmp_path / "mine.json").exists()


def test_macro_f1_counts_a_label_only_the_model_predicted():
    """scikit-learn's macro average: labels in references ∪ predictions; 'b' (predicted, never true) counts with F1 0."""
    result = classification_metrics(["a", "b", "b"], ["a", "a", "a"], ["a", "b", "c"])
    assert result["per_label"]["a"]["f1"] == pytest.approx(0.5) and result["f1"] == pytest.approx(0.25)
