"""Planted wrong answers of exercise 06: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ftcourse.configs import LoraSettings, TrainingSettings
from ftcourse.course import checks
from ftcourse.course.bundled import domain_texts
from ftcourse.course.checks import ex06
from ftcourse.generation import perplexity
from ftcourse.runs import RUN_RECORD, RunResult, run_fingerprint
from tests.planted import fails, tiny_llama

# ---------------------------------------------------------------- ex06


def _pack(token_lists, block_size, eos_id):
    stream = [t for ids in token_lists for t in [*ids, eos_id]]
    return [b for b in (stream[i : i + block_size] for i in range(0, len(stream), block_size)) if len(b) > 1]


def test_ex06_task1_no_eos_padding_and_kept_stubs_fail():
    assert "hidden cases" in checks.check_ex06_task1.verify(_pack)
    fails(checks.check_ex06_task1, lambda d, s, e: [b for b in (sum(d, [])[i : i + s] for i in range(0, len(sum(d, [])), s)) if len(b) > 1], hint="append eos_id")
    fails(checks.check_ex06_task1, lambda d, s, e: [[*doc, e] for doc in d], hint="concatenate everything")
    fails(checks.check_ex06_task1, lambda d, s, e: [b for b in (_pack(d, s, e) + [[e]])], hint="drop a final block")


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
    fails(checks.check_ex06_task3, _run(tmp_path / "leak", everything, True), everything, hint="held-out documents exist to measure")
    fails(checks.check_ex06_task3, _run(tmp_path / "unpacked", train, False), train, hint="packing=True")
    fails(checks.check_ex06_task3, _run(tmp_path / "other", train, True, trained_on=everything), train, hint="not trained on `train_records`")
    chat = [{"messages": [{"role": "user", "content": t}]} for t in texts["train"]]
    fails(checks.check_ex06_task3, _run(tmp_path / "ok", train, True), chat, hint="plain text")


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

    fails(checks.check_ex06_task5, exact, hint="exact-match test misses leaks")
    fails(checks.check_ex06_task5, shared_words, hint="sharing a few words is not a leak")
    fails(checks.check_ex06_task5, case_sensitive, hint="lower-cased")


def _how_much_harder(ppl, ratio=lambda h, e: h / e, nats=lambda r, h, e: math.log(r), lower_is_harder=False):
    harder, easier = sorted(ppl, key=ppl.get, reverse=not lower_is_harder)
    r = ratio(ppl[harder], ppl[easier])
    return harder, r, nats(r, ppl[harder], ppl[easier])


def test_ex06_task2_a_wrong_prediction_fails_with_a_reason_and_a_different_samplefails(base_model, tokenizer):
    domain, general = checks.ex06_samples()
    right = {"domain": perplexity(base_model, tokenizer, [domain], progress=False), "general": perplexity(base_model, tokenizer, [general], progress=False)}
    harder, ratio = max(right, key=right.get), max(right.values()) / min(right.values())
    edges = (1.5, 3, 10)
    predicted = {"harder": harder, "ratio": checks.EX06_RATIOS[sum(ratio >= e for e in edges)]}
    assert harder == "domain" and "as predicted" in checks.check_ex06_task2.verify(predicted, right, _how_much_harder, base_model, tokenizer)
    message = fails(checks.check_ex06_task2, {**predicted, "harder": "general"}, right, _how_much_harder, base_model, tokenizer, hint="never saw HubOS")
    assert f"{right['domain']:.1f}" not in message and f"{right['general']:.1f}" not in message
    other_bin = next(b for b in checks.EX06_RATIOS if b != predicted["ratio"])
    message = fails(checks.check_ex06_task2, {**predicted, "ratio": other_bin}, right, _how_much_harder, base_model, tokenizer, hint="ln R nats")
    assert f"{ratio:.1f}" not in message and predicted["ratio"] not in message  # the reason, never the measured bin
    fails(checks.check_ex06_task2, {**predicted, "ratio": "about 2"}, right, _how_much_harder, base_model, tokenizer, hint="one of")
    fails(checks.check_ex06_task2, {"harder": "domain"}, right, _how_much_harder, base_model, tokenizer, hint="one answer per question")
    fails(checks.check_ex06_task2, predicted, {"domain": right["general"], "general": right["domain"]}, _how_much_harder, base_model, tokenizer,
           hint="with the samples given above")
    fails(checks.check_ex06_task2, predicted, {"domain": math.log(right["domain"]), "general": math.log(right["general"])}, _how_much_harder,
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
        fails(checks.check_ex06_task2, predicted, right, how_much_harder, base_model, tokenizer, hint=hint)


def test_ex06_task4_the_base_models_perplexity_inverted_forgetting_and_no_gain_fail(base_model, tokenizer):
    domain, general = checks.ex06_samples()

    def ppl(model):
        return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}

    trained = tiny_llama(tokenizer)  # stands in for the trained model: the check measures whatever result.model is
    after = ppl(trained)
    before = {"domain": 2 * after["domain"], "general": 0.5 * after["general"]}  # a domain gain, and forgetting
    result = RunResult("run", "lora", trained, None, Path("unused"), {}, [])
    assert "×2.000" in checks.check_ex06_task4.verify(before, after, after["general"] / before["general"], result, tokenizer)
    base = ppl(base_model)  # measured the base model again instead of result.model
    fails(checks.check_ex06_task4, before, base, base["general"] / before["general"], result, tokenizer, hint="perplexity(model, tokenizer")
    fails(checks.check_ex06_task4, before, after, before["general"] / after["general"], result, tokenizer, hint="ppl_after['general'] / ppl_before['general']")
    no_gain = {**before, "domain": 0.5 * after["domain"]}
    fails(checks.check_ex06_task4, no_gain, after, after["general"] / no_gain["general"], result, tokenizer, hint="did not drop")
