"""Planted wrong answers of exercise 05: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.course.checks import ex05
from ftcourse.runs import RunResult
from tests.planted import fails, passes, tiny_llama
from tests.saved_runs import write_run_record

# ---------------------------------------------------------------- ex05


def _pt_model(tokenizer):
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    model = tiny_llama(tokenizer)
    return get_peft_model(model, build_peft_config("prompt_tuning", model, init_text=checks.EX05_INIT_TEXT, tokenizer_path=tokenizer.name_or_path))


def _init_ids(tokenizer, text, n, fill=None, from_end=False):
    ids = tokenizer(text)["input_ids"]
    if fill is not None:
        ids = ids + [fill] * max(0, n - len(ids))
    ids = (ids * -(-n // len(ids)))
    return ids[-n:] if from_end and len(tokenizer(text)["input_ids"]) > n else ids[:n]


def test_ex05_task1_padding_cutting_the_end_and_peft_itself_fail(tokenizer):
    from peft import get_peft_model
    from peft.tuners.prompt_tuning.model import PromptEmbedding

    pt_model = _pt_model(tokenizer)
    assert "3 practice texts" in passes(checks.check_ex05_task1, pt_model, _init_ids, tokenizer)
    fails(checks.check_ex05_task1, pt_model, lambda t, text, n: _init_ids(t, text, n, fill=t.eos_token_id), tokenizer, hint="is repeated")
    fails(checks.check_ex05_task1, pt_model, lambda t, text, n: _init_ids(t, text, n, from_end=True), tokenizer, hint="keeps its first n")
    fails(checks.check_ex05_task1, pt_model, lambda t, text, n: t(text)["input_ids"], tokenizer, hint="exactly n ids")

    def by_peft(tokenizer, text, n):
        return get_peft_model(None, None)

    def by_the_embedding(tokenizer, text, n):
        return PromptEmbedding(None, None)

    fails(checks.check_ex05_task1, pt_model, by_peft, tokenizer, hint="calls `get_peft_model`")
    fails(checks.check_ex05_task1, pt_model, by_the_embedding, tokenizer, hint="calls `PromptEmbedding`")
    printed = _init_ids(tokenizer, checks.EX05_INIT_TEXT, 16)
    fails(checks.check_ex05_task1, pt_model, lambda t, text, n: printed, tokenizer, hint="")  # the printed ids, whatever the text
    fails(checks.check_ex05_task1, tiny_llama(tokenizer), _init_ids, tokenizer, hint="not a PeftModel")


def _prompt_run(folder, tokenizer, moved: float, learning_rate: float, losses=(2.0, 1.0)):
    """A prompt-tuning RunResult on a tiny Llama whose saved virtual tokens moved by ``moved`` from their text initialisation."""
    model = _pt_model(tokenizer)
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight += moved
    model.save_pretrained(folder)
    write_run_record(folder, "prompt_tuning", init_text=checks.EX05_INIT_TEXT)
    (folder / "metrics.json").write_text("{}")  # fine_tune writes it beside the record
    return RunResult("run", "prompt_tuning", model, None, folder, {"learning_rate": learning_rate},
                     [{"step": i + 1, "loss": v} for i, v in enumerate(losses)])


@pytest.fixture()
def run_folder():
    """A folder under models/fine_tuned for saved runs (the judge reads a run's files from the course folder, as the grader from the workspace)."""
    paths.fine_tuned_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="test-ex05-", dir=paths.fine_tuned_dir()) as name:
        yield Path(name)


def test_ex05_task3_another_diagnosis_a_low_rate_or_tokens_that_did_not_move_fail(run_folder, tokenizer):
    tmp_path = run_folder
    fixed = _prompt_run(tmp_path / "fixed", tokenizer, moved=0.05, learning_rate=0.03)
    assert "learning rate 0.03" in passes(checks.check_ex05_task3, {"learning_rate"}, fixed, tokenizer)
    message = fails(checks.check_ex05_task3, {"num_virtual_tokens"}, fixed, tokenizer, hint="which setting decides that amount")
    assert "learning" not in message and "2e-5" not in message  # issue 31: the hint named the answer
    fails(checks.check_ex05_task3, {"learning_rate", "max_steps"}, fixed, tokenizer, hint="did not break the run")
    fails(checks.check_ex05_task3, {"lr"}, fixed, tokenizer, hint="pick from")
    classmates = _prompt_run(tmp_path / "theirs", tokenizer, moved=6e-5, learning_rate=2e-5)
    fails(checks.check_ex05_task3, {"learning_rate"}, classmates, tokenizer, hint="Lester et al. 2021")
    unmoved = _prompt_run(tmp_path / "unmoved", tokenizer, moved=1e-4, learning_rate=0.03)
    fails(checks.check_ex05_task3, {"learning_rate"}, unmoved, tokenizer, hint="moved by at most")
    flat = _prompt_run(tmp_path / "flat", tokenizer, moved=0.05, learning_rate=0.03, losses=(2.0, 2.1))
    fails(checks.check_ex05_task3, {"learning_rate"}, flat, tokenizer, hint="did not go down")
    write_run_record(tmp_path / "fixed", "prompt_tuning", split="test", init_text=checks.EX05_INIT_TEXT)
    fails(checks.check_ex05_task3, {"learning_rate"}, fixed, tokenizer, hint="trained on the test split")
    write_run_record(tmp_path / "fixed", "prompt_tuning")  # without the init text it was another run
    fails(checks.check_ex05_task3, {"learning_rate"}, fixed, tokenizer, hint="matches none of the course's intent splits")


def test_ex05_task4_dot_products_and_ids_fail(base_model, tokenizer):
    def right(prompt_embeddings, matrix, tokenizer):
        a, b = torch.nn.functional.normalize(prompt_embeddings, dim=-1), torch.nn.functional.normalize(matrix, dim=-1)
        return [tokenizer.decode([i]) for i in (a @ b.T).argmax(-1).tolist()]

    def dot_product(prompt_embeddings, matrix, tokenizer):  # unnormalised: long vectors win
        return [tokenizer.decode([i]) for i in (prompt_embeddings @ matrix.T).argmax(-1).tolist()]

    def euclidean(prompt_embeddings, matrix, tokenizer):
        return [tokenizer.decode([i]) for i in torch.cdist(prompt_embeddings, matrix).argmin(-1).tolist()]

    assert "recovers" in passes(checks.check_ex05_task4, right, base_model, tokenizer)
    for wrong in (dot_product, euclidean):
        message = fails(checks.check_ex05_task4, wrong, base_model, tokenizer, hint="Compare directions only")
        assert "cosine" not in message.lower() and "['" not in message  # neither the method's name nor the expected tokens


TABLE = {"lora": {"trainable": 921_600, "accuracy": 0.96}, "ia3": {"trainable": 46_080, "accuracy": 0.96},
         "prompt_tuning": {"trainable": 9_216, "accuracy": 0.50}, "p_tuning": {"trainable": 101_184, "accuracy": 0.61}}


def test_ex05_task5_ignoring_the_budget_the_smallest_method_and_ties_fail():
    assert "budgets" in passes(checks.check_ex05_task5, ex05._ex05_choice, TABLE)
    fails(checks.check_ex05_task5, lambda t, b: max(t, key=lambda m: t[m]["accuracy"]), TABLE, hint="over the budget")
    fails(checks.check_ex05_task5, lambda t, b: min(t, key=lambda m: t[m]["trainable"]), TABLE, hint="smallest method is not the best")

    def first_on_ties(table, budget):
        fits = [m for m in table if table[m]["trainable"] <= budget]
        return max(fits, key=lambda m: table[m]["accuracy"]) if fits else None

    fails(checks.check_ex05_task5, first_on_ties, TABLE, hint="fewer trainable parameters")


def test_ex05_task2_counting_every_parameter_fails_without_showing_the_count(base_model):
    from ftcourse.course.checks import core

    right = {m: core.peft_trainable(base_model, m) for m in checks.EX05_METHODS}
    assert "prompt_tuning 9,216" in passes(checks.check_ex05_task2, right, base_model)
    total = sum(p.numel() for p in base_model.parameters())
    message = fails(checks.check_ex05_task2, {**right, "ia3": right["ia3"] + total}, base_model, hint="count_parameters(...)['trainable']")
    assert f"{right['ia3']:,}" not in message and str(right["ia3"]) not in message
