"""Planted wrong answers of exercise 04: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from ftcourse import paths
from ftcourse.configs import LoraSettings
from ftcourse.course import checks
from ftcourse.course.checks import core
from ftcourse.memory import footprint_bytes
from ftcourse.runs import RunResult
from tests.planted import fails, passes
from tests.saved_runs import write_run_record

# ---------------------------------------------------------------- ex04


def test_ex04_task1_bits_as_bytes_and_decimal_megabytes_fail():
    assert "3 practice cases" in passes(checks.check_ex04_task1, lambda n, bits: n * bits / 8 / 2**20)
    assert "13 GiB" not in fails(checks.check_ex04_task1, lambda n, bits: n * bits / 2**20, hint="bits / 8")  # no expected value
    fails(checks.check_ex04_task1, lambda n, bits: n * bits / 2**20, hint="bits / 8")
    fails(checks.check_ex04_task1, lambda n, bits: n * bits / 8 / 1e6, hint="2**20")


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
    fails(checks.check_ex04_task3, float((right - noisy).abs().mean()), agree, base_model, q, tokenizer, hint=".abs().max()")
    fails(checks.check_ex04_task3, gap, agree - 0.5, base_model, q, tokenizer, hint="argmax(-1)")


def _predict_4bit(model, quantize_head=False, other_bytes=None, everything=False):
    head = model.get_output_embeddings().weight
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear) and (quantize_head or m.weight is not head)}
    return sum(p.numel() / 2 if everything or id(p) in linear else p.numel() * (other_bytes or p.element_size()) for p in model.parameters())


def test_ex04_task2_quantized_embeddings_a_quantized_head_16_bit_rest_loading_and_a_copied_number_fail(base_model):
    from ftcourse.models import load_model

    qmodel = load_model("embedded", quantization="4bit")
    assert "as predicted" in checks.check_ex04_task2.verify(qmodel, base_model, _predict_4bit)
    fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, everything=True), hint="embeddings and norms keep their dtype")
    fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, quantize_head=True), hint="leaves the output layer")
    fails(checks.check_ex04_task2, qmodel, base_model, lambda m: _predict_4bit(m, other_bytes=2), hint="not 2 bytes")

    def by_loading(m):
        return load_model("embedded", quantization="4bit").get_memory_footprint()

    def by_the_memory_helper(m):
        return footprint_bytes(m) / 3

    fails(checks.check_ex04_task2, qmodel, base_model, by_loading, hint="loading (or measuring) the 4-bit model is the measurement")
    fails(checks.check_ex04_task2, qmodel, base_model, by_the_memory_helper, hint="calls `footprint_bytes`")
    printed = qmodel.get_memory_footprint()
    fails(checks.check_ex04_task2, qmodel, base_model, lambda m: printed, hint="model with its own output layer")
    fails(checks.check_ex04_task2, base_model, base_model, _predict_4bit, hint="no 4-bit linear layers")


@pytest.fixture(scope="module")
def qlora_run(tokenizer):
    """A QLoRA RunResult on a tiny Llama loaded in 4-bit NF4: its adapter saved with trained (non-zero) lora_B, in a folder
    under models/fine_tuned (the judge reads the run's files from the course folder, as the grader from the workspace)."""
    paths.fine_tuned_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="test-ex04-", dir=paths.fine_tuned_dir()) as name:
        yield _qlora_run(Path(name), tokenizer)


def _qlora_run(folder: Path, tokenizer) -> RunResult:
    from peft import get_peft_model

    from ftcourse.models import load_model
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import save_tiny

    base = load_model(str(save_tiny("llama", folder / "base", tokenizer, vocab_size=len(tokenizer))), quantization="4bit")
    settings = LoraSettings(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, build_peft_config("lora", base, settings))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    model.save_pretrained(folder / "run")
    write_run_record(folder / "run", "qlora")
    (folder / "run" / "metrics.json").write_text("{}")  # fine_tune writes it beside the record
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
    assert "all three predictions" in passes(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, _measure)
    for key, wrong, hint in (("trainable_parameters", "smaller", "Ask whether storing the frozen weight W in 4 bits"),
                             ("adapter_file", "smaller", "the dtype of the matmuls, not of the LoRA weights"),
                             ("base_memory", "same", "packs the linear weights of the blocks two per byte")):
        message = fails(checks.check_ex04_task4, qlora_run, {**_EX04_RIGHT, key: wrong}, _measure, hint=hint)
        assert f"'{_EX04_RIGHT[key]}'" not in message  # the reason, never the answer to pick
    fails(checks.check_ex04_task4, qlora_run, {**_EX04_RIGHT, "base_memory": "much smaller"}, _measure, hint="answer with one of")
    fails(checks.check_ex04_task4, qlora_run, {"trainable_parameters": "same"}, _measure, hint="one answer per question")
    write_run_record(qlora_run.run_dir, "qlora", split="validation")
    try:
        fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, _measure, hint="trained on the validation split")
    finally:
        write_run_record(qlora_run.run_dir, "qlora")


def test_ex04_task4_measuring_by_assumption_or_a_copied_printoutfails(qlora_run):
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
        fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, measure, hint=hint)
    printed = _measure(qlora_run.model, qlora_run.run_dir)  # numbers copied from the printout: right on the run only
    assert "on a practice" in fails(checks.check_ex04_task4, qlora_run, _EX04_RIGHT, lambda m, d: printed, hint="copying numbers from a printout")


def test_ex04_task5_weights_only_14_or_20_bytes_no_headroom_and_gigabytes_fail():
    """The rule of thumb of the exercise's text passes: its choices match the course's memory model on every hidden case."""
    rule_of_thumb = {"full": 16.0, "lora": 2.0, "qlora": 4.127 / 8}

    def rule(bytes_per_param, usable=checks.EX04_USABLE, gib=2**30):
        def choose(n_params, gpu_gib):
            return next((m for m in ("full", "lora", "qlora") if n_params * bytes_per_param[m] <= usable * gpu_gib * gib), "none")
        return choose

    assert "practice (model, GPU) pairs" in passes(checks.check_ex04_task5, rule(rule_of_thumb))
    weights_only = rule({"full": 2.0, "lora": 2.0, "qlora": 0.5})
    for full in (14.0, 20.0):  # issue 31: full fine-tuning at 14 or 20 bytes per parameter passed
        message = fails(checks.check_ex04_task5, rule({**rule_of_thumb, "full": full}), hint=f"not {full:.0f}")
        assert "want" not in message
    fails(checks.check_ex04_task5, weights_only, hint="16 bytes per parameter")
    fails(checks.check_ex04_task5, rule(rule_of_thumb, usable=1.0), hint="keep 20%")
    fails(checks.check_ex04_task5, rule(rule_of_thumb, gib=1e9), hint="2**30")
    fails(checks.check_ex04_task5, lambda n, g: "qlora", hint="full → lora → qlora")


def test_a_functions_parameters_and_variables_are_not_the_globals_of_those_names():
    """``predict_4bit_bytes(model)`` beside a notebook's ``model = load_model(...)``: the parameter is not the loaded model."""
    setup = "from ftcourse.models import load_model\nmodel = load_model('embedded')"
    helpers = {"load_model": "ftcourse.models.load_model"}
    assert core.source_helper((setup, "def f(model):\n    return sum(p.numel() for p in model.parameters())"), "f", helpers) is None
    assert core.source_helper((setup, "def f(m):\n    return model.get_memory_footprint()"), "f", helpers) == "load_model"
    local = "def f(model):\n    head = model.lm_head\n    return sum(p.numel() for p in model.parameters() if p is not head)"
    assert core.source_helper((setup, local), "f", helpers) is None  # nor is a variable of the function
    assert core.source_helper((setup, "def f(m):\n    q = load_model('x')\n    return q.get_memory_footprint()"), "f", helpers) == "load_model"
