"""Checks of exercise 03, evaluation (``solutions/ex03_evaluation.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values and the
outputs of their functions into plain data, and a judge that decides. The practice cases are here; the hidden inputs
and expected answers the grader uses are in ``solutions/hidden/ex03.json``.
"""

from __future__ import annotations

import math
from typing import Any

from ftcourse.course.checks.core import Case, describe, expect, forbid_source_helpers, graded_check, is_close, output_of, outputs_of, run_learner

__all__ = [
    "check_ex03_task1", "check_ex03_task2", "check_ex03_task3", "check_ex03_task4", "check_ex03_task5",
    "check_ex03_task6", "macro_f1_reference", "paired_difference_ci",
]


def _number(value: Any, kind: str, name: str) -> float:
    expect(isinstance(value, (int, float)), f"{name} returns a {kind}, not a number.", "return a float.")
    return float(value)


def _mean_f1(predictions, references, labels) -> float:
    """Macro F1 over exactly ``labels`` (0 for a label without a true positive)."""
    from ftcourse.metrics import per_label_scores

    scores = per_label_scores(predictions, references, labels)
    return sum(scores[label]["f1"] for label in labels) / len(labels)


def macro_f1_reference(predictions, references) -> float:
    """The course's macro F1: scikit-learn's ``f1_score(average="macro")`` over the labels in references ∪ predictions.

    A ``None`` prediction (no label named) is wrong and is not a label; F1 is 0 when precision + recall is 0.
    """
    return _mean_f1(predictions, references, sorted(set(references) | {p for p in predictions if p is not None}))


#: The helpers that would compute task 1's macro F1 (bare name -> qualified name).
_F1_HELPERS = {"classification_metrics": "ftcourse.metrics.classification_metrics", "per_label_scores": "ftcourse.metrics.per_label_scores",
               "f1_score": "sklearn.metrics.f1_score", "precision_recall_fscore_support": "sklearn.metrics.precision_recall_fscore_support",
               "classification_report": "sklearn.metrics.classification_report",
               "macro_f1_reference": "ftcourse.course.checks.ex03.macro_f1_reference"}


@graded_check({"inputs": {"cases": [
    [["a", "b", "a", "c"], ["a", "b", "b", "c"]],
    [["a", None, "b", "b", "c"], ["a", "a", "b", "c", "c"]],
    [["x", "x", "z", "y"], ["x", "y", "x", "y"]],  # z is predicted but never a reference
    [["a", "b", "b"], ["a", "a", "a"]],  # b likewise
    [["a", "a", "b", "b"], ["a", "c", "b", "c"]],  # c is a reference but never predicted
]}, "expected": {}})
def check_ex03_task1(inputs, macro_f1) -> dict:
    """``macro_f1(predictions, references)``: mean F1 over the labels in references ∪ predictions (scikit-learn's macro F1)."""
    return {"outputs": [run_learner(macro_f1, list(p), list(r)) for p, r in inputs["cases"]]}


@check_ex03_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "macro_f1", _F1_HELPERS, "count tp, fp and fn per label yourself; that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "macro_f1", "define def macro_f1(predictions, references): ...")
    wrong = [(p, r, got) for (p, r), (value, kind) in zip(cases, outputs)
             if not is_close(got := _number(value, kind, "macro_f1"), macro_f1_reference(p, r), 1e-6)]
    if wrong:  # a tempting mistake is named when it explains every wrong case (accuracy and the weighted F1 can coincide on one)
        predictions, references, got = wrong[0]
        mistakes = [h for h in _f1_mistakes(*wrong[0]) if all(h in _f1_mistakes(*w) for w in wrong[1:])]
        expect(False, f"macro_f1({predictions}, {references}) = {got}: not scikit-learn's macro F1 of this {case.kind} case.",
               " Or: ".join(mistakes) if mistakes else "per label: precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2PR/(P+R) (0 when "
               "P+R = 0); average over every label in references ∪ predictions; a None prediction is wrong and is not a label.")
    return f"matches scikit-learn's macro F1 on {len(cases)} {case.kind} cases (None predictions and labels nobody asked for included)."


def _f1_mistakes(predictions: list, references: list, got: float) -> list[str]:
    """The hints of the tempting label sets and averages that give ``got`` on this case (recognised by their value)."""
    from collections import Counter

    labels = sorted(set(references) | {p for p in predictions if p is not None})
    scores = {label: _mean_f1(predictions, references, [label]) for label in labels}
    support = Counter(references)
    wrongs = {
        "you average over the labels of the references only. A label the model predicts but nobody asked for still has "
        "false positives, and scikit-learn's macro F1 (the course's definition) counts it, with F1 = 0.":
            _mean_f1(predictions, references, sorted(set(references))),
        "you average over the labels the model predicted only. A label of the references that is never predicted has recall 0, "
        "so F1 = 0, and it counts: every label in references ∪ predictions.": _mean_f1(predictions, references, sorted({p for p in predictions if p is not None})),
        "that is the support-weighted F1 (each label weighted by how often it is a reference). Macro F1 averages the labels "
        "equally: a rare label counts as much as a frequent one.": sum(scores[k] * support[k] for k in support) / len(references),
        "that is accuracy (= micro F1). Macro F1 computes F1 per label and averages the labels equally.":
            sum(p == r for p, r in zip(predictions, references)) / len(references),
    }
    return [h for h, v in wrongs.items() if is_close(got, v, 1e-6)]


@graded_check({"inputs": {}, "expected": {}})
def check_ex03_task2(inputs, model, tokenizer, predictions, metrics, P) -> dict:
    """``predictions``: constrained labels of the base model on the profile's test split; ``metrics``: {"accuracy", "macro_f1"} of them."""
    return {"predictions": describe(predictions), "metrics": describe(metrics)}


@check_ex03_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import INTENT_LABELS, intent_records
    from ftcourse.generation import classify
    from ftcourse.metrics import accuracy

    test = intent_records(case.reference("P"))["test"]
    references = [r["label"] for r in test]
    predictions, _ = output_of(data.get("predictions"), "predictions")
    expect(isinstance(predictions, list) and len(predictions) == len(test),
           f"there are {len(predictions) if isinstance(predictions, list) else '?'} predictions for {len(test)} test examples.",
           "predict one label per example of intent_records(P)['test'].")
    expect(all(p in INTENT_LABELS for p in predictions), "some predictions are not intent labels.",
           "constrain generation to the label set: classify(model, tokenizer, prompts, INTENT_LABELS) (constrained=True).")
    want = accuracy(predictions, references)
    metrics, _ = output_of(data.get("metrics"), "metrics")
    expect(isinstance(metrics, dict) and all(isinstance(metrics.get(k), (int, float)) for k in ("accuracy", "macro_f1")),
           "`metrics` should be a dict with 'accuracy' and 'macro_f1'.", "metrics = {'accuracy': ..., 'macro_f1': macro_f1(predictions, references)}.")
    expect(is_close(float(metrics["accuracy"]), want, 1e-9), f"metrics['accuracy'] is {metrics['accuracy']}; your predictions' accuracy is {want:.3f}.",
           "the share of predictions equal to their reference, references in test order.")
    f1 = macro_f1_reference(predictions, references)
    expect(is_close(float(metrics["macro_f1"]), f1, 1e-6), f"metrics['macro_f1'] is {metrics['macro_f1']}; your predictions' macro F1 is {f1:.3f}.",
           "use your task-1 macro_f1 on (predictions, references) — a zero-shot model predicts labels that no test example has, "
           "and they count.")
    probes = sorted({0, 1, len(test) // 2, len(test) - 1})  # the first two, and two the learner cannot guess from the printout
    again = classify(case.reference("model"), case.reference("tokenizer"), [test[i]["messages"][:-1] for i in probes], INTENT_LABELS, progress=False)
    expect(again == [predictions[i] for i in probes], f"re-classifying test examples {probes} gives other labels than your predictions.",
           "predict every example with the base model, the prompts without the answer (r['messages'][:-1]), in test order.")
    return f"zero-shot accuracy {want:.2f} and macro F1 {f1:.2f} on {len(test)} test examples (re-checked on {len(probes)})."


@graded_check({"inputs": {"cases": [[["a", "b", "b", "c", "a", "b"], ["a", "a", "a", "c", "b", "c"], 2],
                                    [["x", None, None, "y", "z"], ["y", "y", "x", "x", "z"], 3],
                                    [["a", "b"], ["a", "b"], 3]]},
               "expected": {"want": [[[["a", "b"], 2], [["b", "a"], 1]], [[["x", "(none)"], 1], [["x", "y"], 1], [["y", "(none)"], 1]], []]}})
def check_ex03_task3(inputs, top_confusions) -> dict:
    """``top_confusions(predictions, references, k)``: the k most frequent ((true, predicted), count) mistakes."""
    return {"outputs": [run_learner(top_confusions, list(p), list(r), k) for p, r, k in inputs["cases"]]}


def _pairs(value: Any) -> Any:
    """``[((true, predicted), count), ...]`` from collected lists; anything else as it is (it then differs from the answer)."""
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], list) for v in value):
        return value
    return [(tuple(pair), count) for pair, count in value]


@check_ex03_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "top_confusions", "define def top_confusions(predictions, references, k=3): ...")
    for (predictions, references, k), want, (value, _) in zip(cases, case.expected["want"], outputs):
        got, want = _pairs(value), _pairs(want)
        expect(got == want, f"top_confusions({predictions}, {references}, k={k}) = {got}: not the k most frequent mistakes of this {case.kind} case.",
               "count (true, predicted) pairs where they differ, None as '(none)'; sort by count (highest first), "
               "ties by (true, predicted) alphabetically; return at most k.")
    return f"right on {len(cases)} {case.kind} cases (ties, missing predictions, no mistakes)."


def _double_shift(model, tokenizer, text: str) -> float:
    """The perplexity a learner gets who shifts the labels by hand before the model shifts them again."""
    import torch

    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]], device=model.device)
    with torch.no_grad():
        return math.exp(float(model(input_ids=ids[:, :-1], labels=ids[:, 1:]).loss))


@graded_check({"inputs": {"texts": [
    "The HubOS bridge keeps a local copy of every automation, so lights and sensors keep working when the internet is down. "
    "To restore a backup, open the app, choose Settings, then Backup, and pick the most recent snapshot from the list.",
    "Rivers carry water from mountains to the sea. Along the way they shape valleys, feed farmland and give homes to fish, birds and plants.",
]}, "expected": {}})
def check_ex03_task4(inputs, my_perplexity, model, tokenizer) -> dict:
    """``my_perplexity(model, tokenizer, text)``: exp(mean next-token loss) of the text's tokens followed by EOS."""
    return {"outputs": [run_learner(my_perplexity, model, tokenizer, text) for text in inputs["texts"]]}


@check_ex03_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    from ftcourse.generation import perplexity

    forbid_source_helpers(case, "my_perplexity", {"perplexity": "ftcourse.generation.perplexity", "text_nll": "ftcourse.generation.text_nll"},
                          "compute it from the model's loss yourself: exp(model(input_ids=ids, labels=ids).loss).")
    texts = case.inputs["texts"]
    outputs = outputs_of(data, len(texts), "my_perplexity", "define def my_perplexity(model, tokenizer, text): ...")
    model, tokenizer = case.reference("model"), case.reference("tokenizer")
    for text, (value, kind) in zip(texts, outputs):
        want, got = perplexity(model, tokenizer, [text], progress=False), _number(value, kind, "my_perplexity")
        if is_close(got, want, 0.02):
            continue
        wrongs = {"perplexity is e**loss: the model's loss is a mean negative log-likelihood in nats (natural log), so the base is e, not 2.":
                  2 ** math.log(want),
                  "you shifted the tokens yourself and the model shifted them again (a double shift): pass the same ids as input_ids "
                  "and labels; the model predicts token t+1 from tokens ≤ t inside its loss.": _double_shift(model, tokenizer, text)}
        expect(False, f"my_perplexity gives {got:.2f} on a {case.kind} text: more than 2% from the model's perplexity of that text.",
               next((h for h, v in wrongs.items() if is_close(got, v, 0.02)),
                    "ids = text's tokens (add_special_tokens=False) + [eos]; loss = model(input_ids=ids, labels=ids).loss "
                    "(the model shifts labels itself); perplexity = exp(loss)."))
    return f"matches ftcourse.generation.perplexity within 2% on {len(texts)} {case.kind} texts."


def _bootstrap_calls(inputs: dict) -> list[tuple[list[bool], int, int]]:
    """The calls of the learner's bootstrap_ci, in order: (correct, n_boot, seed). The first is the case's data; then 4x it,
    the same small call twice, 19 of 20 right, one list under six seeds, all right, and 18 of 20 right (a skewed bootstrap)."""
    small = [True] * inputs["right"] + [False] * inputs["wrong"]
    return [(small, 2000, 0), (small * 4, 2000, 0), (small * 4, 20, 3), (small * 4, 20, 3), ([True] * 19 + [False], 2000, 0),
            *(([True] * 30 + [False] * 20, 40, seed) for seed in range(6)), ([True] * 20, 200, 1), ([True] * 18 + [False] * 2, 2000, 0)]


@graded_check({"inputs": {"right": 70, "wrong": 30}, "expected": {}})
def check_ex03_task5(inputs, bootstrap_ci) -> dict:
    """``bootstrap_ci(correct, n_boot=2000, seed=0)``: a 95% percentile-bootstrap interval (low, high) of accuracy."""
    return {"outputs": [run_learner(bootstrap_ci, list(correct), n_boot=n_boot, seed=seed) for correct, n_boot, seed in _bootstrap_calls(inputs)]}


def _expect_percentiles(got: tuple[float, float], want: tuple[float, float], where: str, what: str) -> None:
    """Fail unless ``got`` is the percentile interval ``want`` of a skewed bootstrap (within 0.01: its ends are values a
    resample can take), as an interval of ±1.96 standard errors is not."""
    expect(abs(got[0] - want[0]) <= 0.01 and abs(got[1] - want[1]) <= 0.01,
           f"{where} your interval is [{got[0]:.3f}, {got[1]:.3f}]: not the percentiles of the resampled {what}.",
           f"near 0 or 1 the resampled {what} are skewed, and a percentile interval follows them; ±1.96 standard errors (of the "
           f"resamples, clipped or not) makes it symmetric. Sort the n_boot resampled {what} and take the 2.5th and 97.5th percentiles.")


#: Course code that would do task 5's or 6's interval (bare name -> qualified name).
_INTERVAL_HELPERS = {"paired_difference_ci": "ftcourse.course.checks.ex03.paired_difference_ci",
                     "accuracy_with_interval": "ftcourse.course.comparison.accuracy_with_interval"}


@check_ex03_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "bootstrap_ci", _INTERVAL_HELPERS, "resample the list yourself; that is the exercise.")
    calls = _bootstrap_calls(case.inputs)
    intervals = []
    for value, _ in outputs_of(data, len(calls), "bootstrap_ci", "define def bootstrap_ci(correct, n_boot=2000, seed=0): ..."):
        expect(isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value),
               f"bootstrap_ci returns {value!r}, not (low, high).", "return a tuple (low, high).")
        intervals.append((float(value[0]), float(value[1])))
    (low, high), (low4, high4), again, again2, (low_s, high_s) = intervals[:5]
    n = case.inputs["right"] + case.inputs["wrong"]
    p = case.inputs["right"] / n
    expect(low <= p <= high, f"the interval ({low:.3f}, {high:.3f}) does not contain the accuracy {p:.2f}.",
           "resample the list with replacement n_boot times, take each sample's mean, return the 2.5th and 97.5th percentiles.")
    normal = 2 * 1.96 * math.sqrt(p * (1 - p) / n)  # the width a 95% interval has, near enough for this check
    expect(0.88 * normal <= high - low <= 1.17 * normal, f"for {n} examples at {p:.0%} the interval is {high - low:.3f} wide; "
           f"a 95% interval is about {normal:.2f}.",
           "take the 2.5th and 97.5th percentiles of the resampled accuracies (not the standard deviation, not 5/95).")
    wide = high - low
    expect(0.35 <= (high4 - low4) / wide <= 0.7, f"with 4x the examples the interval should be about half as wide; it went from {wide:.3f} to {high4 - low4:.3f}.",
           "resample the given list itself (same size as the data), not a fixed number of items.")
    expect(again == again2, "two calls with the same seed give different intervals.",
           "draw from a generator seeded with `seed` (random.Random(seed) or numpy.random.default_rng(seed)).")
    expect(high_s <= 1.0, f"for 19 of 20 correct your interval reaches {high_s:.3f}, above 100% accuracy.",
           "that is the normal-approximation (Wald) formula p ± 1.96·sqrt(p(1-p)/n), which the task does not ask for: near 0 or 1 "
           "it leaves [0, 1]. Resample instead: no resampled accuracy can exceed 1.")
    expect(len(set(intervals[5:11])) > 1, "six different seeds give exactly the same interval: your function does not resample.",
           "a formula (e.g. Wald's p ± 1.96·sqrt(p(1-p)/n)) ignores n_boot and seed. The bootstrap draws n_boot resamples "
           "with replacement from a generator seeded with `seed`, so with few resamples the seed shows.")
    expect(intervals[11] == (1.0, 1.0), "all-correct data must give the interval (1.0, 1.0).", "compute accuracies of the resamples directly.")
    _expect_percentiles(intervals[12], paired_difference_ci([False] * 20, [True] * 18 + [False] * 2), "for 18 of 20 correct", "accuracies")
    return (f"{n} examples at {p:.0%}: [{low:.3f}, {high:.3f}]; 4x the data halves the width ({high4 - low4:.3f}); "
            f"19/20: [{low_s:.2f}, {high_s:.2f}].")


def paired_difference_ci(correct_a, correct_b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of accuracy(B) - accuracy(A), resampling examples (pairs) with ``random.Random(seed)``."""
    import random

    rng = random.Random(seed)
    n = len(correct_a)
    diffs = sorted(sum(correct_b[i] - correct_a[i] for i in (rng.randrange(n) for _ in range(n))) / n for _ in range(n_boot))
    return diffs[int(0.025 * n_boot)], diffs[int(0.975 * n_boot) - 1]


def _paired_case(n: int, both: int, only_a: int, only_b: int) -> tuple[list[bool], list[bool]]:
    """A and B right together on ``both`` examples, A alone on ``only_a``, B alone on ``only_b``, both wrong on the rest."""
    a = [True] * both + [True] * only_a + [False] * only_b
    b = [True] * both + [False] * only_a + [True] * only_b
    rest = n - len(a)
    return a + [False] * rest, b + [False] * rest


@graded_check({"inputs": {"cases": [[100, 70, 0, 8], [50, 30, 1, 3], [200, 120, 20, 4]]},  # (n, both right, only A, only B)
               "expected": {"verdicts": ["B", "no clear difference", "A"]}})
def check_ex03_task6(inputs, compare_models) -> dict:
    """``compare_models(correct_a, correct_b, n_boot=2000, seed=0)`` -> ("A" | "B" | "no clear difference", (low, high))."""
    return {"outputs": [run_learner(compare_models, *_paired_case(*c), n_boot=2000, seed=0) for c in inputs["cases"]],
            "calls": [run_learner(compare_models, *_paired_case(*c), n_boot=n_boot, seed=seed) for c, n_boot, seed in _COMPARE_CALLS]}


#: Task 6's other calls, (n, both, only A, only B), n_boot, seed: a large test set, three calls each made twice, one case
#: under six seeds with few resamples, and few disagreements (a skewed bootstrap).
_COMPARE_CALLS = [((400, 200, 30, 50), 2000, 0), *(((400, 200, 30, 50), 20, seed) for seed in (3, 3, 4, 4, 5, 5)),
                  *(((50, 30, 5, 5), 40, seed) for seed in range(6)), ((40, 20, 0, 4), 2000, 0)]


def _compare_intervals(data: dict) -> list[tuple[float, float]]:
    """The intervals of task 6's other calls (:data:`_COMPARE_CALLS`)."""
    intervals = []
    for value, _ in outputs_of({"outputs": data.get("calls")}, len(_COMPARE_CALLS), "compare_models", "define def compare_models(correct_a, correct_b, n_boot=2000, seed=0): ..."):
        interval = value[1] if isinstance(value, list) and len(value) == 2 else None
        expect(isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval),
               f"compare_models returns {str(value)[:80]}, not (verdict, (low, high)).", "return (verdict, (low, high)).")
        intervals.append((float(interval[0]), float(interval[1])))
    return intervals


def _expect_resampled(data: dict) -> None:
    """Task 6's interval is a seeded 95% paired bootstrap of n pairs, its ends percentiles (not ±1.96 standard errors)."""
    big, *rest = _compare_intervals(data)
    twice, seeds, skew = rest[:6], rest[6:12], rest[12]
    expect(twice[0::2] == twice[1::2], "two calls with the same seed give different intervals.",
           "draw from a generator seeded with `seed` (random.Random(seed) or numpy.random.default_rng(seed)).")
    expect(len(set(seeds)) > 1, "six different seeds give exactly the same interval: your function does not resample.",
           "a formula (the difference ± 1.96 standard errors) ignores n_boot and seed. The bootstrap draws n_boot resamples of "
           "the pairs with a generator seeded with `seed`, so with few resamples the seed shows.")
    low, high = paired_difference_ci(*_paired_case(*_COMPARE_CALLS[0][0]))
    expect(0.9 <= (big[1] - big[0]) / (high - low) <= 1.1, f"on 400 pairs your interval is {big[1] - big[0]:.3f} wide; the paired "
           f"bootstrap's 95% interval is {high - low:.3f} wide.",
           "each resample draws n pairs (the data's size, not a fixed number), and a 95% interval takes the 2.5th and 97.5th percentiles.")
    _expect_percentiles(skew, paired_difference_ci(*_paired_case(*_COMPARE_CALLS[-1][0])), "with 4 disagreements in 40 pairs", "differences")


@check_ex03_task6.judge
def _judge_task6(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "compare_models", _INTERVAL_HELPERS, "resample the pairs yourself; that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "compare_models", "define def compare_models(correct_a, correct_b, n_boot=2000, seed=0): ...")
    for (n, both, only_a, only_b), want, (got, _) in zip(cases, case.expected["verdicts"], outputs):
        a, b = _paired_case(n, both, only_a, only_b)
        expect(isinstance(got, list) and len(got) == 2 and got[0] in ("A", "B", "no clear difference"),
               f"compare_models returns {got!r}.", 'return (verdict, (low, high)) with verdict "A", "B" or "no clear difference".')
        verdict, interval = got
        acc_a, acc_b = sum(a) / n, sum(b) / n
        low, high = paired_difference_ci(a, b)
        where = f"A {acc_a:.2f} vs B {acc_b:.2f} on {n} examples ({only_a + only_b} disagreements)"
        if verdict != want and want == "no clear difference":
            hint = ("a higher accuracy on a small test set is not yet a better model: decide from the interval of the difference, "
                    "and only when it excludes 0.")
        elif verdict != want:
            hint = ("the two models answer the SAME examples, so compare them pair by pair: resample example indices, and compute "
                    "accuracy(B) - accuracy(A) on each resample. Two separate intervals that overlap do not show that there is no difference.")
        else:
            hint = ""
        expect(verdict == want, f"{where}: you say {verdict!r}, which the paired bootstrap of the difference does not support.", hint)
        expect(isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval),
               f"{where}: the interval {interval!r} is not (low, high).", "return (verdict, (low, high)).")
        lo, hi = (float(v) for v in interval)
        expect(abs(lo - low) <= 0.03 and abs(hi - high) <= 0.03, f"{where}: your interval [{lo:+.3f}, {hi:+.3f}] is more than 0.03 from the paired bootstrap's.",
               "interval of accuracy(B) - accuracy(A): resample n indices i with replacement (as many as the data has, not a fixed "
               "number), take the mean of b[i] - a[i]; 2.5th and 97.5th percentiles.")
    _expect_resampled(data)
    return f"right on {len(cases)} {case.kind} comparisons, including one where the separate intervals overlap but the paired one excludes 0."
