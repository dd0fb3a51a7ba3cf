"""Every exercise task's tempting wrong answers fail its check with a hint that says why (issue 13).

Each case plants one wrong answer a learner is likely to write — the course's helper called instead of the code
the task asks for, another formula, an off-by-one mask, training or keeping evaluation data, the wrong label set,
a value that only fits the printed example — and asserts the check raises CheckFailed naming the mistake.
The checks are called directly (no notebook runs); the right answers pass in the same tests. Every check follows the grading
protocol and is run on its practice case and on the grader's hidden case: both must reject the answer.
This file holds the general tests and exercises 01–03; ``test_wrong_answers_exNN.py`` the others (one file per exercise),
all with ``tests/planted.py``'s ``fails``/``passes``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import uuid
from collections import Counter

import pytest
import torch

from ftcourse import paths
from ftcourse.configs import LoraSettings
from ftcourse.course import checks
from ftcourse.course.bundled import INTENT_LABELS, intent_records, raw_path
from ftcourse.course.checks import CheckerError, core
from ftcourse.data import read_dataset, validate_record
from ftcourse.generation import perplexity
from ftcourse.metrics import classification_metrics, normalize_text
from ftcourse.profiles import get_profile
from ftcourse.runs import RUN_RECORD, RunResult
from ftcourse.tokenization import IGNORE_INDEX, prompt_ids, tokenize_messages
from ftcourse.tokenization import collate as course_collate
from ftcourse.train import settings_from_profile
from tests.planted import fails, passes, tiny_llama

# ---------------------------------------------------------------- the two kinds of failure


def test_a_wrong_answer_is_a_hint_and_a_broken_checker_is_a_checker_fault(capsys):
    fails(checks.check_ex03_task1, lambda p, r: 0.5, hint="Hint:")
    fails(checks.check_ex03_task1, lambda p, r: 1 / 0, hint="`macro_f1` raised ZeroDivisionError")  # the learner's bug
    fails(checks.check_ex03_task1, hint="wrong arguments")  # the check called without the answer

    @checks.self_check
    def check_ex99_task1(value) -> str:
        return {}["missing"]  # a bug in the checker itself

    with pytest.raises(CheckerError, match="the checker itself failed .*KeyError.*not about|the checker itself failed"):
        check_ex99_task1.verify(1)
    check_ex99_task1(1)
    out = capsys.readouterr().out
    assert out.startswith("⚠ Exercise 99, task 1: the checker itself failed (KeyError") and "tell your instructor" in out
    assert not issubclass(CheckerError, AssertionError)  # the grader reports it as a fault, not as a wrong answer


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
    assert "1000 records" in passes(checks.check_ex01_task1, data, dict(Counter(data.labels())))
    from ftcourse.course.bundled import intent_splits

    train = intent_splits()["train"]
    fails(checks.check_ex01_task1, train, dict(Counter(train.labels())), hint="keep every record")
    fails(checks.check_ex01_task1, data, {**Counter(data.labels()), "billing_issue": 0}, hint="count the label of every record")


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
    assert "4 of 8 records of a second messy set" in passes(checks.check_ex01_task2, _clean_records)

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

    fails(checks.check_ex01_task2, exact_duplicates_only, hint="normalize_text")
    fails(checks.check_ex01_task2, no_validation, hint="validate_record")
    fails(checks.check_ex01_task2, keep_last, hint="")
    fails(checks.check_ex01_task2, hard_coded, hint="copied from the printout")


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

    fails(checks.check_ex01_task3, split_dataset(_data(), validation=0.1, test=0.1, seed=1), _stratified, hint="seed=42")
    fails(checks.check_ex01_task3, split_dataset(_data(), validation=0.2, test=0.1, seed=42), _stratified, hint="validation=0.1")
    assert "practice unbalanced dataset" in passes(checks.check_ex01_task3, intent_splits(), _stratified)
    fails(checks.check_ex01_task3, intent_splits(), None, hint="def stratified_split")  # the point of the task is not optional
    fails(checks.check_ex01_task3, intent_splits(), hint="wrong arguments")


def test_ex01_task3_a_split_that_is_not_stratified_rounded_seeded_or_disjointfails():
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

    fails(checks.check_ex01_task3, splits, helper, hint="calls `split_dataset`")
    fails(checks.check_ex01_task3, splits, shuffled_together, hint="each label's records separately")
    fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, cut=int), hint="int() truncates")
    fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, rng=random.Random()), hint="seeded with `seed`")
    fails(checks.check_ex01_task3, splits, lambda r, t, s: _stratified(r, t, s, shuffle=False), hint="the seed changes nothing")
    fails(checks.check_ex01_task3, splits, overlapping, hint="exactly one part")
    fails(checks.check_ex01_task3, splits, lambda r, t, s: r, hint="(train, test) lists")


def _completion_only(tokenizer, messages):
    prompt = prompt_ids(tokenizer, messages[:-1])
    answer = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


def test_ex01_task4_the_helper_off_by_one_masks_and_a_missing_eos_fail(tokenizer):
    assert "prompt masked" in passes(checks.check_ex01_task4, _completion_only, tokenizer)

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

    fails(checks.check_ex01_task4, helper, tokenizer, hint="calls `tokenize_messages`")
    fails(checks.check_ex01_task4, shifted, tokenizer, hint="do not shift them yourself")
    fails(checks.check_ex01_task4, last_prompt_token_trained, tokenizer, hint="off by one")
    fails(checks.check_ex01_task4, no_eos, tokenizer, hint="EOS")
    fails(checks.check_ex01_task4, nothing_trained, tokenizer, hint="every label is -100")


def test_ex01_task5_a_truncating_or_wasteful_lengthfails(tokenizer):
    from ftcourse.course.bundled import intent_splits
    from ftcourse.data import to_messages

    longest = max(len(tokenize_messages(tokenizer, to_messages(r, "classification", INTENT_LABELS))["input_ids"]) for r in intent_splits()["train"].records)
    right = -(-longest // 32) * 32
    assert f"max_seq_length={right}" in passes(checks.check_ex01_task5, tokenizer, right)
    fails(checks.check_ex01_task5, tokenizer, right - 32, hint="take the longest")
    wasteful = fails(checks.check_ex01_task5, tokenizer, right + 32, hint="padding costs compute")
    truncating = fails(checks.check_ex01_task5, tokenizer, right - 32, hint="take the longest")
    assert str(right) not in wasteful and str(longest) not in truncating  # the answer is not given away
    fails(checks.check_ex01_task5, tokenizer, float(right), hint="compute an int")
    fails(checks.check_ex01_task5, tokenizer, longest + 1 if (longest + 1) % 32 else longest + 2, hint="multiple of 32")


def _collate(examples, pad_id, multiple=1):
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    rows = [(list(e["input_ids"]), list(e["labels"])) for e in examples]
    return {"input_ids": [ids + [pad_id] * (width - len(ids)) for ids, _ in rows],
            "attention_mask": [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows],
            "labels": [lbl + [IGNORE_INDEX] * (width - len(lbl)) for _, lbl in rows]}


def test_ex01_task6_the_pad_eq_eos_bug_and_its_cousins_fail(tokenizer):
    assert "EOS stays trained" in passes(checks.check_ex01_task6, _collate, tokenizer)
    assert "EOS stays trained" in passes(checks.check_ex01_task6, lambda e, p: _collate(e, p, multiple=8), tokenizer)  # the course's default: right too

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

    fails(checks.check_ex01_task6, checks.ex01_buggy_collate, tokenizer, hint="never taught to stop")
    fails(checks.check_ex01_task6, labels_padded_with_pad, tokenizer, hint="emit padding")
    fails(checks.check_ex01_task6, mask_from_ids, tokenizer, hint="hides the real EOS")
    fails(checks.check_ex01_task6, left_padded, tokenizer, hint="pad on the right")
    fails(checks.check_ex01_task6, calls_the_course, tokenizer, hint="calls `collate`")


# ---------------------------------------------------------------- ex02


def _lora_count(model, r, target_modules):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in target_modules)


def test_ex02_task2_peft_counting_and_wrong_formulas_fail(base_model):
    from peft import get_peft_model

    from ftcourse.models import count_parameters
    from ftcourse.peft_methods import build_peft_config

    assert "3 practice configurations" in passes(checks.check_ex02_task2, _lora_count, base_model)

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

    fails(checks.check_ex02_task2, with_peft, base_model, hint="calls `get_peft_model`")
    fails(checks.check_ex02_task2, with_count, base_model, hint="calls `count_parameters`")
    for wrong in (square_layers, one_block, r_squared):
        fails(checks.check_ex02_task2, wrong, base_model, hint="r * (in_features + out_features)")


def test_ex02_task3_over_budget_too_small_or_other_targets_fail(base_model):
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    fails(checks.check_ex02_task3, LoraSettings(r=64, target_modules=attention), base_model, hint="lower r")
    fails(checks.check_ex02_task3, LoraSettings(r=7, target_modules=attention), base_model, hint="largest r")
    fails(checks.check_ex02_task3, LoraSettings(r=8, target_modules=["q_proj", "v_proj"]), base_model, hint="all four attention projections")


def _fixed():
    return ({"target_modules", "learning_rate", "max_seq_length"}, LoraSettings(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
            settings_from_profile(get_profile("smoke"), max_seq_length=160))


def test_ex02_task6_each_fault_left_in_or_misdiagnosedfails(base_model, tokenizer):
    P = get_profile("smoke")
    causes, lora, training = _fixed()
    assert "all three faults" in passes(checks.check_ex02_task6, causes, lora, training, base_model, tokenizer, P)
    fails(checks.check_ex02_task6, {"learning_rate"}, lora, training, base_model, tokenizer, P, hint="leaves out a setting")
    fails(checks.check_ex02_task6, causes | {"r"}, lora, training, base_model, tokenizer, P, hint="is fine in this run")
    fails(checks.check_ex02_task6, "learning rate", lora, training, base_model, tokenizer, P, hint="EX02_SETTINGS")
    fails(checks.check_ex02_task6, causes, lora.replace(target_modules=["lm_head"]), training, base_model, tokenizer, P, hint="lm_head is the output layer")
    fails(checks.check_ex02_task6, causes, lora.replace(r=64), training, base_model, tokenizer, P, hint="keep r=8")
    fails(checks.check_ex02_task6, causes, lora, training.replace(learning_rate=2e-5), base_model, tokenizer, P, hint="much higher rate")
    fails(checks.check_ex02_task6, causes, lora, training.replace(max_seq_length=32), base_model, tokenizer, P, hint="all labels are -100")


def _adam_mib(model, bytes_per_parameter=8, trainable_only=True, mib=2**20):
    return bytes_per_parameter * sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only) / mib


def test_ex02_task1_the_classmates_model_a_frozen_adapter_and_wrong_optimizer_memory_fail(tokenizer):
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    def fixed():
        model = checks.ex02_classmate_lora(tiny_llama(tokenizer))
        for name, p in model.named_parameters():
            p.requires_grad = "lora_" in name
        return model

    assert "AdamW's states" in passes(checks.check_ex02_task1, fixed(), _adam_mib)
    fails(checks.check_ex02_task1, checks.ex02_classmate_lora(tiny_llama(tokenizer)), _adam_mib, hint="base-model tensors still train")
    fails(checks.check_ex02_task1, fixed().requires_grad_(False), _adam_mib, hint="keep every lora_A and lora_B")
    wrong = get_peft_model(tiny_llama(tokenizer), build_peft_config("lora", tiny_llama(tokenizer), LoraSettings(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])))
    fails(checks.check_ex02_task1, wrong, _adam_mib, hint="r=8, lora_alpha=16")
    fails(checks.check_ex02_task1, tiny_llama(tokenizer), _adam_mib, hint="not a PeftModel")
    fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, trainable_only=False), hint="only the trainable parameters")
    fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, bytes_per_parameter=4), hint="two states per trainable parameter")
    fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, bytes_per_parameter=16), hint="weights and gradients are not optimizer states")
    fails(checks.check_ex02_task1, fixed(), lambda m: _adam_mib(m, mib=1e6), hint="2**20")


@pytest.fixture
def run_folder():
    """A run folder inside the course folder (the judge reads only the workspace), removed afterwards."""
    folder = paths.fine_tuned_dir() / f"pytest-ex02-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _saved_lora(tokenizer, folder, settings: LoraSettings, split: str = "train", trained: bool = True):
    """A tiny LoRA model saved in ``folder`` as fine_tune saves a run (record, metrics, a falling loss); its RunResult."""
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config
    from tests.saved_runs import write_run_record

    model = get_peft_model(tiny_llama(tokenizer), build_peft_config("lora", tiny_llama(tokenizer), settings))
    for name, p in model.named_parameters():
        if "lora_B" in name and trained:
            torch.nn.init.normal_(p)
    model.save_pretrained(folder)
    write_run_record(folder, "lora", split)
    history = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}]
    record = json.loads((folder / RUN_RECORD).read_text())
    (folder / RUN_RECORD).write_text(json.dumps({**record, "history": history}))
    metrics = {"trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), "steps": 2}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return RunResult("run", "lora", model, None, folder, metrics, history)


def _adapter_mib(model, settings, bytes_per_parameter=4, mib=2**20):
    return bytes_per_parameter * _lora_count(model, settings.r, settings.target_modules) / mib


def test_ex02_task4_wrong_dtype_the_base_counted_an_untrained_or_test_trained_run_and_the_helpers_fail(tmp_path, run_folder, tokenizer):
    from peft import get_peft_model

    from ftcourse.course.comparison import peft_parameter_count
    from ftcourse.peft_methods import build_peft_config

    budget, model = LoraSettings(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]), tiny_llama(tokenizer)
    result = _saved_lora(tokenizer, run_folder, budget)
    assert "as predicted" in passes(checks.check_ex02_task4, result, budget, _adapter_mib, model)

    def with_peft(model, settings):
        adapted = get_peft_model(model, build_peft_config("lora", model, settings))
        return 4 * sum(p.numel() for p in adapted.parameters() if p.requires_grad) / 2**20

    def base_too(model, settings):
        return _adapter_mib(model, settings) + 4 * sum(p.numel() for p in model.parameters()) / 2**20

    def from_the_file(model, settings):  # the run's file size fits the budget run only
        return (run_folder / "adapter_model.safetensors").stat().st_size / 2**20

    fails(checks.check_ex02_task4, result, budget, lambda m, s: _adapter_mib(m, s, bytes_per_parameter=2), model, hint="autocast")
    fails(checks.check_ex02_task4, result, budget, base_too, model, hint="not the base model's weights")
    fails(checks.check_ex02_task4, result, budget, lambda m, s: _adapter_mib(m, s, mib=1e6), model, hint="2**20")
    fails(checks.check_ex02_task4, result, budget, from_the_file, model, hint="r · (in + out)")
    fails(checks.check_ex02_task4, result, budget, with_peft, model, hint="calls `get_peft_model`")
    def unlisted_helper(model, settings):
        return 4 * peft_parameter_count(model, "lora", settings)["trainable"] / 2**20

    fails(checks.check_ex02_task4, result, budget, unlisted_helper, model, hint="calls `peft_parameter_count`")
    fails(checks.check_ex02_task4, result, budget.replace(r=8, lora_alpha=16), _adapter_mib, model, hint="pass lora=budget_settings")
    record = json.loads((run_folder / RUN_RECORD).read_text())
    (run_folder / RUN_RECORD).write_text(json.dumps({**record, "history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 2.1}]}))
    fails(checks.check_ex02_task4, result, budget, _adapter_mib, model, hint="did not go down")
    (run_folder / RUN_RECORD).write_text(json.dumps({"method": "lora", "history": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}]}))
    fails(checks.check_ex02_task4, result, budget, _adapter_mib, model, hint="with fine_tune's defaults otherwise")  # a record made by hand
    (run_folder / "metrics.json").unlink()
    fails(checks.check_ex02_task4, result, budget, _adapter_mib, model, hint="holds no metrics.json")
    shutil.rmtree(run_folder)
    run_folder.mkdir()
    untrained = _saved_lora(tokenizer, run_folder, budget, trained=False)
    fails(checks.check_ex02_task4, untrained, budget, _adapter_mib, model, hint="optimizer updates the adapter")
    shutil.rmtree(run_folder)
    run_folder.mkdir()
    on_test = _saved_lora(tokenizer, run_folder, budget, split="test")
    fails(checks.check_ex02_task4, on_test, budget, _adapter_mib, model, hint="evaluation data is never trained on")
    outside = _saved_lora(tokenizer, tmp_path, budget)
    fails(checks.check_ex02_task4, outside, budget, _adapter_mib, model, hint="default output folder")


def test_ex02_task5_get_peft_model_the_trained_object_a_fixed_folder_a_shared_base_and_the_helper_fail(tmp_path, run_folder, tokenizer):
    from peft import LoraConfig, PeftModel, get_peft_model

    from ftcourse.runs import load_run

    result = _saved_lora(tokenizer, run_folder, LoraSettings(r=4, target_modules=["q_proj", "v_proj"]))
    trained = result.model
    assert "reloaded exactly" in passes(checks.check_ex02_task5, lambda run_dir: PeftModel.from_pretrained(tiny_llama(tokenizer), run_dir), result, tokenizer)

    def classmate(run_dir):  # ex02_classmate_reload on a tiny base: get_peft_model builds a new adapter from the saved config
        return get_peft_model(tiny_llama(tokenizer), LoraConfig.from_pretrained(str(run_dir)))

    shared = tiny_llama(tokenizer)

    def one_base(run_dir):  # every adapter onto the same base: the second load overwrites the first
        return PeftModel.from_pretrained(shared, run_dir)

    fails(checks.check_ex02_task5, classmate, result, tokenizer, hint="PeftModel.from_pretrained(base_model, run_dir)")
    fails(checks.check_ex02_task5, lambda run_dir: trained, result, tokenizer, hint="not the trained object itself")
    fails(checks.check_ex02_task5, lambda run_dir: PeftModel.from_pretrained(tiny_llama(tokenizer), run_folder), result, tokenizer, hint="passed as `run_dir`")
    def helper(run_dir):
        return load_run(run_dir).model

    fails(checks.check_ex02_task5, helper, result, tokenizer, hint="calls `load_run`")
    fails(checks.check_ex02_task5, one_base, result, tokenizer, hint="on every call")


# ---------------------------------------------------------------- ex03


def _macro_f1(predictions, references):
    labels = set(references) | {p for p in predictions if p is not None}
    f1 = [2 * sum(p == lbl == r for p, r in zip(predictions, references))
          / max(1, sum(p == lbl for p in predictions) + sum(r == lbl for r in references)) for lbl in labels]
    return sum(f1) / len(f1)


def test_ex03_task1_the_helper_the_reference_only_label_set_accuracy_and_none_as_a_label_fail():
    assert "scikit-learn" in passes(checks.check_ex03_task1, _macro_f1)

    def helper(predictions, references):
        return classification_metrics(predictions, references, sorted(set(references)))["f1"]

    def references_only(predictions, references):
        labels = sorted(set(references))
        return sum(2 * sum(p == lbl == r for p, r in zip(predictions, references))
                   / max(1, sum(p == lbl for p in predictions) + sum(r == lbl for r in references)) for lbl in labels) / len(labels)

    def accuracy(predictions, references):
        return sum(p == r for p, r in zip(predictions, references)) / len(references)

    def predicted_only(predictions, references):
        labels = sorted({p for p in predictions if p is not None})
        return sum(2 * sum(p == lbl == r for p, r in zip(predictions, references))
                   / max(1, sum(p == lbl for p in predictions) + sum(r == lbl for r in references)) for lbl in labels) / len(labels)

    def support_weighted(predictions, references):
        labels = set(references)
        return sum(references.count(lbl) * 2 * sum(p == lbl == r for p, r in zip(predictions, references))
                   / max(1, sum(p == lbl for p in predictions) + references.count(lbl)) for lbl in labels) / len(references)

    def none_is_a_label(predictions, references):
        return _macro_f1(["<none>" if p is None else p for p in predictions], references) if None in predictions else _macro_f1(predictions, references)

    fails(checks.check_ex03_task1, helper, hint="calls `classification_metrics`")
    fails(checks.check_ex03_task1, references_only, hint="labels of the references only")
    fails(checks.check_ex03_task1, accuracy, hint="that is accuracy")
    fails(checks.check_ex03_task1, predicted_only, hint="labels the model predicted only")
    weighted = fails(checks.check_ex03_task1, support_weighted, hint="support-weighted F1")
    assert "that is accuracy" not in weighted

    def reference(predictions, references):
        return checks.macro_f1_reference(predictions, references)

    fails(checks.check_ex03_task1, reference, hint="calls `macro_f1_reference`")
    fails(checks.check_ex03_task1, none_is_a_label, hint="None prediction is wrong and is not a label")


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
    fails(checks.check_ex03_task2, *args, free_text, metrics_of(free_text), P, hint="constrain generation to the label set")
    fails(checks.check_ex03_task2, *args, predictions[:-1], {"accuracy": 0.5, "macro_f1": 0.5}, P, hint="one label per example")
    other = next(label for label in INTENT_LABELS if label != predictions[-1])
    guessed = predictions[:-1] + [other]  # the last example is not in the printout of the first few
    fails(checks.check_ex03_task2, *args, guessed, metrics_of(guessed), P, hint="predict every example")
    validation_refs = [r["label"] for r in intent_records(P)["validation"]]
    fails(checks.check_ex03_task2, *args, predictions, metrics_of(predictions, validation_refs), P, hint="references in test order")
    fails(checks.check_ex03_task2, *args, predictions, {**metrics_of(predictions), "macro_f1": metrics_of(predictions)["accuracy"] + 0.01}, P,
           hint="use your task-1 macro_f1")


def test_ex03_task3_unordered_ties_swapped_pairs_and_counted_hits_fail():
    assert "practice cases" in passes(checks.check_ex03_task3, _confusions)
    fails(checks.check_ex03_task3, lambda p, r, k=3: Counter((t, q) for q, t in zip(p, r) if q != t).most_common(k), hint="'(none)'")
    fails(checks.check_ex03_task3, lambda p, r, k=3: [((b, a), n) for (a, b), n in _confusions(p, r, k)], hint="(true, predicted)")
    fails(checks.check_ex03_task3, lambda p, r, k=3: sorted(Counter((t, "(none)" if q is None else q) for q, t in zip(p, r)).items(),
                                                             key=lambda i: (-i[1], i[0]))[:k], hint="where they differ")


def _my_ppl(model, tokenizer, text):
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    with torch.no_grad():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def test_ex03_task4_the_helper_a_double_shift_and_no_exp_fail(base_model, tokenizer):
    assert "within 2%" in passes(checks.check_ex03_task4, _my_ppl, base_model, tokenizer)

    def helper(model, tokenizer, text):
        return perplexity(model, tokenizer, [text])

    def double_shift(model, tokenizer, text):
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
        with torch.no_grad():
            return math.exp(model(input_ids=ids[:, :-1], labels=ids[:, 1:]).loss.item())

    def the_loss(model, tokenizer, text):
        return math.log(_my_ppl(model, tokenizer, text))

    fails(checks.check_ex03_task4, helper, base_model, tokenizer, hint="calls `perplexity`")
    fails(checks.check_ex03_task4, double_shift, base_model, tokenizer, hint="double shift")
    fails(checks.check_ex03_task4, the_loss, base_model, tokenizer, hint="exp(loss)")
    base_two = fails(checks.check_ex03_task4, lambda m, t, x: 2 ** math.log(_my_ppl(m, t, x)), base_model, tokenizer, hint="not 2")
    assert "double shift" not in base_two


def _bootstrap(correct, n_boot=2000, seed=0):
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(correct, k=len(correct))) / len(correct) for _ in range(n_boot))
    return means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]


def test_ex03_task5_wald_a_fixed_size_resample_no_seed_and_wrong_percentiles_fail():
    assert "halves the width" in passes(checks.check_ex03_task5, _bootstrap)

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

    fails(checks.check_ex03_task5, wald, hint="Wald")
    fails(checks.check_ex03_task5, wald_clipped, hint="does not resample")
    fails(checks.check_ex03_task5, fixed_size, hint="same size as the data")
    fails(checks.check_ex03_task5, five_to_95, hint="not 5/95")
    fails(checks.check_ex03_task5, lambda c, n_boot=2000, seed=0: _bootstrap(c, n_boot, random.random()), hint="seeded")

    def bootstrap_se_clipped(correct, n_boot=2000, seed=0):  # resamples, but ±1.96 SE of the resamples, clipped to [0, 1]
        rng, n = random.Random(seed), len(correct)
        means = [sum(rng.choices(correct, k=n)) / n for _ in range(n_boot)]
        p, se = sum(correct) / n, statistics.pstdev(means)
        return max(0.0, p - 1.96 * se), min(1.0, p + 1.96 * se)

    fails(checks.check_ex03_task5, bootstrap_se_clipped, hint="percentiles")

    def helper(correct, n_boot=2000, seed=0):
        return checks.paired_difference_ci([False] * len(correct), correct, n_boot, seed)

    fails(checks.check_ex03_task5, helper, hint="calls `paired_difference_ci`")


def _paired(correct_a, correct_b, n_boot=2000, seed=0, k=None, level=0.95):
    rng, n = random.Random(seed), len(correct_a)
    diffs = sorted(sum(correct_b[i] - correct_a[i] for i in (rng.randrange(n) for _ in range(k or n))) / (k or n) for _ in range(n_boot))
    tail = (1 - level) / 2
    return diffs[int(tail * n_boot)], diffs[int((1 - tail) * n_boot) - 1]


def _verdict(low, high):
    return "B" if low > 0 else "A" if high < 0 else "no clear difference"


def _compare(correct_a, correct_b, n_boot=2000, seed=0, **how):
    low, high = _paired(correct_a, correct_b, n_boot, seed, **how)
    return _verdict(low, high), (low, high)


def test_ex03_task6_unpaired_intervals_raw_accuracies_and_intervals_that_are_not_a_seeded_95_percent_bootstrap_fail():
    assert "separate intervals overlap" in passes(checks.check_ex03_task6, _compare)

    def overlapping_intervals(correct_a, correct_b, n_boot=2000, seed=0):
        (la, ha), (lb, hb) = _bootstrap(correct_a, n_boot, seed), _bootstrap(correct_b, n_boot, seed)
        verdict = "B" if lb > ha else "A" if la > hb else "no clear difference"
        return verdict, _paired(correct_a, correct_b, n_boot, seed)

    def higher_accuracy(correct_a, correct_b, n_boot=2000, seed=0):
        a, b = sum(correct_a), sum(correct_b)
        return ("B" if b > a else "A" if a > b else "no clear difference"), _paired(correct_a, correct_b, n_boot, seed)

    def unpaired_difference(correct_a, correct_b, n_boot=2000, seed=0):
        rng, n = random.Random(seed), len(correct_a)
        diffs = sorted(sum(rng.choices(correct_b, k=n)) / n - sum(rng.choices(correct_a, k=n)) / n for _ in range(n_boot))
        low, high = diffs[int(0.025 * n_boot)], diffs[int(0.975 * n_boot) - 1]
        return ("B" if low > 0 else "A" if high < 0 else "no clear difference"), (low, high)

    def standard_error_clipped(correct_a, correct_b, n_boot=2000, seed=0):
        d = [b - a for a, b in zip(correct_a, correct_b)]
        mean, se = statistics.fmean(d), statistics.pstdev(d) / math.sqrt(len(d))
        low, high = max(-1.0, mean - 1.96 * se), min(1.0, mean + 1.96 * se)
        return _verdict(low, high), (low, high)

    def bootstrap_standard_error(correct_a, correct_b, n_boot=2000, seed=0):
        rng, n = random.Random(seed), len(correct_a)
        diffs = [sum(correct_b[i] - correct_a[i] for i in (rng.randrange(n) for _ in range(n))) / n for _ in range(n_boot)]
        mean, se = (sum(correct_b) - sum(correct_a)) / n, statistics.pstdev(diffs)
        return _verdict(mean - 1.96 * se, mean + 1.96 * se), (mean - 1.96 * se, mean + 1.96 * se)

    def helper(correct_a, correct_b, n_boot=2000, seed=0):
        low, high = checks.paired_difference_ci(correct_a, correct_b, n_boot, seed)
        return _verdict(low, high), (low, high)

    fails(checks.check_ex03_task6, overlapping_intervals, hint="pair by pair")
    fails(checks.check_ex03_task6, higher_accuracy, hint="not yet a better model")
    fails(checks.check_ex03_task6, unpaired_difference, hint="pair by pair")
    fails(checks.check_ex03_task6, standard_error_clipped, hint="does not resample")
    fails(checks.check_ex03_task6, bootstrap_standard_error, hint="percentiles")
    fails(checks.check_ex03_task6, lambda a, b, n_boot=2000, seed=0: _compare(a, b, n_boot, seed, level=0.90), hint="97.5th percentiles")
    fails(checks.check_ex03_task6, lambda a, b, n_boot=2000, seed=0: _compare(a, b, n_boot, seed, k=100), hint="not a fixed number")
    fails(checks.check_ex03_task6, lambda a, b, n_boot=2000, seed=0: _compare(a, b, n_boot, random.random()), hint="seeded with `seed`")
    fails(checks.check_ex03_task6, helper, hint="calls `paired_difference_ci`")
