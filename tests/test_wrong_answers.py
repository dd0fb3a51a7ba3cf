"""Every exercise task's tempting wrong answers fail its check with a hint that says why (issue 13).

Each case plants one wrong answer a learner is likely to write — the course's helper called instead of the code
the task asks for, another formula, an off-by-one mask, training or keeping evaluation data, the wrong label set,
a value that only fits the printed example — and asserts the check raises CheckFailed naming the mistake.
The checks are called directly (no notebook runs); the right answers pass in the same tests. A check of the grading
protocol (exercises 01 and 03) is run on its practice case and on the grader's hidden case: both must reject the answer.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from ftcourse.configs import LoraSettings, TrainingSettings
from ftcourse.course import checks
from ftcourse.course.bundled import INTENT_LABELS, domain_texts, intent_records, raw_path
from ftcourse.course.checks import CheckerError, CheckFailed, core, ex05, ex06
from ftcourse.data import classification_instruction, read_dataset, validate_record
from ftcourse.generation import perplexity
from ftcourse.metrics import classification_metrics, normalize_text
from ftcourse.profiles import get_profile
from ftcourse.runs import RUN_RECORD, RunResult, run_fingerprint
from ftcourse.tokenization import IGNORE_INDEX, prompt_ids, tokenize_messages
from ftcourse.tokenization import collate as course_collate
from ftcourse.tools.grading import grading_case
from ftcourse.train import settings_from_profile
from tests.saved_runs import write_run_record


def _fails(check, *args, hint: str) -> str:
    with pytest.raises(CheckFailed) as info:
        check.verify(*args)
    assert hint in str(info.value), str(info.value)
    if isinstance(check, checks.GradedCheck):  # the grader's case rejects it as well, with the same hint
        with pytest.raises(CheckFailed) as hidden:
            check.verify_case(grading_case(check), *args, hidden=True)
        assert hint in str(hidden.value), str(hidden.value)
    return str(info.value)


def _passes(check, *args) -> str:
    """A right answer passes the practice case and the grader's case; the practice message."""
    assert check.verify_case(grading_case(check), *args, hidden=True)
    return check.verify(*args)


# ---------------------------------------------------------------- the two kinds of failure


def test_a_wrong_answer_is_a_hint_and_a_broken_checker_is_a_checker_fault(capsys):
    _fails(checks.check_ex03_task1, lambda p, r: 0.5, hint="Hint:")
    _fails(checks.check_ex03_task1, lambda p, r: 1 / 0, hint="`macro_f1` raised ZeroDivisionError")  # the learner's bug
    _fails(checks.check_ex03_task1, hint="wrong arguments")  # the check called without the answer

    @checks.self_check
    def check_ex99_task1(value) -> str:
        return {}["missing"]  # a bug in the checker itself

    with pytest.raises(CheckerError, match="the checker itself failed .*KeyError.*not about|the checker itself failed"):
        check_ex99_task1.verify(1)
    check_ex99_task1(1)
    out = capsys.readouterr().out
    assert out.startswith("⚠ Exercise 99, task 1: the checker itself failed (KeyError") and "tell your instructor" in out
    assert not issubclass(CheckerError, AssertionError)  # the grader reports it as a fault, not as a wrong answer


def test_helper_detection_sees_direct_aliased_and_attribute_calls():
    import ftcourse.tokenization as data_module
    from ftcourse.tokenization import tokenize_messages as tm

    def direct(tokenizer, messages):
        return tokenize_messages(tokenizer, messages)

    def aliased(tokenizer, messages):
        return tm(tokenizer, messages)

    def attribute(tokenizer, messages):
        return data_module.tokenize_messages(tokenizer, messages)

    def nested(tokenizer, messages):
        return (lambda: tm(tokenizer, messages))()

    helpers = {"tokenize_messages": tokenize_messages}
    assert all(checks.uses_helper(f, helpers) == "tokenize_messages" for f in (direct, aliased, attribute, nested))
    assert checks.uses_helper(_completion_only, helpers) is None


def test_the_graders_helper_detection_reads_the_submitted_source():
    helpers = {"split_dataset": "ftcourse.data.split_dataset", "collate": "ftcourse.tokenization.collate"}
    setup = "from ftcourse.data import read_dataset, split_dataset\nimport ftcourse.tokenization as tok\n"
    cases = {
        "def f(r, t, s):\n    return split_dataset(r, test=t, seed=s)": "split_dataset",
        "from ftcourse.data import split_dataset as sd\ndef f(r, t, s):\n    return sd(r)": "split_dataset",
        "def f(r, t, s):\n    return getattr(__import__('ftcourse.data'), 'split_dataset')(r)": "split_dataset",
        "def helper(r):\n    return split_dataset(r)\ndef f(r, t, s):\n    return helper(r)": "split_dataset",  # through the learner's own function
        "def f(r, t, s):\n    return tok.collate(r, 0)": "collate",
        "g = lambda r: split_dataset(r)\nf = g": "split_dataset",
        "def f(r, t, s):\n    split = sorted(r)\n    return split, []": None,
        "def f(r, t, s):\n    return read_dataset(r)": None,
    }
    for cell, want in cases.items():
        assert core.source_helper((setup, "%pip list", cell), "f", helpers) == want, cell
    own = "def collate(examples, pad_id):\n    return collate(examples[1:], pad_id) if len(examples) > 1 else examples"  # its own name
    assert core.source_helper((own,), "collate", helpers) is None
    assert core.source_helper(("x = 1",), "f", helpers) is None  # not defined in the source: nothing to reject


# ---------------------------------------------------------------- ex01


def _data():
    return read_dataset(raw_path("support_intents.jsonl"), labels=INTENT_LABELS)


def test_ex01_task1_counts_of_one_split_or_a_changed_count_fail():
    data = _data()
    assert "1000 records" in _passes(checks.check_ex01_task1, data, dict(Counter(data.labels())))
    from ftcourse.course.bundled import intent_splits

    train = intent_splits()["train"]
    _fails(checks.check_ex01_task1, train, dict(Counter(train.labels())), hint="keep every record")
    _fails(checks.check_ex01_task1, data, {**Counter(data.labels()), "billing_issue": 0}, hint="count the label of every record")


def _clean_records(records):
    kept, seen = [], set()
    for line, record in enumerate(records, start=1):
        if validate_record(record, "classification", line, INTENT_LABELS):
            continue
        if normalize_text(record["text"]) not in seen:
            seen.add(normalize_text(record["text"]))
            kept.append(record)
    return kept


def test_ex01_task2_wrong_cleaning_rules_and_a_hard_coded_answer_fail():
    assert "4 of 8 records of a second messy set" in _passes(checks.check_ex01_task2, _clean_records)

    def exact_duplicates_only(records):
        kept = []
        for line, r in enumerate(records, start=1):
            if not validate_record(r, "classification", line, INTENT_LABELS) and r["text"] not in [k["text"] for k in kept]:
                kept.append(r)
        return kept

    def no_validation(records):
        seen, kept = set(), []
        for r in records:
            key = normalize_text(r["text"]) if isinstance(r.get("text"), str) else repr(r.get("text"))
            if key not in seen:
                seen.add(key)
                kept.append(r)
        return kept

    def keep_last(records):
        return list(reversed(_clean_records(list(reversed(records)))))

    def hard_coded(records):  # the printed answer of the given records, whatever the input
        return [checks.EX01_MESSY_RECORDS[i] for i in (0, 2, 5, 8)]

    _fails(checks.check_ex01_task2, exact_duplicates_only, hint="normalize_text")
    _fails(checks.check_ex01_task2, no_validation, hint="validate_record")
    _fails(checks.check_ex01_task2, keep_last, hint="")
    _fails(checks.check_ex01_task2, hard_coded, hint="copied from the printout")


def _stratified(records, test, seed, *, cut=round, shuffle=True, rng=None):
    rng = rng or random.Random(seed)
    groups = {}
    for record in records:
        groups.setdefault(record["label"], []).append(record)
    train, held = [], []
    for label in sorted(groups):
        group = groups[label][:]
        if shuffle:
            rng.shuffle(group)
        n = cut(len(group) * test)
        held, train = held + group[:n], train + group[n:]
    return train, held


def test_ex01_task3_another_seed_or_fractions_fail():
    from ftcourse.course.bundled import intent_splits
    from ftcourse.data import split_dataset

    _fails(checks.check_ex01_task3, split_dataset(_data(), validation=0.1, test=0.1, seed=1), hint="seed=42")
    _fails(checks.check_ex01_task3, split_dataset(_data(), validation=0.2, test=0.1, seed=42), hint="validation=0.1")
    assert "practice unbalanced dataset" in _passes(checks.check_ex01_task3, intent_splits(), _stratified)


def test_ex01_task3_a_split_that_is_not_stratified_rounded_seeded_or_disjoint_fails():
    from ftcourse.course.bundled import intent_splits
    from ftcourse.data import CourseDataset, split_dataset

    splits = intent_splits()

    def helper(records, test, seed):
        parts = split_dataset(CourseDataset(records, "classification", "x"), validation=0.0, test=test, seed=seed)
        return parts["train"].records, parts["test"].records

    def shuffled_together(records, test, seed):
        records = records[:]
        random.Random(seed).shuffle(records)
        n = round(len(records) * test)
        return records[n:], records[:n]

    def overlapping(records, test, seed):
        return records, _stratified(records, test, seed)[1]

    _fails(checks.check_ex01_task3, splits, helper, hint="calls `split_dataset`")
    _fails(checks.check_ex01_task3, splits, shuffled_together, hint="each label's records separately")
    _fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, cut=int), hint="int() truncates")
    _fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, rng=random.Random()), hint="seeded with `seed`")
    _fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, shuffle=False), hint="the seed changes nothing")
    _fails(checks.check_ex01_task3, splits, overlapping, hint="exactly one part")
    _fails(checks.check_ex01_task3, splits, lambda r, t, s: r, hint="(train, test) lists")


def _completion_only(tokenizer, messages):
    prompt = prompt_ids(tokenizer, messages[:-1])
    answer = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


def test_ex01_task4_the_helper_off_by_one_masks_and_a_missing_eos_fail(tokenizer):
    assert "prompt masked" in _passes(checks.check_ex01_task4, _completion_only, tokenizer)

    def helper(tokenizer, messages):
        return tokenize_messages(tokenizer, messages)

    def shifted(tokenizer, messages):  # labels shifted by hand: the model shifts them again
        ex = _completion_only(tokenizer, messages)
        return {"input_ids": ex["input_ids"], "labels": ex["labels"][1:] + [IGNORE_INDEX]}

    def last_prompt_token_trained(tokenizer, messages):
        ex = _completion_only(tokenizer, messages)
        first = next(i for i, v in enumerate(ex["labels"]) if v != IGNORE_INDEX)
        return {"input_ids": ex["input_ids"], "labels": ex["labels"][: first - 1] + ex["input_ids"][first - 1 :]}

    def no_eos(tokenizer, messages):
        ex = _completion_only(tokenizer, messages)
        return {"input_ids": ex["input_ids"][:-1], "labels": ex["labels"][:-1]}

    def nothing_trained(tokenizer, messages):
        ex = _completion_only(tokenizer, messages)
        return {"input_ids": ex["input_ids"], "labels": [IGNORE_INDEX] * len(ex["labels"])}

    _fails(checks.check_ex01_task4, helper, tokenizer, hint="calls `tokenize_messages`")
    _fails(checks.check_ex01_task4, shifted, tokenizer, hint="do not shift them yourself")
    _fails(checks.check_ex01_task4, last_prompt_token_trained, tokenizer, hint="off by one")
    _fails(checks.check_ex01_task4, no_eos, tokenizer, hint="EOS")
    _fails(checks.check_ex01_task4, nothing_trained, tokenizer, hint="every label is -100")


def test_ex01_task5_a_truncating_or_wasteful_length_fails(tokenizer):
    from ftcourse.course.bundled import intent_splits
    from ftcourse.data import to_messages

    longest = max(len(tokenize_messages(tokenizer, to_messages(r, "classification", INTENT_LABELS))["input_ids"]) for r in intent_splits()["train"].records)
    right = -(-longest // 32) * 32
    assert f"max_seq_length={right}" in _passes(checks.check_ex01_task5, tokenizer, right)
    _fails(checks.check_ex01_task5, tokenizer, right - 32, hint="take the longest")
    _fails(checks.check_ex01_task5, tokenizer, right + 32, hint="padding costs compute")
    _fails(checks.check_ex01_task5, tokenizer, float(right), hint="compute an int")
    _fails(checks.check_ex01_task5, tokenizer, longest + 1 if (longest + 1) % 32 else longest + 2, hint="multiple of 32")


def _collate(examples, pad_id):
    width = max(len(e["input_ids"]) for e in examples)
    rows = [(list(e["input_ids"]), list(e["labels"])) for e in examples]
    return {"input_ids": [ids + [pad_id] * (width - len(ids)) for ids, _ in rows],
            "attention_mask": [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows],
            "labels": [lbl + [IGNORE_INDEX] * (width - len(lbl)) for _, lbl in rows]}


def test_ex01_task6_the_pad_eq_eos_bug_and_its_cousins_fail(tokenizer):
    assert "EOS stays trained" in _passes(checks.check_ex01_task6, _collate, tokenizer)

    def labels_padded_with_pad(examples, pad_id):
        batch = _collate(examples, pad_id)
        batch["labels"] = [[pad_id if m == 0 else v for v, m in zip(row, mask)] for row, mask in zip(batch["labels"], batch["attention_mask"])]
        return batch

    def mask_from_ids(examples, pad_id):
        batch = _collate(examples, pad_id)
        batch["attention_mask"] = [[int(t != pad_id) for t in row] for row in batch["input_ids"]]
        return batch

    def left_padded(examples, pad_id):
        batch = _collate(examples, pad_id)
        batch["input_ids"] = [[pad_id] * row.count(pad_id) + [t for t in row if t != pad_id] for row in batch["input_ids"]]
        return batch

    def calls_the_course(examples, pad_id):
        return course_collate(examples, pad_id, pad_to_multiple_of=1)

    _fails(checks.check_ex01_task6, checks.ex01_buggy_collate, tokenizer, hint="never taught to stop")
    _fails(checks.check_ex01_task6, labels_padded_with_pad, tokenizer, hint="emit padding")
    _fails(checks.check_ex01_task6, mask_from_ids, tokenizer, hint="hides the real EOS")
    _fails(checks.check_ex01_task6, left_padded, tokenizer, hint="pad on the right")
    _fails(checks.check_ex01_task6, calls_the_course, tokenizer, hint="calls `collate`")


# ---------------------------------------------------------------- ex02


def _lora_count(model, r, target_modules):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in target_modules)


def test_ex02_task2_peft_counting_and_wrong_formulas_fail(base_model):
    from peft import get_peft_model

    from ftcourse.models import count_parameters
    from ftcourse.peft_methods import build_peft_config

    assert "3 practice configurations" in _passes(checks.check_ex02_task2, _lora_count, base_model)

    def with_peft(model, r, target_modules):
        adapted = get_peft_model(model, build_peft_config("lora", model, LoraSettings(r=r, target_modules=target_modules)))
        return sum(p.numel() for p in adapted.parameters() if p.requires_grad)

    def square_layers(model, r, target_modules):  # assumes d_out = d_in = hidden size (k_proj/v_proj are smaller here: GQA)
        return sum(2 * r * m.in_features for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in target_modules)

    def one_block(model, r, target_modules):
        return _lora_count(model, r, target_modules) // model.config.num_hidden_layers

    def r_squared(model, r, target_modules):
        return _lora_count(model, r * r, target_modules)

    def with_count(model, r, target_modules):
        return count_parameters(get_peft_model(model, build_peft_config("lora", model, LoraSettings(r=r, target_modules=target_modules))))["trainable"]

    _fails(checks.check_ex02_task2, with_peft, base_model, hint="calls `get_peft_model`")
    _fails(checks.check_ex02_task2, with_count, base_model, hint="calls `count_parameters`")
    for wrong in (square_layers, one_block, r_squared):
        _fails(checks.check_ex02_task2, wrong, base_model, hint="r * (in_features + out_features)")


def test_ex02_task3_over_budget_too_small_or_other_targets_fail(base_model):
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    _fails(checks.check_ex02_task3, LoraSettings(r=64, target_modules=attention), base_model, hint="lower r")
    _fails(checks.check_ex02_task3, LoraSettings(r=7, target_modules=attention), base_model, hint="largest r")
    _fails(checks.check_ex02_task3, LoraSettings(r=8, target_modules=["q_proj", "v_proj"]), base_model, hint="all four attention projections")


def _fixed():
    return ({"target_modules", "learning_rate", "max_seq_length"}, LoraSettings(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
            settings_from_profile(get_profile("smoke"), max_seq_length=160))


def test_ex02_task6_each_fault_left_in_or_misdiagnosed_fails(base_model, tokenizer):
    P = get_profile("smoke")
    causes, lora, training = _fixed()
    assert "all three faults" in _passes(checks.check_ex02_task6, causes, lora, training, base_model, tokenizer, P)
    _fails(checks.check_ex02_task6, {"learning_rate"}, lora, training, base_model, tokenizer, P, hint="did not name")
    _fails(checks.check_ex02_task6, causes | {"r"}, lora, training, base_model, tokenizer, P, hint="'r' is fine")
    _fails(checks.check_ex02_task6, "learning rate", lora, training, base_model, tokenizer, P, hint="EX02_SETTINGS")
    _fails(checks.check_ex02_task6, causes, lora.replace(target_modules=["lm_head"]), training, base_model, tokenizer, P, hint="lm_head is the output layer")
    _fails(checks.check_ex02_task6, causes, lora.replace(r=64), training, base_model, tokenizer, P, hint="keep r=8")
    _fails(checks.check_ex02_task6, causes, lora, training.replace(learning_rate=2e-5), base_model, tokenizer, P, hint="100x higher")
    _fails(checks.check_ex02_task6, causes, lora, training.replace(max_seq_length=32), base_model, tokenizer, P, hint="all labels are -100")


def _tiny(tokenizer):
    from tests.tiny import tiny_model

    return tiny_model("llama", vocab_size=len(tokenizer))


def _adam_mib(model, bytes_per_parameter=8, trainable_only=True, mib=2**20):
    return bytes_per_parameter * sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only) / mib


def test_ex02_task1_the_classmates_model_a_frozen_adapter_and_wrong_optimizer_memory_fail(tokenizer):
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    def fixed():
        model = checks.ex02_classmate_lora(_tiny(tokenizer))
        for name, p in model.named_parameters():
            p.requires_grad = "lora_" in name
        return model

    assert "AdamW's states" in _passes(checks.check_ex02_task1, fixed(), _adam_mib)
    _fails(checks.check_ex02_task1, checks.ex02_classmate_lora(_tiny(tokenizer)), _adam_mib, hint="base-model tensors still train")
    _fails(checks.check_ex02_task1, fixed().requires_grad_(False), _adam_mib, hint="keep every lora_A and lora_B")
    wrong = get_peft_model(_tiny(tokenizer), build_peft_config("lora", _tiny(tokenizer), LoraSettings(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])))
    _fails(checks.check_ex02_task1, wrong, _adam_mib, hint="r=8, lora_alpha=16")
    _fails(checks.check_ex02_task1, _tiny(tokenizer), _adam_mib, hint="not a PeftModel")
    _fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, trainable_only=False), hint="only the trainable parameters")
    _fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, bytes_per_parameter=4), hint="two states per trainable parameter")
    _fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, bytes_per_parameter=16), hint="weights and gradients are not optimizer states")
    _fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, mib=1e6), hint="2**20")


def test_ex02_task5_get_peft_model_the_trained_object_a_fixed_folder_and_the_helper_fail(tmp_path, tokenizer):
    from peft import LoraConfig, PeftModel, get_peft_model

    from ftcourse.peft_methods import build_peft_config
    from ftcourse.runs import load_run

    settings = LoraSettings(r=4, target_modules=["q_proj", "v_proj"])
    trained = get_peft_model(_tiny(tokenizer), build_peft_config("lora", _tiny(tokenizer), settings))
    for name, p in trained.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    trained.save_pretrained(tmp_path)
    result = RunResult("run", "lora", trained, None, tmp_path, {}, [])
    assert "reloaded exactly" in checks.check_ex02_task5.verify(lambda run_dir: PeftModel.from_pretrained(_tiny(tokenizer), run_dir), result, tokenizer)

    def classmate(run_dir):  # ex02_classmate_reload on a tiny base: get_peft_model builds a new adapter from the saved config
        return get_peft_model(_tiny(tokenizer), LoraConfig.from_pretrained(str(run_dir)))

    _fails(checks.check_ex02_task5, classmate, result, tokenizer, hint="PeftModel.from_pretrained(base_model, run_dir)")
    _fails(checks.check_ex02_task5, lambda run_dir: trained, result, tokenizer, hint="not the trained object itself")
    _fails(checks.check_ex02_task5, lambda run_dir: PeftModel.from_pretrained(_tiny(tokenizer), tmp_path), result, tokenizer, hint="passed as `run_dir`")
    _fails(checks.check_ex02_task5, lambda run_dir: load_run(run_dir).model, result, tokenizer, hint="calls `load_run`")


# ---------------------------------------------------------------- ex03


def _macro_f1(predictions, references):
    labels = set(references) | {p for p in predictions if p is not None}
    f1 = [2 * sum(p == lbl == r for p, r in zip(predictions, references))
          / max(1, sum(p == lbl for p in predictions) + sum(r == lbl for r in references)) for lbl in labels]
    return sum(f1) / len(f1)


def test_ex03_task1_the_helper_the_reference_only_label_set_accuracy_and_none_as_a_label_fail():
    assert "scikit-learn" in _passes(checks.check_ex03_task1, _macro_f1)

    def helper(predictions, references):
        return classification_metrics(predictions, references, sorted(set(references)))["f1"]

    def references_only(predictions, references):
        labels = sorted(set(references))
        return sum(2 * sum(p == lbl == r for p, r in zip(predictions, references))
                   / max(1, sum(p == lbl for p in predictions) + sum(r == lbl for r in references)) for lbl in labels) / len(labels)

    def accuracy(predictions, references):
        return sum(p == r for p, r in zip(predictions, references)) / len(references)

    def none_is_a_label(predictions, references):
        return _macro_f1(["<none>" if p is None else p for p in predictions], references) if None in predictions else _macro_f1(predictions, references)

    _fails(checks.check_ex03_task1, helper, hint="calls `classification_metrics`")
    _fails(checks.check_ex03_task1, references_only, hint="labels of the references only")
    _fails(checks.check_ex03_task1, accuracy, hint="that is accuracy")
    _fails(checks.check_ex03_task1, none_is_a_label, hint="None prediction is wrong and is not a label")


def test_ex03_task1_the_reference_definition_is_scikit_learns():
    # f1_score(y_true, y_pred, average="macro") computed by hand for these cases, with scikit-learn's label set
    assert checks.macro_f1_reference(["x", "x", "z", "y"], ["x", "y", "x", "y"]) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert checks.macro_f1_reference(["a", "b", "b"], ["a", "a", "a"]) == pytest.approx(0.25)
    assert classification_metrics(["a", "b", "b"], ["a", "a", "a"], ["a", "b"])["f1"] == pytest.approx(0.25)  # the library uses the same definition


def _confusions(predictions, references, k=3):
    counts = Counter((r, "(none)" if p is None else p) for p, r in zip(predictions, references) if p != r)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def test_ex03_task2_free_text_missing_or_guessed_predictions_and_wrong_metrics_fail(base_model, tokenizer):
    from ftcourse.generation import classify

    P = get_profile("smoke")
    test = intent_records(P)["test"]
    probes = sorted({0, 1, len(test) // 2, len(test) - 1})
    predicted = dict(zip(probes, classify(base_model, tokenizer, [test[i]["messages"][:-1] for i in probes], INTENT_LABELS, progress=False)))
    # the other examples are not re-classified by the check: any label stands in for the model's
    predictions = [predicted.get(i, INTENT_LABELS[i % len(INTENT_LABELS)]) for i in range(len(test))]
    references = [r["label"] for r in test]

    def metrics_of(preds, refs=references):
        return {"accuracy": sum(p == r for p, r in zip(preds, refs)) / len(refs), "macro_f1": checks.macro_f1_reference(preds, refs)}

    args = (base_model, tokenizer)
    assert "re-checked on 4" in checks.check_ex03_task2.verify(*args, predictions, metrics_of(predictions), P)
    free_text = [f"The intent is {p}." for p in predictions]
    _fails(checks.check_ex03_task2, *args, free_text, metrics_of(free_text), P, hint="constrain generation to the label set")
    _fails(checks.check_ex03_task2, *args, predictions[:-1], {"accuracy": 0.5, "macro_f1": 0.5}, P, hint="one label per example")
    other = next(label for label in INTENT_LABELS if label != predictions[-1])
    guessed = predictions[:-1] + [other]  # the last example is not in the printout of the first few
    _fails(checks.check_ex03_task2, *args, guessed, metrics_of(guessed), P, hint="predict every example")
    validation_refs = [r["label"] for r in intent_records(P)["validation"]]
    _fails(checks.check_ex03_task2, *args, predictions, metrics_of(predictions, validation_refs), P, hint="references in test order")
    _fails(checks.check_ex03_task2, *args, predictions, {**metrics_of(predictions), "macro_f1": metrics_of(predictions)["accuracy"] + 0.01}, P,
           hint="use your task-1 macro_f1")


def test_ex03_task3_unordered_ties_swapped_pairs_and_counted_hits_fail():
    assert "practice cases" in _passes(checks.check_ex03_task3, _confusions)
    _fails(checks.check_ex03_task3, lambda p, r, k=3: Counter((t, q) for q, t in zip(p, r) if q != t).most_common(k), hint="'(none)'")
    _fails(checks.check_ex03_task3, lambda p, r, k=3: [((b, a), n) for (a, b), n in _confusions(p, r, k)], hint="(true, predicted)")
    _fails(checks.check_ex03_task3, lambda p, r, k=3: sorted(Counter((t, "(none)" if q is None else q) for q, t in zip(p, r)).items(),
                                                             key=lambda i: (-i[1], i[0]))[:k], hint="where they differ")


def _my_ppl(model, tokenizer, text):
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    with torch.no_grad():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def test_ex03_task4_the_helper_a_double_shift_and_no_exp_fail(base_model, tokenizer):
    assert "within 2%" in _passes(checks.check_ex03_task4, _my_ppl, base_model, tokenizer)

    def helper(model, tokenizer, text):
        return perplexity(model, tokenizer, [text])

    def double_shift(model, tokenizer, text):
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
        with torch.no_grad():
            return math.exp(model(input_ids=ids[:, :-1], labels=ids[:, 1:]).loss.item())

    def the_loss(model, tokenizer, text):
        return math.log(_my_ppl(model, tokenizer, text))

    _fails(checks.check_ex03_task4, helper, base_model, tokenizer, hint="calls `perplexity`")
    _fails(checks.check_ex03_task4, double_shift, base_model, tokenizer, hint="double shift")
    _fails(checks.check_ex03_task4, the_loss, base_model, tokenizer, hint="exp(loss)")


def _bootstrap(correct, n_boot=2000, seed=0):
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(correct, k=len(correct))) / len(correct) for _ in range(n_boot))
    return means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]


def test_ex03_task5_wald_a_fixed_size_resample_no_seed_and_wrong_percentiles_fail():
    assert "halves the width" in _passes(checks.check_ex03_task5, _bootstrap)

    def wald(correct, n_boot=2000, seed=0):
        p, n = sum(correct) / len(correct), len(correct)
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        return p - half, p + half

    def wald_clipped(correct, n_boot=2000, seed=0):
        low, high = wald(correct)
        return max(0.0, low), min(1.0, high)

    def fixed_size(correct, n_boot=2000, seed=0):
        rng = random.Random(seed)
        means = sorted(sum(rng.choices(correct, k=100)) / 100 for _ in range(n_boot))
        return means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]

    def five_to_95(correct, n_boot=2000, seed=0):
        rng = random.Random(seed)
        means = sorted(sum(rng.choices(correct, k=len(correct))) / len(correct) for _ in range(n_boot))
        return means[int(0.05 * n_boot)], means[int(0.95 * n_boot) - 1]

    _fails(checks.check_ex03_task5, wald, hint="Wald")
    _fails(checks.check_ex03_task5, wald_clipped, hint="does not resample")
    _fails(checks.check_ex03_task5, fixed_size, hint="same size as the data")
    _fails(checks.check_ex03_task5, five_to_95, hint="not 5/95")
    _fails(checks.check_ex03_task5, lambda c, n_boot=2000, seed=0: _bootstrap(c, n_boot, random.random()), hint="seeded")


def _compare(correct_a, correct_b, n_boot=2000, seed=0):
    low, high = checks.paired_difference_ci(correct_a, correct_b, n_boot, seed)
    return ("B" if low > 0 else "A" if high < 0 else "no clear difference"), (low, high)


def test_ex03_task6_unpaired_intervals_and_raw_accuracies_fail():
    assert "separate intervals overlap" in _passes(checks.check_ex03_task6, _compare)

    def overlapping_intervals(correct_a, correct_b, n_boot=2000, seed=0):
        (la, ha), (lb, hb) = _bootstrap(correct_a, n_boot, seed), _bootstrap(correct_b, n_boot, seed)
        verdict = "B" if lb > ha else "A" if la > hb else "no clear difference"
        return verdict, checks.paired_difference_ci(correct_a, correct_b, n_boot, seed)

    def higher_accuracy(correct_a, correct_b, n_boot=2000, seed=0):
        a, b = sum(correct_a), sum(correct_b)
        return ("B" if b > a else "A" if a > b else "no clear difference"), checks.paired_difference_ci(correct_a, correct_b, n_boot, seed)

    def unpaired_difference(correct_a, correct_b, n_boot=2000, seed=0):
        rng, n = random.Random(seed), len(correct_a)
        diffs = sorted(sum(rng.choices(correct_b, k=n)) / n - sum(rng.choices(correct_a, k=n)) / n for _ in range(n_boot))
        low, high = diffs[int(0.025 * n_boot)], diffs[int(0.975 * n_boot) - 1]
        return ("B" if low > 0 else "A" if high < 0 else "no clear difference"), (low, high)

    _fails(checks.check_ex03_task6, overlapping_intervals, hint="pair by pair")
    _fails(checks.check_ex03_task6, higher_accuracy, hint="not yet a better model")
    _fails(checks.check_ex03_task6, unpaired_difference, hint="pair by pair")


# ---------------------------------------------------------------- ex04


def test_ex04_task1_bits_as_bytes_and_decimal_megabytes_fail():
    assert "hidden cases" in checks.check_ex04_task1.verify(lambda n, bits: n * bits / 8 / 2**20)
    _fails(checks.check_ex04_task1, lambda n, bits: n * bits / 2**20, hint="bits / 8")
    _fails(checks.check_ex04_task1, lambda n, bits: n * bits / 8 / 1e6, hint="2**20")


def test_ex04_task3_other_measures_of_the_gap_fail(base_model, tokenizer):
    right = core.probe_logits(base_model, tokenizer, checks.EX04_TEXT)
    noisy = right + 0.1 * torch.randn(right.shape, generator=torch.Generator().manual_seed(0))

    class Shifted(torch.nn.Module):  # a stand-in "quantized" model: the real model's logits plus fixed noise
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **batch):
            return type("Out", (), {"logits": noisy})()

    q = Shifted()
    gap, agree = float((right - noisy).abs().max()), float((right.argmax(-1) == noisy.argmax(-1)).float().mean())
    assert "agrees" in checks.check_ex04_task3.verify(gap, agree, base_model, q, tokenizer)
    _fails(checks.check_ex04_task3, float((right - noisy).abs().mean()), agree, base_model, q, tokenizer, hint=".abs().max()")
    _fails(checks.check_ex04_task3, gap, agree - 0.5, base_model, q, tokenizer, hint="argmax(-1)")


def _predict_4bit(model, quantize_head=False, other_bytes=None, everything=False):
    head = model.get_output_embeddings().weight
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear) and (quantize_head or m.weight is not head)}
    return sum(p.numel() / 2 if everything or id(p) in linear else p.numel() * (other_bytes or p.element_size()) for p in model.parameters())


def test_ex04_task2_quantized_embeddings_a_quantized_head_16_bit_rest_loading_and_a_copied_number_fail(base_model):
    from ftcourse.models import load_model

    qmodel = load_model("embedded", quantization="4bit")
    assert "as predicted" in checks.check_ex04_task2.verify(qmodel, base_model, _predict_4bit)
    _fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, everything=True), hint="embeddings and norms keep their dtype")
    _fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, quantize_head=True), hint="leaves the output layer")
    _fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, other_bytes=2), hint="not 2 bytes")
    _fails(checks.check_ex04_task2, qmodel, base_model, lambda m: load_model("embedded", quantization="4bit").get_memory_footprint(), hint="calls `load_model`")
    printed = qmodel.get_memory_footprint()
    _fails(checks.check_ex04_task2, qmodel, base_model, lambda m: printed, hint="hidden model with its own output layer")
    _fails(checks.check_ex04_task2, base_model, base_model, _predict_4bit, hint="no 4-bit linear layers")


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tokenizer):
    """A QLoRA RunResult on a tiny Llama loaded in 4-bit NF4: its adapter saved with trained (non-zero) lora_B."""
    from peft import get_peft_model

    from ftcourse.models import load_model
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import save_tiny

    folder = tmp_path_factory.mktemp("qlora")
    base = load_model(str(save_tiny("llama", folder / "base", tokenizer, vocab_size=len(tokenizer))), quantization="4bit")
    settings = LoraSettings(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, build_peft_config("lora", base, settings))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    model.save_pretrained(folder / "run")
    write_run_record(folder / "run", "qlora")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult("run", "qlora", model, None, folder / "run", {"trainable_parameters": trainable}, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])


def _measure(model, adapter_dir, adapter_bytes=None, base_bytes=None, trainable=None):
    """The right measure(), or one with a planted way of counting: each planted function gets (named parameters, saved tensors, folder)."""
    from safetensors.torch import load_file

    params, saved = dict(model.named_parameters()), load_file(Path(adapter_dir) / "adapter_model.safetensors")
    right = {"trainable_parameters": sum(p.numel() for p in params.values() if p.requires_grad),
             "adapter_file": sum(t.numel() * t.element_size() for t in saved.values()),
             "base_memory": sum(p.numel() * p.element_size() for n, p in params.items() if "lora_" not in n)}
    planted = {"trainable_parameters": trainable, "adapter_file": adapter_bytes, "base_memory": base_bytes}
    return {k: planted[k](params, saved, Path(adapter_dir)) if planted[k] else v for k, v in right.items()}


def _planted(**how):
    return lambda model, adapter_dir: _measure(model, adapter_dir, **how)


_EX04_RIGHT = {"trainable_parameters": "same", "adapter_file": "same", "base_memory": "smaller"}


def test_ex04_task4_each_wrong_prediction_fails_with_a_reason_not_the_answer(qlora_run):
    assert "all three predictions" in checks.check_ex04_task4.verify(qlora_run, _EX04_RIGHT, _measure)
    for key, wrong, hint in (("trainable_parameters", "smaller", "Ask whether storing the frozen weight W in 4 bits"),
                             ("adapter_file", "smaller", "the dtype of the matmuls, not of the LoRA weights"),
                             ("base_memory", "same", "packs the linear weights of the blocks two per byte")):
        message = _fails(checks.check_ex04_task4, qlora_run, {**_EX04_RIGHT, key: wrong}, _measure, hint=hint)
        assert f"'{_EX04_RIGHT[key]}'" not in message  # the reason, never the answer to pick
    _fails(checks.check_ex04_task4, qlora_run, {**_EX04_RIGHT, "base_memory": "much smaller"}, _measure, hint="answer with one of")
    _fails(checks.check_ex04_task4, qlora_run, {"trainable_parameters": "same"}, _measure, hint="one answer per question")
    write_run_record(qlora_run.run_dir, "qlora", split="validation")
    try:
        _fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, _measure, hint="trained on the validation split")
    finally:
        write_run_record(qlora_run.run_dir, "qlora")


def test_ex04_task4_measuring_by_assumption_or_a_copied_printout_fails(qlora_run):
    def frozen(params):
        return [p for n, p in params.items() if "lora_" not in n]

    cases = [
        (_planted(base_bytes=lambda ps, saved, d: 4 * sum(p.numel() for p in frozen(ps))), "use each parameter's own element_size()"),
        (_planted(base_bytes=lambda ps, saved, d: sum(p.numel() * p.element_size() for p in ps.values())), "get_base_model() still holds"),
        (lambda m, d: {**_measure(m, d), "base_memory": m.get_base_model().get_memory_footprint()}, "get_base_model() still holds"),
        (_planted(adapter_bytes=lambda ps, saved, d: 2 * sum(p.numel() for p in ps.values() if p.requires_grad)), "saved in fp32"),
        (_planted(adapter_bytes=lambda ps, saved, d: 4 * sum(p.numel() for p in ps.values() if p.requires_grad)), "saved in bfloat16"),
        (_planted(adapter_bytes=lambda ps, saved, d: (d / "adapter_model.safetensors").stat().st_size), "JSON header"),
        (_planted(trainable=lambda ps, saved, d: sum(p.numel() for p in ps.values())), "requires_grad"),
        (lambda m, d: {k: float("nan") for k in _EX04_RIGHT}, "numel()"),
        (lambda m, d: [1, 2, 3], "one number per question"),
        (lambda m, d: 1 / 0, "`measure` raised ZeroDivisionError"),
    ]
    for measure, hint in cases:
        _fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, measure, hint=hint)
    printed = _measure(qlora_run.model, qlora_run.run_dir)  # numbers copied from the printout: right on the run only
    assert "on a hidden" in _fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, lambda m, d: printed, hint="copying numbers from a printout")


def test_ex04_task5_weights_only_full_precision_no_headroom_and_gigabytes_fail():
    """The rule of thumb of the exercise's text passes: its choices match the course's memory model on every hidden case."""
    rule_of_thumb = {"full": 16.0, "lora": 2.0, "qlora": 4.127 / 8}

    def rule(bytes_per_param, usable=checks.EX04_USABLE, gib=2**30):
        def choose(n_params, gpu_gib):
            return next((m for m in ("full", "lora", "qlora") if n_params * bytes_per_param[m] <= usable * gpu_gib * gib), "none")
        return choose

    assert "hidden (model, GPU) pairs" in checks.check_ex04_task5.verify(rule(rule_of_thumb))
    weights_only = rule({"full": 2.0, "lora": 2.0, "qlora": 0.5})
    _fails(checks.check_ex04_task5, weights_only, hint="16 bytes per parameter")
    _fails(checks.check_ex04_task5, rule(rule_of_thumb, usable=1.0), hint="keep 20%")
    _fails(checks.check_ex04_task5, rule(rule_of_thumb, gib=1e9), hint="2**30")
    _fails(checks.check_ex04_task5, lambda n, g: "qlora", hint="full → lora → qlora")


# ---------------------------------------------------------------- ex05


def _pt_model(tokenizer):
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    model = _tiny(tokenizer)
    return get_peft_model(model, build_peft_config("prompt_tuning", model, init_text=checks.EX05_INIT_TEXT, tokenizer_path=tokenizer.name_or_path))


def _init_ids(tokenizer, text, n, fill=None, from_end=False):
    ids = tokenizer(text)["input_ids"]
    if fill is not None:
        ids = ids + [fill] * max(0, n - len(ids))
    ids = (ids * -(-n // len(ids)))
    return ids[-n:] if from_end and len(tokenizer(text)["input_ids"]) > n else ids[:n]


def test_ex05_task1_padding_cutting_the_end_and_peft_itself_fail(tokenizer):
    from peft import get_peft_model

    pt_model = _pt_model(tokenizer)
    assert "hidden texts" in checks.check_ex05_task1.verify(pt_model, _init_ids, tokenizer)
    _fails(checks.check_ex05_task1, pt_model, lambda t, text, n: _init_ids(t, text, n, fill=t.eos_token_id), tokenizer, hint="is repeated")
    _fails(checks.check_ex05_task1, pt_model, lambda t, text, n: _init_ids(t, text, n, from_end=True), tokenizer, hint="keeps its first n")
    _fails(checks.check_ex05_task1, pt_model, lambda t, text, n: t(text)["input_ids"], tokenizer, hint="exactly n ids")
    _fails(checks.check_ex05_task1, pt_model, lambda t, text, n: get_peft_model(None, None), tokenizer, hint="calls `get_peft_model`")
    printed = _init_ids(tokenizer, checks.EX05_INIT_TEXT, 16)
    _fails(checks.check_ex05_task1, pt_model, lambda t, text, n: printed, tokenizer, hint="")  # the printed ids, whatever the text
    _fails(checks.check_ex05_task1, _tiny(tokenizer), _init_ids, tokenizer, hint="not a PeftModel")


def _prompt_run(folder, tokenizer, moved: float, learning_rate: float, losses=(2.0, 1.0)):
    """A prompt-tuning RunResult on a tiny Llama whose saved virtual tokens moved by ``moved`` from their text initialisation."""
    model = _pt_model(tokenizer)
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight += moved
    model.save_pretrained(folder)
    write_run_record(folder, "prompt_tuning", init_text=checks.EX05_INIT_TEXT)
    return RunResult("run", "prompt_tuning", model, None, folder, {"learning_rate": learning_rate},
                     [{"step": i + 1, "loss": v} for i, v in enumerate(losses)])


def test_ex05_task3_another_diagnosis_a_low_rate_or_tokens_that_did_not_move_fail(tmp_path, tokenizer):
    fixed = _prompt_run(tmp_path / "fixed", tokenizer, moved=0.05, learning_rate=0.03)
    assert "learning rate 0.03" in checks.check_ex05_task3.verify({"learning_rate"}, fixed, tokenizer)
    _fails(checks.check_ex05_task3, {"num_virtual_tokens"}, fixed, tokenizer, hint="full fine-tuning rate")
    _fails(checks.check_ex05_task3, {"learning_rate", "max_steps"}, fixed, tokenizer, hint="did not break the run")
    _fails(checks.check_ex05_task3, {"lr"}, fixed, tokenizer, hint="pick from")
    classmates = _prompt_run(tmp_path / "theirs", tokenizer, moved=6e-5, learning_rate=2e-5)
    _fails(checks.check_ex05_task3, {"learning_rate"}, classmates, tokenizer, hint="Lester et al. 2021")
    unmoved = _prompt_run(tmp_path / "unmoved", tokenizer, moved=1e-4, learning_rate=0.03)
    _fails(checks.check_ex05_task3, {"learning_rate"}, unmoved, tokenizer, hint="moved by at most")
    flat = _prompt_run(tmp_path / "flat", tokenizer, moved=0.05, learning_rate=0.03, losses=(2.0, 2.1))
    _fails(checks.check_ex05_task3, {"learning_rate"}, flat, tokenizer, hint="did not go down")
    write_run_record(tmp_path / "fixed", "prompt_tuning", split="test", init_text=checks.EX05_INIT_TEXT)
    _fails(checks.check_ex05_task3, {"learning_rate"}, fixed, tokenizer, hint="trained on the test split")
    write_run_record(tmp_path / "fixed", "prompt_tuning")  # without the init text it was another run
    _fails(checks.check_ex05_task3, {"learning_rate"}, fixed, tokenizer, hint="matches none of the course's intent splits")


def test_ex05_task4_dot_products_and_ids_fail(base_model, tokenizer):
    def right(prompt_embeddings, matrix, tokenizer):
        a, b = torch.nn.functional.normalize(prompt_embeddings, dim=-1), torch.nn.functional.normalize(matrix, dim=-1)
        return [tokenizer.decode([i]) for i in (a @ b.T).argmax(-1).tolist()]

    def dot_product(prompt_embeddings, matrix, tokenizer):  # unnormalised: long vectors win
        return [tokenizer.decode([i]) for i in (prompt_embeddings @ matrix.T).argmax(-1).tolist()]

    def euclidean(prompt_embeddings, matrix, tokenizer):
        return [tokenizer.decode([i]) for i in torch.cdist(prompt_embeddings, matrix).argmin(-1).tolist()]

    assert "recovers" in checks.check_ex05_task4.verify(right, base_model, tokenizer)
    for wrong in (dot_product, euclidean):
        _fails(checks.check_ex05_task4, wrong, base_model, tokenizer, hint="normalise both sides")


TABLE = {"lora": {"trainable": 921_600, "accuracy": 0.96}, "ia3": {"trainable": 46_080, "accuracy": 0.96},
         "prompt_tuning": {"trainable": 9_216, "accuracy": 0.50}, "p_tuning": {"trainable": 101_184, "accuracy": 0.61}}


def test_ex05_task5_ignoring_the_budget_the_smallest_method_and_ties_fail():
    assert "budgets" in checks.check_ex05_task5.verify(ex05._ex05_choice, TABLE)
    _fails(checks.check_ex05_task5, lambda t, b: max(t, key=lambda m: t[m]["accuracy"]), TABLE, hint="over the budget")
    _fails(checks.check_ex05_task5, lambda t, b: min(t, key=lambda m: t[m]["trainable"]), TABLE, hint="smallest method is not the best")

    def first_on_ties(table, budget):
        fits = [m for m in table if table[m]["trainable"] <= budget]
        return max(fits, key=lambda m: table[m]["accuracy"]) if fits else None

    _fails(checks.check_ex05_task5, first_on_ties, TABLE, hint="fewer trainable parameters")


# ---------------------------------------------------------------- ex06


def _pack(token_lists, block_size, eos_id):
    stream = [t for ids in token_lists for t in [*ids, eos_id]]
    return [b for b in (stream[i : i + block_size] for i in range(0, len(stream), block_size)) if len(b) > 1]


def test_ex06_task1_no_eos_padding_and_kept_stubs_fail():
    assert "hidden cases" in checks.check_ex06_task1.verify(_pack)
    _fails(checks.check_ex06_task1, lambda d, s, e: [b for b in (sum(d, [])[i : i + s] for i in range(0, len(sum(d, [])), s)) if len(b) > 1], hint="append eos_id")
    _fails(checks.check_ex06_task1, lambda d, s, e: [[*doc, e] for doc in d], hint="concatenate everything")
    _fails(checks.check_ex06_task1, lambda d, s, e: [b for b in (_pack(d, s, e) + [[e]])], hint="drop a final block")


def _run(tmp_path: Path, records: list[dict], packing: bool, trained_on: list[dict] | None = None) -> RunResult:
    """A saved LoRA run of a tiny Llama whose run record says it trained on ``trained_on`` (default ``records``) with ``packing``."""
    from peft import get_peft_model

    from ftcourse.configs import settings_dict
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import tiny_model

    model = tiny_model("llama")
    lora, settings = LoraSettings(r=4, target_modules=["q_proj", "v_proj"]), TrainingSettings(max_steps=2, max_seq_length=128)
    peft = get_peft_model(model, build_peft_config("lora", model, lora))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    peft.save_pretrained(tmp_path)
    key = run_fingerprint("embedded", "lora", lora, settings, trained_on or records, packing, None)
    (tmp_path / RUN_RECORD).write_text(json.dumps({"base_model": "embedded", "method": "lora", "fingerprint": key, "lora": settings_dict(lora),
                                                   "training": settings_dict(settings)}))
    metrics = {"trained_tokens": 990, "input_tokens": 1000, "steps": 2}
    return RunResult("run", "lora", peft, None, tmp_path, metrics, [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.9}])


def test_ex06_task3_held_out_text_no_packing_and_other_records_fail(tmp_path):
    texts = domain_texts()
    train = [{"text": t} for t in texts["train"]]
    assert "no held-out text" in checks.check_ex06_task3.verify(_run(tmp_path / "ok", train, True), train)
    everything = train + [{"text": t} for t in texts["heldout"]]
    _fails(checks.check_ex06_task3, _run(tmp_path / "leak", everything, True), everything, hint="held-out documents exist to measure")
    _fails(checks.check_ex06_task3, _run(tmp_path / "unpacked", train, False), train, hint="packing=True")
    _fails(checks.check_ex06_task3, _run(tmp_path / "other", train, True, trained_on=everything), train, hint="not trained on `train_records`")
    chat = [{"messages": [{"role": "user", "content": t}]} for t in texts["train"]]
    _fails(checks.check_ex06_task3, _run(tmp_path / "ok", train, True), chat, hint="plain text")


def test_ex06_task5_exact_matching_any_shared_word_and_case_sensitive_runs_fail():
    assert "removes the 3 leaked texts" in checks.check_ex06_task5.verify(lambda tr, he, n=8: [tr[i] for i in range(len(tr)) if i not in ex06._leaks(tr, he, n)])

    def exact(train, held, n=13):
        return [t for t in train if t not in held]

    def shared_words(train, held, n=13):
        words = {w for h in held for w in h.lower().split()}
        return [t for t in train if not {w for w in t.lower().split()} & words]

    def case_sensitive(train, held, n=13):
        def runs(text):
            w = text.split()
            return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

        bad = set().union(*(runs(h) for h in held))
        return [t for t in train if not runs(t) & bad]

    _fails(checks.check_ex06_task5, exact, hint="exact-match test misses leaks")
    _fails(checks.check_ex06_task5, shared_words, hint="sharing a few words is not a leak")
    _fails(checks.check_ex06_task5, case_sensitive, hint="lower-cased")


def _how_much_harder(ppl, ratio=lambda h, e: h / e, nats=lambda r, h, e: math.log(r), lower_is_harder=False):
    harder, easier = sorted(ppl, key=ppl.get, reverse=not lower_is_harder)
    r = ratio(ppl[harder], ppl[easier])
    return harder, r, nats(r, ppl[harder], ppl[easier])


def test_ex06_task2_a_wrong_prediction_fails_with_a_reason_and_a_different_sample_fails(base_model, tokenizer):
    domain, general = checks.ex06_samples()
    right = {"domain": perplexity(base_model, tokenizer, [domain], progress=False), "general": perplexity(base_model, tokenizer, [general], progress=False)}
    harder, ratio = max(right, key=right.get), max(right.values()) / min(right.values())
    edges = (1.5, 3, 10)
    predicted = {"harder": harder, "ratio": checks.EX06_RATIOS[sum(ratio >= e for e in edges)]}
    assert harder == "domain" and "as predicted" in checks.check_ex06_task2.verify(predicted, right, _how_much_harder, base_model, tokenizer)
    message = _fails(checks.check_ex06_task2, {**predicted, "harder": "general"}, right, _how_much_harder, base_model, tokenizer, hint="never saw HubOS")
    assert f"{right['domain']:.1f}" not in message and f"{right['general']:.1f}" not in message
    other_bin = next(b for b in checks.EX06_RATIOS if b != predicted["ratio"])
    message = _fails(checks.check_ex06_task2, {**predicted, "ratio": other_bin}, right, _how_much_harder, base_model, tokenizer, hint="ln R nats")
    assert f"{ratio:.1f}" not in message and predicted["ratio"] not in message  # the reason, never the measured bin
    _fails(checks.check_ex06_task2, {**predicted, "ratio": "about 2"}, right, _how_much_harder, base_model, tokenizer, hint="one of")
    _fails(checks.check_ex06_task2, {"harder": "domain"}, right, _how_much_harder, base_model, tokenizer, hint="one answer per question")
    _fails(checks.check_ex06_task2, predicted, {"domain": right["general"], "general": right["domain"]}, _how_much_harder, base_model, tokenizer,
           hint="with the samples given above")
    _fails(checks.check_ex06_task2, predicted, {"domain": math.log(right["domain"]), "general": math.log(right["general"])}, _how_much_harder,
           base_model, tokenizer, hint="perplexity(model")


def test_ex06_task2_wrong_ratios_wrong_logarithms_and_a_copied_printout_fail(base_model, tokenizer):
    domain, general = checks.ex06_samples()
    right = {"domain": perplexity(base_model, tokenizer, [domain], progress=False), "general": perplexity(base_model, tokenizer, [general], progress=False)}
    predicted = {"harder": "domain", "ratio": checks.EX06_RATIOS[sum(right["domain"] / right["general"] >= e for e in (1.5, 3, 10))]}
    printed = _how_much_harder(right)
    cases = [
        (lambda ppl: _how_much_harder(ppl, lower_is_harder=True), "the higher perplexity is the harder one"),
        (lambda ppl: _how_much_harder(ppl, ratio=lambda h, e: e / h, nats=lambda r, h, e: -math.log(r)), "the ratio is at least 1"),
        (lambda ppl: _how_much_harder(ppl, ratio=lambda h, e: h - e), "a ratio divides"),
        (lambda ppl: _how_much_harder(ppl, ratio=lambda h, e: math.log(h) / math.log(e)), "not their logarithms"),
        (lambda ppl: _how_much_harder(ppl, nats=lambda r, h, e: math.log10(r)), "not log2 or log10"),
        (lambda ppl: _how_much_harder(ppl, nats=lambda r, h, e: math.log2(r)), "not log2 or log10"),
        (lambda ppl: _how_much_harder(ppl, nats=lambda r, h, e: math.log(h) / math.log(e)), "not their quotient"),
        (lambda ppl: _how_much_harder(ppl, nats=lambda r, h, e: r), "take the logarithm of the ratio"),
        (lambda ppl: printed, "copying numbers from a printout"),  # right on ppl_before only
        (lambda ppl: {"harder": "domain"}, "return a tuple"),
    ]
    for how_much_harder, hint in cases:
        _fails(checks.check_ex06_task2, predicted, right, how_much_harder, base_model, tokenizer, hint=hint)


def test_ex06_task4_the_base_models_perplexity_inverted_forgetting_and_no_gain_fail(base_model, tokenizer):
    domain, general = checks.ex06_samples()

    def ppl(model):
        return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}

    trained = _tiny(tokenizer)  # stands in for the trained model: the check measures whatever result.model is
    after = ppl(trained)
    before = {"domain": 2 * after["domain"], "general": 0.5 * after["general"]}  # a domain gain, and forgetting
    result = RunResult("run", "lora", trained, None, Path("unused"), {}, [])
    assert "×2.000" in checks.check_ex06_task4.verify(before, after, after["general"] / before["general"], result, tokenizer)
    base = ppl(base_model)  # measured the base model again instead of result.model
    _fails(checks.check_ex06_task4, before, base, base["general"] / before["general"], result, tokenizer, hint="perplexity(model, tokenizer")
    _fails(checks.check_ex06_task4, before, after, before["general"] / after["general"], result, tokenizer, hint="ppl_after['general'] / ppl_before['general']")
    no_gain = {**before, "domain": 0.5 * after["domain"]}
    _fails(checks.check_ex06_task4, no_gain, after, after["general"] / no_gain["general"], result, tokenizer, hint="did not drop")


# ---------------------------------------------------------------- ex07


@pytest.fixture(scope="module")
def merge_case(tmp_path_factory, tokenizer):
    """A tiny Llama (tied embeddings, like the embedded model) saved as a base, and a LoRA adapter with non-zero B saved on it."""
    from peft import get_peft_model

    from ftcourse.models import load_model
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import save_tiny

    folder = tmp_path_factory.mktemp("merge")
    base_dir = save_tiny("llama", folder / "base", tokenizer, vocab_size=len(tokenizer), tie_word_embeddings=True)
    base = load_model(str(base_dir))
    lora = get_peft_model(base, build_peft_config("lora", base, LoraSettings(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    lora.save_pretrained(folder / "adapter")
    return folder, base_dir, folder / "adapter"


def _merged(adapter_dir):
    from peft import PeftModel

    from ftcourse.models import load_model

    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base), str(adapter_dir)).merge_and_unload()


def test_ex07_task1_a_merge_into_4_bit_and_wrong_diagnoses_fail(merge_case, tokenizer):
    _, _, adapter_dir = merge_case
    assert "full-precision base" in checks.check_ex07_task1.verify({"4bit_base"}, _merged(adapter_dir), adapter_dir, tokenizer)
    _fails(checks.check_ex07_task1, {"4bit_base"}, checks.ex07_classmate_merge(adapter_dir), adapter_dir, tokenizer, hint="rounds the sum to NF4 again")
    _fails(checks.check_ex07_task1, {"scale"}, _merged(adapter_dir), adapter_dir, tokenizer, hint="peft#2105")
    _fails(checks.check_ex07_task1, {"4bit_base", "dropout"}, _merged(adapter_dir), adapter_dir, tokenizer, hint="did not happen here")
    unmerged = _merged(adapter_dir)
    with torch.no_grad():
        for name, p in unmerged.named_parameters():
            if "q_proj" in name:
                p.mul_(1.01)  # weights changed after merging
    _fails(checks.check_ex07_task1, {"4bit_base"}, unmerged, adapter_dir, tokenizer, hint="full-precision base")


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
    assert "predicted exactly" in checks.check_ex07_task2.verify(*args, right, merged)
    _fails(checks.check_ex07_task2, *args, lambda m: sum(t.numel() * t.element_size() for t in m.state_dict().values()), merged, hint="stored once")
    _fails(checks.check_ex07_task2, *args, lambda m: sum(p.numel() * 2 for p in m.parameters()), merged, hint="not in 16 bits")
    _fails(checks.check_ex07_task2, *args, lambda m: right(m) / 2**20, merged, hint="bytes, not MiB")
    _fails(checks.check_ex07_task2, *args, save_and_measure, merged, hint="calls `save_pretrained`")
    printed = right(merged)
    _fails(checks.check_ex07_task2, *args, lambda m: printed, merged, hint="hidden model")


def test_ex07_task3_megabytes_one_file_and_swapped_sizes_fail(merge_case):
    folder, base_dir, adapter_dir = merge_case

    def mib(path, unit=2**20, files="*"):
        return sum(p.stat().st_size for p in Path(path).rglob(files) if p.is_file()) / unit

    assert "the adapter takes" in checks.check_ex07_task3.verify(mib(adapter_dir), mib(base_dir), adapter_dir, base_dir)
    _fails(checks.check_ex07_task3, mib(adapter_dir, unit=1e6), mib(base_dir, unit=1e6), adapter_dir, base_dir, hint="2**20")
    _fails(checks.check_ex07_task3, mib(adapter_dir, files="*.safetensors"), mib(base_dir), adapter_dir, base_dir, hint="rglob")
    _fails(checks.check_ex07_task3, mib(base_dir), mib(adapter_dir), adapter_dir, base_dir, hint="adapter_mb is")


def test_ex07_task4_peft_s_merge_and_wrong_scales_fail():
    assert "matches PEFT" in checks.check_ex07_task4.verify(lambda w, a, b, alpha, r: w + alpha / r * b @ a)
    _fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + alpha * r * b @ a, hint="the scale is alpha / r")
    _fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + alpha * b @ a, hint="the scale is alpha / r")
    _fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: w + b @ a, hint="the scale is alpha / r")
    _fails(checks.check_ex07_task4, lambda w, a, b, alpha, r: (w + alpha / r * b @ a).T, hint="B @ A has the weight's shape")

    def via_peft(w, a, b, alpha, r):
        layer = torch.nn.Linear(1, 1)
        return w + layer.get_delta_weight("default")  # the helper: merge_weight must not hand the job to PEFT

    _fails(checks.check_ex07_task4, via_peft, hint="calls `get_delta_weight`")


def _inference_ids(tokenizer, message):
    messages = [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]


def test_ex07_task5_plain_text_a_missing_system_message_or_generation_prompt_and_the_helper_fail(tokenizer):
    assert "equals the training prompt" in checks.check_ex07_task5.verify(_inference_ids, tokenizer)

    def no_system(tokenizer, message):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    def no_generation_prompt(tokenizer, message):
        messages = [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True, return_dict=True)["input_ids"]

    def helper(tokenizer, message):
        return prompt_ids(tokenizer, [{"role": "system", "content": classification_instruction(INTENT_LABELS)}, {"role": "user", "content": message}])

    _fails(checks.check_ex07_task5, checks.ex07_broken_prompt_ids, tokenizer, hint="not plain text")
    _fails(checks.check_ex07_task5, no_system, tokenizer, hint="default one")
    _fails(checks.check_ex07_task5, no_generation_prompt, tokenizer, hint="add_generation_prompt=True")
    _fails(checks.check_ex07_task5, helper, tokenizer, hint="calls `prompt_ids`")


# ---------------------------------------------------------------- ex12


def _ex12_answer_logps(logits, input_ids, mask):
    token = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * mask[:, 1:]).sum(-1)


def _ex12_token_logps(logits, input_ids):
    return logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def test_ex12_task1_a_mean_no_shift_an_unshifted_mask_every_token_probabilities_and_one_number_fail():
    assert "summed log-probability" in checks.check_ex12_task1.verify(_ex12_answer_logps)
    _fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_answer_logps(lg, ids, m) / m[:, 1:].sum(-1), hint="the SUM of its tokens")
    _fails(checks.check_ex12_task1, lambda lg, ids, m: (lg.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1) * m).sum(-1),
           hint="predict token t+1")
    _fails(checks.check_ex12_task1, lambda lg, ids, m: (_ex12_token_logps(lg, ids) * m[:, :-1]).sum(-1), hint="shift the completion mask")
    _fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_token_logps(lg, ids).sum(-1), hint="only the answer's tokens count")
    _fails(checks.check_ex12_task1, lambda lg, ids, m: (_ex12_token_logps(lg, ids).exp() * m[:, 1:]).sum(-1), hint="not probabilities")
    _fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_answer_logps(lg, ids, m).sum(), hint="one number per row")


def _ex12_dpo(pc, pr, rc, rr, beta):
    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def test_ex12_task2_a_swapped_sign_no_reference_the_chosen_likelihood_no_beta_and_a_sum_fail():
    logsigmoid = torch.nn.functional.logsigmoid
    assert "log 2 where the policy is the reference" in checks.check_ex12_task2.verify(_ex12_dpo)
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pr - rr) - (pc - rc))).mean(), hint="sign is swapped")
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * (pc - pr)).mean(), hint="the reference is missing")
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -pc.mean(), hint="plain likelihood of the chosen answer")
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid((pc - rc) - (pr - rr)).mean(), hint="multiply the margin by beta")
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - rc) - (pr - rr))).sum(), hint="average over the pairs")
    _fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - rc) - (pr - rr))), hint="one value per pair")


def _ex12_groups(rewards, size, std=lambda g: g.std(1, keepdim=True), eps=1e-4):
    g = rewards.view(-1, size)
    return ((g - g.mean(1, keepdim=True)) / (std(g) + eps)).flatten()


def test_ex12_task3_whole_batch_population_std_no_epsilon_no_scaling_and_interleaved_groups_fail():
    assert "zero for a group" in checks.check_ex12_task3.verify(_ex12_groups)
    _fails(checks.check_ex12_task3, lambda r, size: (r - r.mean()) / (r.std() + 1e-4), hint="within each GROUP")
    _fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, std=lambda g: g.std(1, keepdim=True, unbiased=False)), hint="Bessel")
    _fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, eps=0.0), hint="add 1e-4")
    _fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, std=lambda g: torch.zeros(1), eps=1.0), hint="Dr. GRPO")
    _fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, r.numel() // size), hint="consecutive")  # view(size, -1)
    _fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size)[: size], hint="one advantage per reward")


def _ex12_fields_right(completion, reference):
    try:
        answer = json.loads(completion)
    except json.JSONDecodeError:
        return 0.0
    expected = json.loads(reference)
    return sum(answer.get(k) == v for k, v in expected.items()) / len(expected) if isinstance(answer, dict) else 0.0


def test_ex12_task4_rewards_for_length_valid_json_strings_braces_in_prose_and_all_or_nothing_fail():
    import re

    def parses(text):
        try:
            return isinstance(json.loads(text), dict)
        except json.JSONDecodeError:
            return False

    def braces(completion, reference):
        found = re.search(r"\{.*?\}", completion)
        return _ex12_fields_right(found.group(0), reference) if found else 0.0

    assert "only right fields earn reward" in checks.check_ex12_task4.verify(_ex12_fields_right)
    _fails(checks.check_ex12_task4, lambda c, r: min(1.0, len(c) / len(r)), hint="must not grow with the answer's length")
    _fails(checks.check_ex12_task4, lambda c, r: float(parses(c)), hint="valid JSON alone must earn nothing")
    _fails(checks.check_ex12_task4, lambda c, r: float(c == r), hint="key order and spaces")
    _fails(checks.check_ex12_task4, braces, hint="do not search the text for braces")
    _fails(checks.check_ex12_task4, lambda c, r: float(_ex12_fields_right(c, r) == 1.0), hint="give partial credit")
    _fails(checks.check_ex12_task4, lambda c, r: 3 * _ex12_fields_right(c, r), hint="between 0 and 1")


def test_ex12_task5_each_wrong_diagnosis_names_its_own_signs_not_the_answer():
    right = {"run_a": "reward_hacking", "run_b": "learning_rate_too_low", "run_c": "cold_start", "run_d": "both_rewards_fall"}
    assert "four runs" in checks.check_ex12_task5.verify(right)
    message = _fails(checks.check_ex12_task5, {**right, "run_a": "both_rewards_fall"}, hint="`both_rewards_fall` would show")
    assert "reward_hacking" not in message
    _fails(checks.check_ex12_task5, {**right, "run_c": "learning_rate_too_low"}, hint="`learning_rate_too_low` would show")
    _fails(checks.check_ex12_task5, {**right, "run_d": "reward_hacking"}, hint="`reward_hacking` would show")
    _fails(checks.check_ex12_task5, {**right, "run_b": "bad luck"}, hint="answer one of")
    _fails(checks.check_ex12_task5, {"run_a": "reward_hacking"}, hint="one diagnosis per run")


# ---------------------------------------------------------------- ex13


def _rows_or_none(db, sql):
    from ftcourse.sql import QueryError, run_readonly

    try:
        return run_readonly(db, sql)
    except QueryError:
        return None


def _execution_match(db, predicted_sql, gold_sql, ordered):
    predicted, gold = _rows_or_none(db, predicted_sql), _rows_or_none(db, gold_sql)
    return predicted is not None and (predicted == gold if ordered else Counter(predicted) == Counter(gold))


def test_ex13_task1_strings_order_counts_sets_and_raising_fail():
    from ftcourse.sql import normalize_sql, run_readonly, same_result

    assert "8 hidden cases" in checks.check_ex13_task1.verify(_execution_match)

    def strings(db, p, g, ordered):
        return normalize_sql(p) == normalize_sql(g)

    def always_ordered(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and rows == run_readonly(db, g)

    def row_counts(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and len(rows) == len(run_readonly(db, g))

    def as_sets(db, p, g, ordered):
        rows, gold = _rows_or_none(db, p), run_readonly(db, g)
        return rows is not None and (rows == gold if ordered else set(rows) == set(gold))

    def never_ordered(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and Counter(rows) == Counter(run_readonly(db, g))

    def raises(db, p, g, ordered):
        return Counter(run_readonly(db, p)) == Counter(run_readonly(db, g)) if not ordered else run_readonly(db, p) == run_readonly(db, g)

    def helper(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and same_result(rows, run_readonly(db, g), ordered)

    _fails(checks.check_ex13_task1, strings, hint="you compare the SQL text")
    _fails(checks.check_ex13_task1, always_ordered, hint="compare them as multisets")
    _fails(checks.check_ex13_task1, row_counts, hint="how many rows came back, not which")
    _fails(checks.check_ex13_task1, as_sets, hint="a set forgets duplicates")
    _fails(checks.check_ex13_task1, never_ordered, hint="the order is part of the answer")
    _fails(checks.check_ex13_task1, raises, hint="catch QueryError and return False")
    _fails(checks.check_ex13_task1, helper, hint="calls `same_result`")


def test_ex13_task2_ids_whole_questions_no_normalising_and_query_shapes_fail():
    import re
    import string

    def masked(pair, normalise=True):
        text = pair["instruction"]
        for a, b in re.findall(r"'([^']*)'|\b(\d+)\b", pair["output"]):
            text = re.sub(rf"(?<!\w){re.escape(a or b)}(?!\w)", "<v>", text)
        return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split()) if normalise else text

    def right(train, test):
        seen = {masked(p) for p in train}
        return {p["template"] for p in test if masked(p) in seen}

    def by_id(train, test):
        return {p["template"] for p in test} & {p["template"] for p in train}

    def by_question(train, test):
        seen = {p["instruction"] for p in train}
        return {p["template"] for p in test if p["instruction"] in seen}

    def not_normalised(train, test):
        seen = {masked(p, normalise=False) for p in train}
        return {p["template"] for p in test if masked(p, normalise=False) in seen}

    def by_family(train, test):
        families = {p["template"].split("/")[0] for p in train}
        return {p["template"] for p in test if p["template"].split("/")[0] in families}

    def helper(train, test):
        seen = {checks.question_phrasing(p) for p in train}
        return {p["template"] for p in test if checks.question_phrasing(p) in seen}

    assert "3 hidden splits" in checks.check_ex13_task2.verify(right)
    _fails(checks.check_ex13_task2, by_id, hint="comparing ids or whole questions finds nothing")
    _fails(checks.check_ex13_task2, by_question, hint="comparing ids or whole questions finds nothing")
    _fails(checks.check_ex13_task2, not_normalised, hint="only in case or punctuation")
    _fails(checks.check_ex13_task2, by_family, hint="Compare phrasings, not query shapes")
    _fails(checks.check_ex13_task2, helper, hint="calls `question_phrasing`")


def test_ex13_task3_trusting_execution_or_text_fails_and_messages_do_not_give_the_verdict():
    right = {"leeds_count": "right", "austin_no_orders": "wrong, accepted", "top3_prices": "wrong, caught",
             "march_orders": "right", "priciest_footwear": "wrong, accepted"}
    assert "by chance" in checks.check_ex13_task3.verify(right)
    trusts_execution = {**right, "austin_no_orders": "right", "priciest_footwear": "right"}
    message = _fails(checks.check_ex13_task3, trusts_execution, hint="which table does it look in")
    assert "wrong, accepted" not in message.split("Hint:")[1]  # the hint leads to the verdict without giving it
    trusts_text = {**right, "leeds_count": "wrong, caught", "march_orders": "wrong, caught"}
    _fails(checks.check_ex13_task3, trusts_text, hint="can a customer's name be NULL")
    _fails(checks.check_ex13_task3, {**right, "top3_prices": "wrong, accepted"}, hint="without DESC")
    _fails(checks.check_ex13_task3, {**right, "top3_prices": "maybe"}, hint='"wrong, caught" or "wrong, accepted"')
    _fails(checks.check_ex13_task3, {"leeds_count": "right"}, hint="one answer per case")

def test_every_exercise_ends_with_a_debugging_or_judgement_task():
    from ftcourse.tools.build import masters, read_tasks

    last = {m.name.split("_")[0]: read_tasks(m)[-1].task for m in masters()}
    want = {"ex01": "task6", "ex02": "task6", "ex03": "task6", "ex04": "task5", "ex05": "task5", "ex06": "task5", "ex07": "task5",
            "ex08": "task5", "ex09": "task4", "ex10": "task3", "ex11": "task4", "ex12": "task5", "ex13": "task3"}
    assert {k: v for k, v in last.items() if k in want} == want
    for exercise, task in want.items():
        assert hasattr(checks, f"check_{exercise}_{task}")
    assert intent_records  # the data the debugging tasks read is the course's own
