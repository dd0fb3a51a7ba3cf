"""Checks of exercise 06, domain adaptation (``solutions/ex06_domain_adaptation.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values, the
outputs of their functions and the files their run wrote into plain data, and a judge that decides. The practice cases
are here; the hidden inputs and expected answers the grader uses are in ``solutions/hidden/ex06.json``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ftcourse.course.checks.core import (
    Case,
    CheckFailed,
    describe,
    expect,
    forbid_source_helpers,
    graded_check,
    is_close,
    output_of,
    outputs_of,
    run_learner,
    workspace_adapter,
    workspace_path,
)

__all__ = [
    "check_ex06_task1", "check_ex06_task2", "check_ex06_task3", "check_ex06_task4", "check_ex06_task5",
    "EX06_QUESTIONS", "EX06_RATIOS", "ex06_samples", "EX06_SHINGLE",
]


def ex06_samples(chars: int = 1200) -> tuple[str, str]:
    """Exercise 06's evaluation texts: the start of the first held-out domain document and of the general text."""
    from ftcourse.course.bundled import domain_texts

    texts = domain_texts()
    return texts["heldout"][0][:chars], texts["general"][0][:chars]


def _ppl_pair(model, tokenizer) -> dict[str, float]:
    from ftcourse.generation import perplexity

    domain, general = ex06_samples()
    return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}


def _expect_ppl(name: str, entry: Any, want: dict[str, float], which: str) -> dict[str, float]:
    """The learner's perplexity dict ``name`` (collected), checked against ``want`` (measured here on ``which`` model)."""
    got, _ = output_of(entry, name)
    expect(isinstance(got, dict) and set(got) == {"domain", "general"} and all(isinstance(v, (int, float)) for v in got.values()),
           f"`{name}` should be a dict of two numbers with keys 'domain' and 'general'.", "use the keys 'domain' (domain_sample) and 'general' (general_sample).")
    for key in want:
        expect(is_close(float(got[key]), want[key], 0.01), f"{name}[{key!r}] is {got[key]:.2f}; {which}'s perplexity on {key}_sample is {want[key]:.2f}.",
               f"perplexity({'result.model' if 'after' in name else 'model'}, tokenizer, [{key}_sample]) with the samples given above.")
    return {k: float(v) for k, v in got.items()}


# ---------------------------------------------------------------- task 1: packing


@graded_check({"inputs": {"cases": [[[[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, 0], [[[5] * 10, [6]], 3, 0], [[[1, 2, 3, 4, 5, 6]], 7, 0],
                                    [[[3, 1], [4, 1, 5, 9]], 3, 2]]}, "expected": {}})
def check_ex06_task1(inputs, pack) -> dict:
    """``pack(token_lists, block_size, eos_id)``: documents joined with EOS after each, cut into blocks; a last block of < 2 tokens dropped."""
    return {"outputs": [run_learner(pack, [list(d) for d in docs], size, eos) for docs, size, eos in inputs["cases"]]}


def _packed(docs: list[list[int]], size: int, eos: int, eos_first: bool = False, min_last: int = 2) -> list[list[int]]:
    stream = [t for doc in docs for t in ([eos, *doc] if eos_first else [*doc, eos])]
    return [b for b in (stream[i : i + size] for i in range(0, len(stream), size)) if len(b) >= min_last]


def _pack_hint(got: Any, docs: list[list[int]], size: int, eos: int) -> str:
    """Why a packing is wrong: the tempting rules, recognised by their result."""
    flat = [t for d in docs for t in d]
    wrongs = [("append eos_id after every document (the model must learn where a document ends), then concatenate everything "
               "into one stream and cut that.", [flat[i : i + size] for i in range(0, len(flat), size) if len(flat[i : i + size]) > 1]),
              ("EOS goes after each document, not before it: it marks where a document ends.", _packed(docs, size, eos, eos_first=True)),
              ("concatenate everything into one stream and cut the stream: blocks cross document boundaries, so no block is padded.",
               [[*d, eos] for d in docs]),
              ("a final block shorter than block_size still has tokens to predict: drop it only when it has fewer than 2 tokens.",
               _packed(docs, size, eos, min_last=size)),
              ("drop a final block shorter than 2 tokens: one token has no next token to predict.", _packed(docs, size, eos, min_last=1)),
              ("use the eos_id you are given: another tokenizer has another EOS id.", _packed(docs, size, 0) if eos else None)]
    return next((h for h, w in wrongs if w is not None and got == w), "append eos_id after every document, concatenate everything into one "
                "stream, cut it every block_size tokens, and drop a final block shorter than 2 tokens.")


@check_ex06_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "pack", {"tokenize_text": "ftcourse.tokenization.tokenize_text", "tokenize_records": "ftcourse.tokenization.tokenize_records"},
                          "pack the token lists yourself: that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "pack", "define def pack(token_lists, block_size, eos_id): ...")
    for number, ((docs, size, eos), (value, _)) in enumerate(zip(cases, outputs), start=1):
        got = [list(b) for b in value] if isinstance(value, list) and all(isinstance(b, list) for b in value) else value
        expect(got == _packed(docs, size, eos), f"`pack` is wrong on {case.kind} case {number} of {len(cases)} "
               f"({len(docs)} documents, block_size={size}, eos_id={eos}).", _pack_hint(got, docs, size, eos))
    return f"right on {len(cases)} {case.kind} cases (the grader runs more); packing wastes no compute on padding."


# ---------------------------------------------------------------- task 2: predict, then measure perplexity


#: Exercise 06, task 2: what to predict about the base model's perplexity on the two samples, before measuring it.
EX06_QUESTIONS = {"harder": "which sample the base model finds harder (the higher perplexity): 'domain' or 'general'",
                  "ratio": "the higher perplexity divided by the lower one, as one of EX06_RATIOS"}
EX06_RATIOS = ("under 1.5", "1.5 to 3", "3 to 10", "over 10")


def _ex06_ratio_bin(ratio: float) -> str:
    return EX06_RATIOS[sum(ratio >= edge for edge in (1.5, 3, 10))]


def _ex06_harder(ppl: dict[str, float]) -> tuple[str, float, float]:
    harder, easier = sorted(ppl, key=ppl.get, reverse=True)
    return harder, ppl[harder] / ppl[easier], math.log(ppl[harder] / ppl[easier])


def _ex06_harder_hint(got: list, ppl: dict[str, float]) -> str:
    """The hint for a wrong how_much_harder: the tempting formulas, recognised by their value."""
    harder, ratio, _ = _ex06_harder(ppl)
    easier = next(k for k in ppl if k != harder)
    if got[0] != harder:
        return "perplexity is how surprised the model is on average: the sample with the higher perplexity is the harder one."
    wrong_ratios = {"divide the harder sample's perplexity by the easier one's: the ratio is at least 1.": 1 / ratio,
                    "a ratio divides: a difference of perplexities means nothing fixed per token.": ppl[harder] - ppl[easier],
                    "divide the perplexities, not their logarithms (the mean losses).": math.log(ppl[harder]) / math.log(ppl[easier])}
    wrong_nats = {"perplexity is exp(mean loss) with the natural logarithm: losses are in nats, so use math.log, not log2 or log10.":
                  (math.log2(ratio), math.log10(ratio)),
                  "the extra loss per token is a difference of mean losses, ln(ppl_harder) - ln(ppl_easier), not their quotient.":
                  (math.log(ppl[harder]) / math.log(ppl[easier]),),
                  "the extra loss per token is in nats: take the logarithm of the ratio (perplexity = exp(mean loss)).": (ratio, ratio - 1)}
    if not is_close(float(got[1]), ratio, 1e-4):
        return next((h for h, v in wrong_ratios.items() if is_close(float(got[1]), v, 1e-4)),
                    "ratio = the harder sample's perplexity / the easier one's.")
    return next((h for h, vs in wrong_nats.items() if any(is_close(float(got[2]), v, 1e-4) for v in vs)),
                "perplexity = exp(mean loss per token), so the mean losses differ by ln(ratio) nats.")


@graded_check({"inputs": {"pairs": [{"domain": 14.0, "general": 35.0}, {"domain": 52.5, "general": 7.5}]}, "expected": {}})
def check_ex06_task2(inputs, predictions, ppl_before, how_much_harder, model, tokenizer) -> dict:
    """``predictions``: EX06_QUESTIONS answered before measuring; ``ppl_before``: {"domain": ..., "general": ...} perplexities
    of the base model on ex06_samples(); ``how_much_harder(ppl)``: (the harder sample, the perplexity ratio harder / easier,
    the extra mean loss per token of the harder one in nats)."""
    measured = dict(ppl_before) if isinstance(ppl_before, dict) else ppl_before
    return {"predictions": describe(predictions), "ppl_before": describe(ppl_before), "on_measured": run_learner(how_much_harder, measured),
            "outputs": [run_learner(how_much_harder, dict(pair)) for pair in inputs["pairs"]]}


def _expect_harder(value: Any, ppl: dict[str, float], what: str, measured: Any = None) -> None:
    """Fail unless ``value`` (how_much_harder's output for ``ppl``) is right; ``measured``: its output on the measured perplexities."""
    expect(isinstance(value, list) and len(value) == 3 and value[0] in ppl and all(isinstance(v, (int, float)) for v in value[1:]),
           f"for {what} how_much_harder returned {str(value)[:80]}.", "return a tuple: (the harder sample's name, the ratio, the extra nats per token).")
    want = _ex06_harder(ppl)
    right = value[0] == want[0] and is_close(float(value[1]), want[1], 1e-4) and abs(float(value[2]) - want[2]) <= 1e-4
    copied = isinstance(measured, list) and value[1:] == measured[1:]  # the printed numbers, whatever the name
    expect(right, f"for {what} how_much_harder is not right: that is not the harder sample, its ratio and its extra loss per token.",
           "it returned what it returned for ppl_before: compute the answer from its argument instead of copying numbers from a "
           "printout (the grader passes other perplexities too)." if copied else _ex06_harder_hint(value, ppl))


@check_ex06_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    predictions, _ = output_of(data.get("predictions"), "predictions")
    expect(isinstance(predictions, dict) and set(predictions) == set(EX06_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX06_QUESTIONS)}.", "one answer per question of EX06_QUESTIONS.")
    expect(predictions["harder"] in ("domain", "general") and predictions["ratio"] in EX06_RATIOS,
           f"your answers are {str(predictions)[:120]}.", f"'harder' is 'domain' or 'general'; 'ratio' one of {EX06_RATIOS}.")
    want = _ppl_pair(case.reference("model"), case.reference("tokenizer"))
    _expect_ppl("ppl_before", data.get("ppl_before"), want, "the base model")
    measured, _ = output_of(data.get("on_measured"), "how_much_harder", "define def how_much_harder(ppl): ...")
    _expect_harder(measured, want, "your ppl_before")
    pairs = case.inputs["pairs"]
    for pair, (value, _) in zip(pairs, outputs_of(data, len(pairs), "how_much_harder", "define def how_much_harder(ppl): ...")):
        _expect_harder(value, pair, f"{case.kind} perplexities", measured)
    harder, ratio, nats = _ex06_harder(want)
    expect(predictions["harder"] == harder, f"you predicted the {predictions['harder']} sample to be harder; the measurement disagrees.",
           "which text could the base model have met in pre-training? It learned general English, but never saw HubOS: its "
           "product names, error codes and menu paths are token sequences it cannot predict. That gap is what continued "
           "pre-training closes.")
    expect(predictions["ratio"] == _ex06_ratio_bin(ratio), f"you predicted a ratio {predictions['ratio']}; the measured ratio is in another bin.",
           "perplexity is exp(mean loss per token), so a ratio of R is ln R nats more loss on every token: a ratio of 2 is "
           "already 0.69 nats, 10 is 2.3 nats. How much less predictable is a manual full of names the model never saw?")
    return (f"the base model finds the {harder} sample {ratio:.1f}× as surprising as the other ({nats:.2f} nats more loss per token), "
            f"as predicted; how_much_harder right on {len(pairs)} {case.kind} pairs too (the grader runs more).")


# ---------------------------------------------------------------- task 3: train on the domain text


def _run_collected(result: Any) -> dict:
    """A RunResult as plain data: its type, method and the run folder named inside the workspace."""
    run_dir = getattr(result, "run_dir", None)
    return {"type": type(result).__name__, "run_dir": workspace_path(run_dir) if run_dir is not None else None}


@graded_check({"inputs": {}, "expected": {}})
def check_ex06_task3(inputs, result, train_records) -> dict:
    """``result``: LoRA trained, packed, on ``train_records`` ({"text": ...}): the domain's training documents, nothing else."""
    return {"result": _run_collected(result), "train_records": describe(train_records)}


def _run_file(case: Case, run_dir: str, name: str) -> bytes:
    data = case.file(f"{run_dir}/{name}")
    expect(data is not None, f"the run folder holds no {name}: it was not saved by fine_tune.",
           "train with fine_tune(...) and let it finish; pass its RunResult.")
    return data


def _fingerprint(record: dict, records: list, packing: bool) -> str:
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.runs import run_fingerprint

    return run_fingerprint(record["base_model"], record["method"], LoraSettings(**record["lora"]), TrainingSettings(**record["training"]),
                           records, packing, None)


def _expect_domain_records(records: Any) -> None:
    """Fail unless ``records`` are plain-text records of exactly the domain's training documents."""
    from ftcourse.course.bundled import domain_texts

    texts = domain_texts()
    expect(isinstance(records, list) and records and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in records),
           "`train_records` should be the list of {'text': ...} records you trained on.",
           "continued pre-training trains on plain text: train_records = [{'text': t} for t in ...].")
    got = [r["text"] for r in records]
    leaked = [t for t in got if t in texts["heldout"]]
    expect(not leaked, f"{len(leaked)} of your training records are held-out documents: the perplexity you measure next would reward memorising them.",
           "train on texts['train'] only: the held-out documents exist to measure what the model learned about the domain, "
           "and a model that has seen them looks better than it is.")
    general = [t for t in got if t in texts["general"]]
    expect(not general, f"{len(general)} of your training records are the general English text.",
           "texts['general'] is not domain text: it is the forgetting probe of task 4, which measures what domain training costs "
           "on text the model should keep predicting. Train on the domain's training documents.")
    missing = [t for t in texts["train"] if t not in got]
    expect(not missing and len(got) == len(texts["train"]),
           f"your records are not the domain's training documents ({len(missing)} of the {len(texts['train'])} are missing, "
           f"{len(got)} records in all).", "one record {'text': t} per document of texts['train'], each once.")


@check_ex06_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from safetensors.torch import load

    records, _ = output_of(data.get("train_records"), "train_records")
    _expect_domain_records(records)
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    expect(result.get("type") == "RunResult" and isinstance(result.get("run_dir"), str),
           f"`result` is a {str(result.get('type'))[:80]} saved outside the course folder, not what fine_tune returns." if result.get("type") == "RunResult"
           else f"`result` is a {str(result.get('type'))[:80]}, not what fine_tune returns.",
           "result = fine_tune(train_records, model=P.model, method='lora', ..., packing=True, run_name='ex06-domain-lora').")
    run_dir = result["run_dir"]
    try:
        record = json.loads(_run_file(case, run_dir, "ftcourse_run.json"))
        metrics = json.loads(_run_file(case, run_dir, "metrics.json"))
        packed, unpacked = _fingerprint(record, records, True), _fingerprint(record, records, False)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckFailed("the run's record cannot be read: the run folder was changed after training.",
                          "train again with fine_tune and do not edit its folder.") from None
    expect(record.get("method") == "lora", f"the run used method {str(record.get('method'))[:40]!r}; the task asks for 'lora'.", "pass method='lora'.")
    expect(record.get("fingerprint") != unpacked, "the run was trained on these records without packing: short documents were padded.",
           "pass packing=True to fine_tune: documents are joined (EOS between them) and cut into full blocks, no padding.")
    expect(record.get("fingerprint") == packed, "`result` was not trained on `train_records` (its run fingerprint does not match them).",
           "pass the same list to fine_tune and to the check; do not change it in between.")
    tensors = load(_run_file(case, run_dir, "adapter_model.safetensors"))
    frozen = [n for n, t in tensors.items() if "lora_B" in n and not t.abs().sum()]
    expect(tensors and not frozen, f"{len(frozen)} of the saved lora_B matrices are still all zero: those layers never learned.",
           "check that the optimizer updates the adapter (learning rate > 0, steps > 0).")
    trained, total = metrics.get("trained_tokens"), metrics.get("input_tokens")
    expect(isinstance(trained, int) and isinstance(total, int) and trained > 0.9 * max(total, 1),
           f"only {trained} of {total} input tokens were trained.", "continued pre-training trains every token: pass records {'text': ...}, not chat messages.")
    return f"{metrics.get('steps')} steps over {total:,} tokens, packed, {100 * trained / total:.0f}% of them trained; only the domain's training documents."


# ---------------------------------------------------------------- task 4: gain and forgetting


@graded_check({"inputs": {}, "expected": {}})
def check_ex06_task4(inputs, ppl_before, ppl_after, forgetting, result, tokenizer) -> dict:
    """``ppl_after``: the trained model's perplexities on ex06_samples(); ``forgetting``: general after / before."""
    return {"ppl_before": describe(ppl_before), "ppl_after": describe(ppl_after), "forgetting": describe(forgetting), "result": _run_collected(result)}


def _trained_model(data: dict, case: Case):
    """The trained model: ``result.model`` in the learner's own kernel, else the grader's base with the run's saved adapter."""
    result = case.objects.get("result")
    if result is not None and hasattr(result, "model"):
        return result.model
    collected = data.get("result") if isinstance(data.get("result"), dict) else {}
    expect(collected.get("type") == "RunResult", f"`result` is a {str(collected.get('type'))[:80]}, not what fine_tune returns.", "pass task 3's result.")
    return workspace_adapter(case, collected.get("run_dir"))


@check_ex06_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    from peft import PeftModel

    model = _trained_model(data, case)
    expect(isinstance(model, PeftModel), "`result.model` is not the adapter model fine_tune trained.", "pass task 3's result unchanged.")
    tokenizer = case.reference("tokenizer")
    after = _ppl_pair(model, tokenizer)
    with model.disable_adapter():
        base = _ppl_pair(model, tokenizer)
    before = _expect_ppl("ppl_before", data.get("ppl_before"), base, "the base model")
    ppl_after = _expect_ppl("ppl_after", data.get("ppl_after"), after, "the trained model")
    expect(after["domain"] < base["domain"], f"domain perplexity did not drop ({base['domain']:.2f} → {after['domain']:.2f}).",
           "train on the domain corpus (task 3) and evaluate result.model.")
    forgetting, _ = output_of(data.get("forgetting"), "forgetting")
    want = ppl_after["general"] / before["general"]
    if isinstance(forgetting, (int, float)) and not is_close(float(forgetting), want, 1e-3):
        wrongs = {"forgetting is measured on the general text (what the model should not lose), not on the domain.": ppl_after["domain"] / before["domain"],
                  "a ratio, after / before: above 1 means general text got harder.": before["general"] / ppl_after["general"],
                  "divide, do not subtract: perplexities compare by ratio (a ratio is a fixed difference of mean losses).": ppl_after["general"] - before["general"]}
        hint = next((h for h, v in wrongs.items() if is_close(float(forgetting), v, 1e-3)), "forgetting = ppl_after['general'] / ppl_before['general'].")
    else:
        hint = "forgetting = ppl_after['general'] / ppl_before['general'] (above 1: general text got harder)."
    expect(isinstance(forgetting, (int, float)) and is_close(float(forgetting), want, 1e-3), f"forgetting is {str(forgetting)[:40]}; it is not general perplexity after / before.", hint)
    return (f"domain perplexity {base['domain']:.1f} → {after['domain']:.1f}; general {base['general']:.1f} → "
            f"{after['general']:.1f} (×{float(forgetting):.3f}).")


# ---------------------------------------------------------------- task 5: held-out text leaking into a corpus


#: Exercise 06, task 5: a shared run of this many words counts as leaked text (GPT-3's contamination analysis used 13-grams).
EX06_SHINGLE = 13
_EX06_HELD = [
              "The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates, and your automations resume within a minute.",
              "To pair a new sensor, hold its button for five seconds until the light blinks blue, then choose Add device in the app.",
              "Motion sensors in a room with pets can be set to ignore small animals by lowering their sensitivity in the device settings page.",
]
_EX06_TRAIN = [
    "Lights can be grouped into rooms; a room can be switched on and off as one.",
    "FAQ: TO PAIR A NEW SENSOR, HOLD ITS BUTTON FOR FIVE SECONDS UNTIL THE LIGHT BLINKS BLUE, THEN CHOOSE ADD DEVICE IN THE APP!",
    "Release notes for version 2.4 with many small changes to the app, the cloud service and the installer. The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates. Other fixes: faster start-up, clearer error messages, a new dark theme and better translations for the settings screens.",
    "Hold the button of a new sensor for five seconds to pair it; choose Add device in the app when the blue light blinks, then.",
    "A reader asks whether motion sensors in a room with pets can be set to ignore small children.",
    "Good news: our sensors in a room with pets can be set to ignore small dogs.",
    "Hold the button to reset a sensor; the light blinks red while it resets.",
    "Tip: glare is reduced by lowering their sensitivity in the device settings page as well.",
]
#: What each practice text is, for n = 13 and for n = 8 (the hidden file labels its own): a leak ("recased", "sentence",
#: "run": a run of exactly n words) or clean ("clean", "shuffled": most words shared in another order, "short": a run of fewer than n).
_EX06_KINDS = [["clean", "recased", "sentence", "shuffled", "run", "short", "clean", "short"],
               ["clean", "recased", "sentence", "shuffled", "run", "run", "clean", "run"]]

_LEAK_HINTS = {
    "recased": "held-out text is often copied with other case or punctuation: compare lower-cased words without punctuation "
               "(re.findall(r'\\w+', text.lower())), not the raw strings.",
    "sentence": "held-out text often comes back as one sentence inside a longer page: the texts as wholes look different (few words in "
                "common overall), but they share a run of n consecutive words. Compare runs, not whole texts or word overlap.",
    "run": "a text that shares a run of exactly n consecutive words with a held-out text is a leak: take every window of n words "
           "(range(len(words) - n + 1)), and use the n you are given.",
}
_CLEAN_HINTS = {
    "clean": "sharing a few words is not a leak (every text about one product does): drop a text only when it shares a run of n words.",
    "shuffled": "a text can share most of its words with a held-out text, in another order, without copying any of it: word overlap "
                "(a bag of words, Jaccard similarity) is not the rule. Drop a text only when it shares a run of n consecutive words.",
    "short": "a shared run shorter than n words is not a leak: compare runs of exactly the n you are given.",
}


@graded_check({"inputs": {"cases": [{"train": _EX06_TRAIN, "held": _EX06_HELD, "n": EX06_SHINGLE}, {"train": _EX06_TRAIN, "held": _EX06_HELD, "n": 8}]},
               "expected": {"kept": [[0, 3, 5, 6, 7], [0, 3, 6]], "kinds": _EX06_KINDS}})
def check_ex06_task5(inputs, remove_leaks) -> dict:
    """``remove_leaks(train_texts, heldout_texts, n=EX06_SHINGLE)``: the training texts sharing no run of n words with a held-out text."""
    return {"outputs": [run_learner(remove_leaks, list(c["train"]), list(c["held"]), n=c["n"]) for c in inputs["cases"]]}


@check_ex06_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "remove_leaks", {"contaminated": "ftcourse.curation.contaminated", "shingles": "ftcourse.curation.shingles",
                                                 "near_duplicates": "ftcourse.curation.near_duplicates"},
                          "compare the runs of n words yourself: that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "remove_leaks", "define def remove_leaks(train_texts, heldout_texts, n=13): ...")
    for number, (c, kept, kinds, (value, _)) in enumerate(zip(cases, case.expected["kept"], case.expected["kinds"], outputs), start=1):
        where = f"on {case.kind} corpus {number} of {len(cases)} (n={c['n']})"
        expect(isinstance(value, list) and all(isinstance(t, str) for t in value), f"{where} `remove_leaks` returns no list of texts.",
               "return the training texts you keep, in order.")
        leaks_kept = [kinds[i] for i, t in enumerate(c["train"]) if i not in kept and t in value]
        clean_dropped = [kinds[i] for i in kept if c["train"][i] not in value]
        expect("shuffled" not in clean_dropped, f"{where} you drop a clean text that shares no run of n words with a held-out text.", _CLEAN_HINTS["shuffled"])
        expect(not leaks_kept, f"{where} you keep {len(leaks_kept)} text(s) that share a run of n words with a held-out text.",
               _LEAK_HINTS.get(leaks_kept[0], "") if leaks_kept else "")
        expect(not clean_dropped, f"{where} you drop {len(clean_dropped)} clean text(s): they share no run of n words with a held-out text.",
               _CLEAN_HINTS.get(clean_dropped[0], _CLEAN_HINTS["clean"]) if clean_dropped else "")
        expect(value == [c["train"][i] for i in kept], f"{where} your result has the right texts but in another order, or extra ones.",
               "keep the clean training texts in their order, each once.")
    return f"finds every leak and keeps every clean text of {len(cases)} {case.kind} corpora (the grader's hold near misses on both sides)."
