"""Checks of exercise 06, domain adaptation (``solutions/ex06_domain_adaptation.ipynb``)."""

from __future__ import annotations

import math
import re

from ftcourse.course.checks.core import call_learner, expect, is_close, self_check, trained_adapter, trained_on

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


def _expect_ppl(name: str, got, want: dict[str, float]) -> None:
    expect(isinstance(got, dict) and set(got) == {"domain", "general"}, f"`{name}` should be a dict with keys 'domain' and 'general'.",
           "use the keys 'domain' (domain_sample) and 'general' (general_sample).")
    for key in want:
        expect(is_close(float(got[key]), want[key], 0.01), f"{name}[{key!r}] is {got[key]:.2f}; the model's perplexity on {key}_sample is {want[key]:.2f}.",
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


#: Perplexity pairs ``how_much_harder`` is also run on: the general text harder, and a ratio that is not the measured one.
_EX06_HIDDEN_PPL = ({"domain": 14.0, "general": 35.0}, {"domain": 52.5, "general": 7.5})


def _ex06_harder(ppl: dict[str, float]) -> tuple[str, float, float]:
    harder, easier = sorted(ppl, key=ppl.get, reverse=True)
    return harder, ppl[harder] / ppl[easier], math.log(ppl[harder] / ppl[easier])


def _ex06_harder_hint(got, ppl: dict[str, float]) -> str:
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


def _ex06_expect_harder(how_much_harder, ppl: dict[str, float], what: str, measured=None) -> tuple[str, float, float]:
    """Fail unless ``how_much_harder(ppl)`` is right; ``measured``: what it returned for the measured perplexities, if it ran on them."""
    want = _ex06_harder(ppl)
    got = call_learner(how_much_harder, dict(ppl), name="how_much_harder")
    expect(isinstance(got, (tuple, list)) and len(got) == 3 and got[0] in ppl and all(isinstance(v, (int, float)) for v in got[1:]),
           f"how_much_harder returned {got!r}.", "return a tuple: (the harder sample's name, the ratio, the extra nats per token).")
    right = got[0] == want[0] and is_close(float(got[1]), want[1], 1e-4) and abs(float(got[2]) - want[2]) <= 1e-4
    copied = measured is not None and tuple(got) == tuple(measured)
    expect(right, f"for {what} how_much_harder returned ({got[0]!r}, {got[1]:.4g}, {got[2]:.4g}); that is not the harder sample, "
           "its ratio and its extra loss per token.",
           "it returned what it returned for ppl_before: compute the answer from its argument instead of copying numbers from a "
           "printout (the check passes other perplexities too)." if copied else _ex06_harder_hint(got, ppl))
    return got


@self_check
def check_ex06_task2(predictions, ppl_before, how_much_harder, model, tokenizer) -> str:
    """``predictions``: EX06_QUESTIONS answered before measuring; ``ppl_before``: {"domain": ..., "general": ...} perplexities
    of the base model on ex06_samples(); ``how_much_harder(ppl)``: (the harder sample, the perplexity ratio harder / easier,
    the extra mean loss per token of the harder one in nats)."""
    expect(isinstance(predictions, dict) and set(predictions) == set(EX06_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX06_QUESTIONS)}.", "one answer per question of EX06_QUESTIONS.")
    expect(predictions["harder"] in ("domain", "general") and predictions["ratio"] in EX06_RATIOS,
           f"your answers are {predictions}.", f"'harder' is 'domain' or 'general'; 'ratio' one of {EX06_RATIOS}.")
    want = _ppl_pair(model, tokenizer)
    _expect_ppl("ppl_before", ppl_before, want)
    expect(callable(how_much_harder), "`how_much_harder` is not a function.", "define def how_much_harder(ppl): ...")
    measured = _ex06_expect_harder(how_much_harder, want, "your ppl_before")
    harder, ratio, nats = _ex06_harder(want)
    for hidden in _EX06_HIDDEN_PPL:
        _ex06_expect_harder(how_much_harder, hidden, f"the hidden perplexities {hidden}", measured)
    expect(predictions["harder"] == harder, f"you predicted the {predictions['harder']} sample to be harder; the measurement disagrees.",
           "which text could the base model have met in pre-training? It learned general English, but never saw HubOS: its "
           "product names, error codes and menu paths are token sequences it cannot predict. That gap is what continued "
           "pre-training closes.")
    expect(predictions["ratio"] == _ex06_ratio_bin(ratio), f"you predicted a ratio {predictions['ratio']}; the measured ratio is in another bin.",
           "perplexity is exp(mean loss per token), so a ratio of R is ln R nats more loss on every token: a ratio of 2 is "
           "already 0.69 nats, 10 is 2.3 nats. How much less predictable is a manual full of names the model never saw?")
    return (f"the base model finds the {harder} sample {ratio:.1f}× as surprising as the other ({nats:.2f} nats more loss per token), "
            f"as predicted; how_much_harder right on {len(_EX06_HIDDEN_PPL)} hidden pairs too.")


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
    from ftcourse.course.bundled import domain_texts

    expect(isinstance(train_records, list) and train_records and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in train_records),
           "`train_records` should be the list of {'text': ...} records you trained on.",
           "continued pre-training trains on plain text: train_records = [{'text': t} for t in ...].")
    leaked = _leaks([r["text"] for r in train_records], domain_texts()["heldout"])
    expect(not leaked, f"{len(leaked)} of your training records contain held-out text: the perplexity you measure next would reward memorising it.",
           "train on texts['train'] only: the held-out documents exist to measure what the model learned about the domain, "
           "and a model that has seen them looks better than it is.")
    trained_adapter(result, "lora", loss_must_drop=False)
    if not trained_on(result, train_records, packing=True):
        expect(not trained_on(result, train_records), "the run was trained on these records without packing: short documents were padded.",
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
    expect(isinstance(forgetting, (int, float)) and is_close(float(forgetting), want["general"] / ppl_before["general"], 1e-3),
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
