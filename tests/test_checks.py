"""Self-checks: a friendly line in the notebook, an AssertionError with the hint for the grader — and they do fail."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from ftcourse.configs import LoraSettings
from ftcourse.course import checks
from ftcourse.course.bundled import INTENT_LABELS, raw_path
from ftcourse.course.checks import CheckFailed, core, ex03
from ftcourse.data import read_dataset
from ftcourse.runs import RunResult
from tests.saved_runs import write_run_record
from tests.tiny import tiny_model


def _right_f1(predictions, references):
    return ex03._mean_f1(predictions, references, set(references) | {p for p in predictions if p is not None})


def test_a_check_prints_a_tick_or_the_problem_and_its_hint_and_never_raises(capsys):
    checks.check_ex03_task1(_right_f1)
    checks.check_ex03_task1(lambda p, r: 0.5)
    checks.check_ex03_task1(lambda p, r: (_ for _ in ()).throw(NotImplementedError()))
    checks.check_ex03_task1(lambda p: 0.5)  # the wrong signature
    checks.check_ex03_task1()  # the check called without the answer
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("✓ Exercise 03, task 1: matches scikit-learn's macro F1")
    assert lines[1].startswith("✗ Exercise 03, task 1: macro_f1(") and lines[2].startswith("  Hint: per label: precision")
    assert "not answered yet" in lines[3]
    assert "`macro_f1` raised TypeError" in lines[5]
    assert "called with the wrong arguments" in lines[7] and "check_ex03_task1(macro_f1)" in lines[8]


def test_verify_returns_the_message_or_raises_an_assertion_error_with_the_hint():
    assert "practice cases" in checks.check_ex03_task1.verify(_right_f1)
    with pytest.raises(AssertionError, match="Hint: per label") as info:
        checks.check_ex03_task1.verify(lambda p, r: 0.5)
    assert isinstance(info.value, CheckFailed) and info.value.hint.startswith("per label")


def _data():
    return read_dataset(raw_path("support_intents.jsonl"), labels=INTENT_LABELS)


def _bootstrap(correct, n_boot=2000, seed=0):
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(correct, k=len(correct))) / len(correct) for _ in range(n_boot))
    return means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]


def _confusions(predictions, references, k=3):
    counts = Counter((r, "(none)" if p is None else p) for p, r in zip(predictions, references) if p != r)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def _pack(token_lists, block_size, eos_id):
    stream = [t for ids in token_lists for t in [*ids, eos_id]]
    return [b for b in (stream[i : i + block_size] for i in range(0, len(stream), block_size)) if len(b) > 1]


RIGHT = [
    (checks.check_ex01_task1, lambda: (_data(), dict(Counter(_data().labels())))),
    (checks.check_ex01_task2, lambda: (lambda records: [r for i, r in enumerate(records) if i in ((0, 2, 5, 8) if records[0] == checks.EX01_MESSY_RECORDS[0]
                                                                                               else (0, 1, 3, 7))],)),
    (checks.check_ex03_task1, lambda: (_right_f1,)),
    (checks.check_ex03_task3, lambda: (_confusions,)),
    (checks.check_ex03_task5, lambda: (_bootstrap,)),
    (checks.check_ex04_task1, lambda: (lambda n, bits: n * bits / 8 / 2**20,)),
    (checks.check_ex06_task1, lambda: (_pack,)),
    (checks.check_ex07_task4, lambda: (lambda w, a, b, alpha, r: w + alpha / r * b @ a,)),
]

WRONG = [
    (checks.check_ex01_task1, lambda: (_data(), {**Counter(_data().labels()), "order_status": 1}), "Counter"),
    (checks.check_ex01_task1, lambda: (_data().records, {}), "ftcourse.data.CourseDataset"),
    (checks.check_ex01_task2, lambda: (lambda records: records[:3],), "normalize_text"),
    (checks.check_ex01_task2, lambda: (lambda records: [records[i] for i in (2, 0, 5, 8)],), "original order"),
    (checks.check_ex03_task3, lambda: (lambda p, r, k=3: Counter((t, q) for q, t in zip(p, r) if q != t).most_common(k),), "'(none)'"),
    (checks.check_ex03_task5, lambda: (lambda c, n_boot=2000, seed=0: (0.6, 0.8),), "half as wide"),
    (checks.check_ex03_task5, lambda: (lambda c, n_boot=2000, seed=0: (0.63, 0.77),), "not the standard deviation"),
    (checks.check_ex03_task5, lambda: (lambda c, n_boot=2000, seed=0: (0.0, 0.5),), "contain the accuracy"),
    (checks.check_ex03_task5, lambda: (lambda c, n_boot=2000, seed=None: _bootstrap(c, n_boot, random.random()),), "seeded"),
    (checks.check_ex04_task1, lambda: (lambda n, bits: n * bits / 2**20,), "bits / 8"),
    (checks.check_ex06_task1, lambda: (lambda docs, size, eos: [b[:-1] for b in _pack(docs, size + 1, eos)],), "append eos_id"),
    (checks.check_ex07_task4, lambda: (lambda w, a, b, alpha, r: w + alpha * r * b @ a,), "alpha / r"),
]


@pytest.mark.parametrize("check, args", RIGHT, ids=lambda v: getattr(v, "__name__", ""))
def test_right_answers_pass(check, args):
    assert isinstance(check.verify(*args()), str)


@pytest.mark.parametrize("check, args, hint", WRONG, ids=lambda v: getattr(v, "__name__", "") if callable(v) else "")
def test_wrong_answers_fail_with_a_hint(check, args, hint):
    with pytest.raises(CheckFailed) as info:
        check.verify(*args())
    assert hint in str(info.value)


def _lora_count(model, r, target_modules):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in target_modules)


def test_lora_size_checks_use_the_models_real_shapes(base_model):
    assert "3 practice configurations" in checks.check_ex02_task2.verify(_lora_count, base_model)
    with pytest.raises(CheckFailed, match=r"r \* \(in_features \+ out_features\)"):
        checks.check_ex02_task2.verify(lambda m, r, t: r * 576 * 2 * len(t), base_model)
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "r=8 on the four attention projections trains 921,600" in checks.check_ex02_task3.verify(LoraSettings(r=8, target_modules=attention), base_model)
    with pytest.raises(CheckFailed, match="r=64 gives 7.37M trainable parameters; the task asks for under 1M"):
        checks.check_ex02_task3.verify(LoraSettings(r=64, target_modules=attention), base_model)
    with pytest.raises(CheckFailed, match="r=8 still fits"):
        checks.check_ex02_task3.verify(LoraSettings(r=7, target_modules=attention), base_model)
    with pytest.raises(CheckFailed, match="all four attention projections"):
        checks.check_ex02_task3.verify(LoraSettings(r=8, target_modules=["q_proj", "v_proj"]), base_model)


def test_method_sizes_check_compares_with_peft(base_model):
    right = {m: core.peft_trainable(base_model, m) for m in checks.EX05_METHODS}
    assert right["prompt_tuning"] == 16 * 576 and right["lora"] == 921_600
    assert "prompt_tuning 9,216" in checks.check_ex05_task2.verify(right, base_model)
    with pytest.raises(CheckFailed, match="trainable_counts\\['lora'\\]"):
        checks.check_ex05_task2.verify({**right, "lora": 460_800}, base_model)


def _saved_run(tmp_path: Path, losses: list[float], trained: bool) -> RunResult:
    """A RunResult of a tiny Llama with a saved LoRA adapter (lora_B zero unless ``trained``)."""
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    model = tiny_model("llama")
    peft = get_peft_model(model, build_peft_config("lora", model, LoraSettings(r=4, target_modules=["q_proj", "v_proj"])))
    if trained:
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p)
    peft.save_pretrained(tmp_path)
    write_run_record(tmp_path, "lora")
    metrics = {"trainable_parameters": core.peft_trainable(peft, "lora", LoraSettings(r=4, target_modules=["q_proj", "v_proj"])), "steps": 2}
    return RunResult("run", "lora", peft, None, tmp_path, metrics, [{"step": i + 1, "loss": v} for i, v in enumerate(losses)])


def test_training_checks_need_a_falling_loss_trained_weights_and_the_training_split(tmp_path):
    """What the judges of a trained run decide from its files (exercise 02's, 04's and 05's; test_wrong_answers reads a
    workspace): the method, a falling loss, every lora_B trained, and a run record of the intent training split."""
    from safetensors.torch import load_file

    def judged(run: RunResult) -> None:
        tensors = load_file(run.run_dir / "adapter_model.safetensors")
        core.expect_saved_adapter(run.method, "lora", [loss for _, loss in run.losses], tensors)

    def record(run: RunResult) -> dict:
        return json.loads((run.run_dir / "ftcourse_run.json").read_text())

    ok = _saved_run(tmp_path / "ok", [2.0, 1.0], True)
    judged(ok)
    core.expect_intent_record(record(ok))
    with pytest.raises(CheckFailed, match="did not go down"):
        judged(_saved_run(tmp_path / "flat", [2.0, 2.1], True))
    with pytest.raises(CheckFailed, match="lora_B matrices are still all zero"):
        judged(_saved_run(tmp_path / "zero", [2.0, 1.0], False))
    write_run_record(tmp_path / "ok", "lora", split="test")
    with pytest.raises(CheckFailed, match="trained on the test split"):
        core.expect_intent_record(record(ok))
    assert not core.record_trained_on({"not": "a record"}, [])
    (tmp_path / "ok" / "ftcourse_run.json").unlink()
    with pytest.raises(CheckFailed, match="asks for 'qlora'"):
        checks.check_ex04_task4.verify(_saved_run(tmp_path / "ok", [2.0, 1.0], True), {}, None)
    assert json.loads((tmp_path / "ok" / "adapter_config.json").read_text())["r"] == 4
