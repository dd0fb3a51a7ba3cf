"""Planted wrong answers of exercise 06: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import json
import math
import re
import shutil
import uuid
from pathlib import Path

import pytest
import torch

from ftcourse import paths
from ftcourse.configs import LoraSettings, TrainingSettings
from ftcourse.course import checks
from ftcourse.course.bundled import domain_texts
from ftcourse.curation import contaminated
from ftcourse.generation import perplexity
from ftcourse.runs import RUN_RECORD, RunResult, run_fingerprint
from ftcourse.tokenization import tokenize_text
from tests.planted import fails, passes, tiny_llama

# ---------------------------------------------------------------- ex06


def _pack(token_lists, block_size, eos_id, eos_first=False, keep_last=2):
    stream = [t for ids in token_lists for t in ([eos_id, *ids] if eos_first else [*ids, eos_id])]
    return [b for b in (stream[i : i + block_size] for i in range(0, len(stream), block_size)) if len(b) >= keep_last]


def _pack_with_helper(token_lists, block_size, eos_id):
    return [b["input_ids"] for b in tokenize_text(None, token_lists, block_size, packing=True)]


def test_ex06_task1_no_eos_eos_first_per_document_dropped_remainder_kept_stubs_and_a_fixed_eos_fail():
    assert "right on 4 practice cases" in passes(checks.check_ex06_task1, _pack)
    fails(checks.check_ex06_task1, lambda d, s, e: [b for b in (sum(d, [])[i : i + s] for i in range(0, len(sum(d, [])), s)) if len(b) > 1], hint="append eos_id after every document")
    fails(checks.check_ex06_task1, lambda d, s, e: _pack(d, s, e, eos_first=True), hint="not before it")
    fails(checks.check_ex06_task1, lambda d, s, e: [[*doc, e] for doc in d], hint="blocks cross document boundaries")
    fails(checks.check_ex06_task1, lambda d, s, e: _pack(d, s, e, keep_last=s), hint="drop it only when it has fewer than 2 tokens")  # group_texts' rule
    fails(checks.check_ex06_task1, lambda d, s, e: _pack(d, s, e, keep_last=1), hint="one token has no next token")
    fails(checks.check_ex06_task1, lambda d, s, e: _pack(d, s, 0), hint="use the eos_id you are given")
    fails(checks.check_ex06_task1, _pack_with_helper, hint="calls `tokenize_text`")


@pytest.fixture
def run_root():
    """A folder under the course folder for saved runs (the checks read run files inside the workspace only); removed afterwards."""
    root = paths.fine_tuned_dir() / f"pytest-ex06-{uuid.uuid4().hex[:8]}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _run(folder: Path, records: list[dict], packing: bool, trained_on: list[dict] | None = None, zero_b: bool = False) -> RunResult:
    """A saved LoRA run of a tiny Llama whose run record says it trained on ``trained_on`` (default ``records``) with ``packing``."""
    from peft import get_peft_model

    from ftcourse.configs import settings_dict
    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import tiny_model

    model = tiny_model("llama")
    lora, settings = LoraSettings(r=4, target_modules=["q_proj", "v_proj"]), TrainingSettings(max_steps=2, max_seq_length=128)
    peft = get_peft_model(model, build_peft_config("lora", model, lora))
    for name, p in peft.named_parameters():
        if "lora_B" in name and not zero_b:
            torch.nn.init.normal_(p)
    peft.save_pretrained(folder)
    key = run_fingerprint("embedded", "lora", lora, settings, trained_on or records, packing, None)
    (folder / RUN_RECORD).write_text(json.dumps({"base_model": "embedded", "method": "lora", "fingerprint": key, "lora": settings_dict(lora),
                                                 "training": settings_dict(settings)}))
    metrics = {"trained_tokens": 990, "input_tokens": 1000, "steps": 2}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return RunResult("run", "lora", peft, None, folder, metrics, [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.9}])


def test_ex06_task3_held_out_text_the_forgetting_probe_a_subset_no_packing_and_other_records_fail(run_root, tmp_path):
    texts = domain_texts()
    train = [{"text": t} for t in texts["train"]]
    assert "only the domain's training documents" in passes(checks.check_ex06_task3, _run(run_root / "ok", train, True), train)
    everything = train + [{"text": t} for t in texts["heldout"]]
    fails(checks.check_ex06_task3, _run(run_root / "leak", everything, True), everything, hint="held-out documents exist to measure")
    general = [{"text": t} for t in texts["general"]]
    fails(checks.check_ex06_task3, _run(run_root / "general", general, True), general, hint="forgetting probe of task 4")
    fails(checks.check_ex06_task3, _run(run_root / "mixed", train + general, True), train + general, hint="forgetting probe of task 4")
    fails(checks.check_ex06_task3, _run(run_root / "some", train[:3], True), train[:3], hint="one record {'text': t} per document")
    fails(checks.check_ex06_task3, _run(run_root / "unpacked", train, False), train, hint="packing=True")
    fails(checks.check_ex06_task3, _run(run_root / "other", train, True, trained_on=train[::-1]), train, hint="not trained on `train_records`")
    fails(checks.check_ex06_task3, _run(run_root / "untrained", train, True, zero_b=True), train, hint="never learned")
    chat = [{"messages": [{"role": "user", "content": t}]} for t in texts["train"]]
    fails(checks.check_ex06_task3, _run(run_root / "ok", train, True), chat, hint="plain text")
    fails(checks.check_ex06_task3, _run(tmp_path, train, True), train, hint="outside the course folder")


def _runs_of(text, n):
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _remove_leaks(train, held, n=13, width=None):
    bad = set().union(*(_runs_of(h, width or n) for h in held))
    return [t for t in train if not _runs_of(t, width or n) & bad]


def test_ex06_task5_exact_matching_shared_words_jaccard_a_fixed_n_and_the_course_helper_fail():
    assert "finds every leak" in passes(checks.check_ex06_task5, _remove_leaks)

    def exact(train, held, n=13):
        return [t for t in train if t not in held]

    def shared_words(train, held, n=13):
        words = {w for h in held for w in h.lower().split()}
        return [t for t in train if not {w for w in t.lower().split()} & words]

    def many_shared_words(train, held, n=13):
        return [t for t in train if max(len(set(re.findall(r"\w+", t.lower())) & set(re.findall(r"\w+", h.lower()))) for h in held) < n]

    def jaccard(train, held, n=13):
        def similar(a, b):
            a, b = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
            return len(a & b) / len(a | b) >= 0.5

        return [t for t in train if not any(similar(t, h) for h in held)]

    def case_sensitive(train, held, n=13):
        def runs(text):
            w = text.split()
            return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

        bad = set().union(*(runs(h) for h in held))
        return [t for t in train if not runs(t) & bad]

    def with_helper(train, held, n=13):
        return [t for i, t in enumerate(train) if i not in contaminated(train, held, n)]

    fails(checks.check_ex06_task5, exact, hint="other case or punctuation")
    fails(checks.check_ex06_task5, shared_words, hint="word overlap")
    fails(checks.check_ex06_task5, many_shared_words, hint="word overlap")
    fails(checks.check_ex06_task5, jaccard, hint="word overlap")
    fails(checks.check_ex06_task5, case_sensitive, hint="lower-cased")
    fails(checks.check_ex06_task5, lambda train, held, n=13: _remove_leaks(train, held, 13), hint="use the n you are given")
    fails(checks.check_ex06_task5, lambda train, held, n=13: _remove_leaks(train, held, n, width=n + 1), hint="a run of exactly n")
    fails(checks.check_ex06_task5, with_helper, hint="calls `contaminated`")
    normalised = lambda train, held, n=13: [t for t in train if re.findall(r"\w+", t.lower()) not in [re.findall(r"\w+", h.lower()) for h in held]]  # noqa: E731
    fails(checks.check_ex06_task5, normalised, hint="other case or punctuation")  # whole texts compared, normalised
    message = fails(checks.check_ex06_task5, jaccard, hint="word overlap")
    assert "[" not in message and "Hold the button" not in message  # never the expected list, nor which text it is


def _how_much_harder(ppl, ratio=lambda h, e: h / e, nats=lambda r, h, e: math.log(r), lower_is_harder=False):
    harder, easier = sorted(ppl, key=ppl.get, reverse=not lower_is_harder)
    r = ratio(ppl[harder], ppl[easier])
    return harder, r, nats(r, ppl[harder], ppl[easier])


def _measured(model, tokenizer) -> dict[str, float]:
    domain, general = checks.ex06_samples()
    return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}


def test_ex06_task2_a_wrong_prediction_fails_with_a_reason_and_a_different_samplefails(base_model, tokenizer):
    right = _measured(base_model, tokenizer)
    harder, ratio = max(right, key=right.get), max(right.values()) / min(right.values())
    edges = (1.5, 3, 10)
    predicted = {"harder": harder, "ratio": checks.EX06_RATIOS[sum(ratio >= e for e in edges)]}
    assert harder == "domain" and "as predicted" in passes(checks.check_ex06_task2, predicted, right, _how_much_harder, base_model, tokenizer)
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


def test_ex06_task2_wrong_ratios_wrong_logarithms_and_a_copied_printout_fail(tokenizer):
    model = tiny_llama(tokenizer)  # how_much_harder is judged before the predictions, on whatever model the check measures
    right = _measured(model, tokenizer)
    predicted = {"harder": "domain", "ratio": "3 to 10"}
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
        (lambda ppl: _how_much_harder(ppl, nats=lambda r, h, e: r - 1), "take the logarithm of the ratio"),
        (lambda ppl: printed, "copying numbers from a printout"),  # right on ppl_before only
        (lambda ppl: (max(ppl, key=ppl.get), *printed[1:]), "copying numbers from a printout"),  # the printed numbers, the name from the argument
        (lambda ppl: {"harder": "domain"}, "return a tuple"),
    ]
    for how_much_harder, hint in cases:
        fails(checks.check_ex06_task2, predicted, right, how_much_harder, model, tokenizer, hint=hint)


def _domain_trained(tokenizer, ascent: bool = False):
    """A tiny Llama with a LoRA adapter trained a few steps on the domain sample (``ascent``: to raise its loss instead)."""
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config
    from tests.tiny import tiny_model

    base = tiny_model("llama", vocab_size=len(tokenizer))
    model = get_peft_model(base, build_peft_config("lora", base, LoraSettings(r=8, target_modules=["q_proj", "v_proj"])))
    ids = tokenizer(checks.ex06_samples()[0], return_tensors="pt")["input_ids"][:, :64]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(15):
        optimizer.zero_grad()
        ((-1 if ascent else 1) * model(input_ids=ids, labels=ids).loss).backward()
        optimizer.step()
    return model.eval()


def test_ex06_task4_the_base_models_perplexity_a_domain_ratio_inverted_or_subtracted_forgetting_and_no_gain_fail(tokenizer):
    trained = _domain_trained(tokenizer)
    after = _measured(trained, tokenizer)
    with trained.disable_adapter():
        before = _measured(trained, tokenizer)
    result = RunResult("run", "lora", trained, None, Path("unused"), {}, [])
    assert "domain perplexity" in passes(checks.check_ex06_task4, before, after, after["general"] / before["general"], result, tokenizer)
    fails(checks.check_ex06_task4, before, before, 1.0, result, tokenizer, hint="perplexity(result.model")  # the base model measured again
    fails(checks.check_ex06_task4, after, after, 1.0, result, tokenizer, hint="perplexity(model")  # ppl_before measured on the trained model
    fails(checks.check_ex06_task4, before, after, before["general"] / after["general"], result, tokenizer, hint="above 1 means general text got harder")
    fails(checks.check_ex06_task4, before, after, after["domain"] / before["domain"], result, tokenizer, hint="measured on the general text")
    fails(checks.check_ex06_task4, before, after, after["general"] - before["general"], result, tokenizer, hint="divide, do not subtract")
    noisy = _domain_trained(tokenizer, ascent=True)
    worse = _measured(noisy, tokenizer)
    with noisy.disable_adapter():
        base = _measured(noisy, tokenizer)
    fails(checks.check_ex06_task4, base, worse, worse["general"] / base["general"], RunResult("run", "lora", noisy, None, Path("unused"), {}, []),
          tokenizer, hint="did not drop")
