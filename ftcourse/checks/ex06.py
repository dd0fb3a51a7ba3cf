"""Checks of exercise 06, domain adaptation (``solutions/ex06_domain_adaptation.ipynb``)."""

from __future__ import annotations

import re

from ftcourse.checks.core import _close, _trained_adapter, _trained_on, call_learner, expect, self_check

__all__ = ["ex06_samples", "check_ex06_task1", "EX06_QUESTIONS", "EX06_RATIOS", "check_ex06_task2", "check_ex06_task3",
           "check_ex06_task4", "EX06_SHINGLE", "check_ex06_task5"]


def ex06_samples(chars: int = 1200) -> tuple[str, str]:
    """Exercise 06's evaluation texts: the start of the first held-out domain document and of the general text."""
    from ftcourse.bundled import domain_texts

    texts = domain_texts()
    return texts["heldout"][0][:chars], texts["general"][0][:chars]


def _ppl_pair(model, tokenizer) -> dict[str, float]:
    from ftcourse.generation import perplexity

    domain, general = ex06_samples()
    return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}


def _expect_ppl(name: str, got, want: dict[str, float]) -> None:
    expect(isinstance(got, dict) and set(got) == {"domain", "general"}, f"`{name}` should be a dict with keys 'domain' and 'general'.",
           "use the keys 'domain' (domain_sample) and 'general' (general_sample).")
    for key in want:
        expect(_close(float(got[key]), want[key], 0.01), f"{name}[{key!r}] is {got[key]:.2f}; the model's perplexity on {key}_sample is {want[key]:.2f}.",
               f"perplexity(model, tokenizer, [{key}_sample]) with the samples given above.")


_PACK_CASES = [([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4), ([[5] * 10, [6]], 3), ([[1, 2, 3, 4, 5, 6]], 7)]


@self_check
def check_ex06_task1(pack) -> str:
    """``pack(token_lists, block_size, eos_id)``: documents joined with EOS after each, cut into blocks; a last block of < 2 tokens dropped."""
    expect(callable(pack), "`pack` is not a function.", "define def pack(token_lists, block_size, eos_id): ...")
    eos = 0
    for docs, size in _PACK_CASES:
        stream = [t for doc in docs for t in [*doc, eos]]
        want = [stream[i : i + size] for i in range(0, len(stream), size) if len(stream[i : i + size]) > 1]
        got = [list(b) for b in pack([list(d) for d in docs], size, eos)]
        expect(got == want, f"pack({docs}, block_size={size}, eos_id=0) = {got}; want {want}.",
               "append eos_id after every document, concatenate everything into one stream, cut it every block_size tokens, "
               "and drop a final block shorter than 2 tokens (nothing to predict).")
    return f"right on {len(_PACK_CASES)} hidden cases; packing wastes no compute on padding."


#: Exercise 06, task 2: what to predict about the base model's perplexity on the two samples, before measuring it.
EX06_QUESTIONS = {"harder": "which sample the base model finds harder (the higher perplexity): 'domain' or 'general'",
                  "ratio": "the higher perplexity divided by the lower one, as one of EX06_RATIOS"}
EX06_RATIOS = ("under 1.5", "1.5 to 3", "3 to 10", "over 10")


def _ex06_ratio_bin(ratio: float) -> str:
    return EX06_RATIOS[sum(ratio >= edge for edge in (1.5, 3, 10))]


@self_check
def check_ex06_task2(predictions, ppl_before, model, tokenizer) -> str:
    """``predictions``: EX06_QUESTIONS answered before measuring; ``ppl_before``: {"domain": ..., "general": ...} perplexities
    of the base model on ex06_samples()."""
    expect(isinstance(predictions, dict) and set(predictions) == set(EX06_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX06_QUESTIONS)}.", "one answer per question of EX06_QUESTIONS.")
    expect(predictions["harder"] in ("domain", "general") and predictions["ratio"] in EX06_RATIOS,
           f"your answers are {predictions}.", f"'harder' is 'domain' or 'general'; 'ratio' one of {EX06_RATIOS}.")
    want = _ppl_pair(model, tokenizer)
    _expect_ppl("ppl_before", ppl_before, want)
    harder = max(want, key=want.get)
    ratio = max(want.values()) / min(want.values())
    expect(predictions["harder"] == harder, f"you predicted the {predictions['harder']} sample to be harder; the base model's perplexity is "
           f"{want['domain']:.1f} on the domain sample and {want['general']:.1f} on the general one.",
           "the base model learned general English in pre-training, but never saw HubOS: its product names, error codes and menu "
           "paths are token sequences it cannot predict. That gap is what continued pre-training closes.")
    expect(predictions["ratio"] == _ex06_ratio_bin(ratio), f"you predicted a ratio {predictions['ratio']}; it is {ratio:.1f}.",
           "perplexity is exp(mean loss per token), so a ratio of R is a difference of ln R nats per token: a ratio of 2 is already "
           "0.69 nats — every token of the harder text is noticeably less predictable.")
    return f"the base model finds the product docs {want['domain'] / want['general']:.1f}× as surprising as general text, as predicted."


def _norm_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = _norm_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _leaks(texts, heldout, n: int = 13) -> list[int]:
    """Indices of ``texts`` that share a run of ``n`` words (case and punctuation ignored) with a held-out text."""
    held = set().union(*(_shingles(h, n) for h in heldout)) if heldout else set()
    return [i for i, t in enumerate(texts) if _shingles(t, n) & held]


@self_check
def check_ex06_task3(result, train_records) -> str:
    """``result``: LoRA trained, packed, on ``train_records`` ({"text": ...}); none of them from the held-out documents."""
    from ftcourse.bundled import domain_texts

    expect(isinstance(train_records, list) and train_records and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in train_records),
           "`train_records` should be the list of {'text': ...} records you trained on.",
           "continued pre-training trains on plain text: train_records = [{'text': t} for t in ...].")
    leaked = _leaks([r["text"] for r in train_records], domain_texts()["heldout"])
    expect(not leaked, f"{len(leaked)} of your training records contain held-out text: the perplexity you measure next would reward memorising it.",
           "train on texts['train'] only: the held-out documents exist to measure what the model learned about the domain, "
           "and a model that has seen them looks better than it is.")
    _trained_adapter(result, "lora", loss_must_drop=False)
    if not _trained_on(result, train_records, packing=True):
        expect(not _trained_on(result, train_records), "the run was trained on these records without packing: short documents were padded.",
               "pass packing=True to fine_tune: documents are joined (EOS between them) and cut into full blocks, no padding.")
        expect(False, "`result` was not trained on `train_records` (its run fingerprint does not match them).",
               "pass the same list to fine_tune and to the check; do not change it in between.")
    metrics = result.metrics
    share = metrics["trained_tokens"] / max(metrics["input_tokens"], 1)
    expect(share > 0.9, f"only {metrics['trained_tokens']:,} of {metrics['input_tokens']:,} input tokens were trained.",
           "continued pre-training trains every token: pass records {'text': ...}, not chat messages.")
    return (f"{metrics['steps']} steps over {metrics['input_tokens']:,} tokens, packed, {100 * share:.0f}% of them trained; "
            "no held-out text in the training data.")


@self_check
def check_ex06_task4(ppl_before, ppl_after, forgetting, result, tokenizer) -> str:
    """``ppl_after``: the trained model's perplexities on ex06_samples(); ``forgetting``: general after / before."""
    want = _ppl_pair(result.model, tokenizer)
    _expect_ppl("ppl_after", ppl_after, want)
    expect(want["domain"] < ppl_before["domain"], f"domain perplexity did not drop ({ppl_before['domain']:.2f} → {want['domain']:.2f}).",
           "train on the domain corpus (task 3) and evaluate result.model.")
    expect(isinstance(forgetting, (int, float)) and _close(float(forgetting), want["general"] / ppl_before["general"], 1e-3),
           f"forgetting is {forgetting}; general perplexity after / before is {want['general'] / ppl_before['general']:.3f}.",
           "forgetting = ppl_after['general'] / ppl_before['general'] (above 1: general text got harder).")
    return (f"domain perplexity {ppl_before['domain']:.1f} → {want['domain']:.1f}; general {ppl_before['general']:.1f} → "
            f"{want['general']:.1f} (×{forgetting:.3f}).")


#: Exercise 06, task 5: a shared run of this many words counts as leaked text (GPT-3's contamination analysis used 13-grams).
EX06_SHINGLE = 13
_EX06_HELD = ["The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates, and your automations resume within a minute.",
              "To pair a new sensor, hold its button for five seconds until the light blinks blue, then choose Add device in the app."]
_EX06_TRAIN = [
    "Lights can be grouped into rooms; a room can be switched on and off as one.",  # clean
    "FAQ: TO PAIR A NEW SENSOR, HOLD ITS BUTTON FOR FIVE SECONDS UNTIL THE LIGHT BLINKS BLUE, THEN CHOOSE ADD DEVICE IN THE APP!",  # case
    "Release notes. The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates. Other fixes: faster start-up.",  # a sentence
    "Every Sunday the bridge checks for updates, and it may restart.",  # similar words, no shared run of 8: clean
    _EX06_HELD[0],  # an exact copy
    "Hold the button to reset a sensor; the light blinks red while it resets.",  # clean
]


@self_check
def check_ex06_task5(remove_leaks) -> str:
    """``remove_leaks(train_texts, heldout_texts, n=EX06_SHINGLE)``: the training texts sharing no run of n words with a held-out text."""
    expect(callable(remove_leaks), "`remove_leaks` is not a function.", "define def remove_leaks(train_texts, heldout_texts, n=13): ...")
    leaks = set(_leaks(_EX06_TRAIN, _EX06_HELD, EX06_SHINGLE))
    want = [t for i, t in enumerate(_EX06_TRAIN) if i not in leaks]
    got = call_learner(remove_leaks, list(_EX06_TRAIN), list(_EX06_HELD), n=EX06_SHINGLE, name="remove_leaks")
    expect(isinstance(got, list), f"`remove_leaks` returns a {type(got).__name__}, not a list of texts.", "return the training texts you keep, in order.")
    kept_leaks = [t for t in got if t in _EX06_TRAIN and _EX06_TRAIN.index(t) in leaks]
    if kept_leaks:
        hint = ("an exact-match test misses leaks: held-out text is often copied with other case or punctuation, or as one sentence "
                "inside a longer document. Compare runs of n words, lower-cased, punctuation dropped (re.findall(r'\\w+', text.lower())).")
        expect(False, f"you keep a training text that contains held-out text: {kept_leaks[0][:60]!r}…", hint)
    dropped = [t for t in want if t not in got]
    expect(not dropped, f"you drop a clean training text: {dropped[0][:60]!r}…" if dropped else "",
           "sharing a few words is not a leak (every text about one product does): drop a text only when it shares a run of n words.")
    expect(got == want, "your result has the right texts but in another order, or extra ones.", "keep the clean training texts in their order.")
    return f"removes the {len(leaks)} leaked texts of a hidden corpus (an exact copy, a changed-case copy, one copied sentence) and keeps the clean ones."
