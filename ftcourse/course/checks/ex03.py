"""Checks of exercise 03, evaluation (``solutions/ex03_evaluation.ipynb``)."""

from __future__ import annotations

from ftcourse.course.checks.core import call_learner, expect, forbid_helpers, is_close, self_check

__all__ = [
    "check_ex03_task1", "check_ex03_task2", "check_ex03_task3", "check_ex03_task4", "check_ex03_task5",
    "check_ex03_task6", "macro_f1_reference", "paired_difference_ci",
]

_F1_CASES = [
    (["a", "b", "a", "c"], ["a", "b", "b", "c"]),
    (["a", None, "b", "b", "c"], ["a", "a", "b", "c", "c"]),
    (["x", "x", "z", "y"], ["x", "y", "x", "y"]),  # z is predicted but never a reference
    (["a", "b", "b"], ["a", "a", "a"]),  # b likewise
]


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


@self_check
def check_ex03_task1(macro_f1) -> str:
    """``macro_f1(predictions, references)``: mean F1 over the labels in references ∪ predictions (scikit-learn's macro F1)."""
    from ftcourse.metrics import classification_metrics, per_label_scores

    expect(callable(macro_f1), "`macro_f1` is not a function.", "define def macro_f1(predictions, references): ...")
    forbid_helpers(macro_f1, "macro_f1", {"classification_metrics": classification_metrics, "per_label_scores": per_label_scores, "f1_score": None},
                   "count tp, fp and fn per label yourself; that is the exercise.")
    for predictions, references in _F1_CASES:
        want = macro_f1_reference(predictions, references)
        got = call_learner(macro_f1, list(predictions), list(references), name="macro_f1")
        expect(isinstance(got, (int, float)), f"macro_f1 returns a {type(got).__name__}, not a number.", "return the mean F1 as a float.")
        refs_only = [lbl for lbl in dict.fromkeys(references)]
        hint = ("per label: precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2PR/(P+R) (0 when P+R = 0); "
                "average over every label in references ∪ predictions; a None prediction is wrong and is not a label.")
        if any(p is not None and p not in references for p in predictions) and is_close(float(got), _mean_f1(predictions, references, refs_only), 1e-6):
            hint = ("you average over the labels of the references only. A label the model predicts but nobody asked for still has "
                    "false positives, and scikit-learn's macro F1 (the course's definition) counts it, with F1 = 0.")
        elif is_close(float(got), sum(p == r for p, r in zip(predictions, references)) / len(references), 1e-6) and not is_close(want, float(got), 1e-6):
            hint = "that is accuracy (= micro F1). Macro F1 computes F1 per label and averages the labels equally. " + hint
        expect(is_close(float(got), want, 1e-6), f"macro_f1({predictions}, {references}) = {got}; want {want:.4f}.", hint)
    return f"matches scikit-learn's macro F1 on {len(_F1_CASES)} hidden cases (None predictions and labels nobody asked for included)."


@self_check
def check_ex03_task2(model, tokenizer, predictions, metrics, P) -> str:
    """``predictions``: constrained labels of the base model on the profile's test split; ``metrics``: {"accuracy", "macro_f1"} of them."""
    from ftcourse.course.bundled import INTENT_LABELS, intent_records
    from ftcourse.generation import classify
    from ftcourse.metrics import accuracy

    test = intent_records(P)["test"]
    references = [r["label"] for r in test]
    expect(isinstance(predictions, list) and len(predictions) == len(test),
           f"there are {len(predictions) if isinstance(predictions, list) else '?'} predictions for {len(test)} test examples.",
           "predict one label per example of intent_records(P)['test'].")
    expect(all(p in INTENT_LABELS for p in predictions), "some predictions are not intent labels.",
           "constrain generation to the label set: classify(model, tokenizer, prompts, INTENT_LABELS) (constrained=True).")
    want = accuracy(predictions, references)
    expect(isinstance(metrics, dict) and {"accuracy", "macro_f1"} <= set(metrics), "`metrics` should be a dict with 'accuracy' and 'macro_f1'.",
           "metrics = {'accuracy': ..., 'macro_f1': macro_f1(predictions, references)}.")
    expect(is_close(float(metrics["accuracy"]), want, 1e-9), f"metrics['accuracy'] is {metrics['accuracy']}; your predictions' accuracy is {want:.3f}.",
           "the share of predictions equal to their reference, references in test order.")
    f1 = macro_f1_reference(predictions, references)
    expect(is_close(float(metrics["macro_f1"]), f1, 1e-6), f"metrics['macro_f1'] is {metrics['macro_f1']}; your predictions' macro F1 is {f1:.3f}.",
           "use your task-1 macro_f1 on (predictions, references) — a zero-shot model predicts labels that no test example has, "
           "and they count.")
    probes = sorted({0, 1, len(test) // 2, len(test) - 1})  # the first two, and two the learner cannot guess from the printout
    again = classify(model, tokenizer, [test[i]["messages"][:-1] for i in probes], INTENT_LABELS, progress=False)
    expect(again == [predictions[i] for i in probes], f"re-classifying test examples {probes} gives other labels than your predictions.",
           "predict every example with the base model, the prompts without the answer (r['messages'][:-1]), in test order.")
    return f"zero-shot accuracy {want:.2f} and macro F1 {f1:.2f} on {len(test)} test examples (re-checked on {len(probes)})."


_CONFUSION_CASES = [
    ((["a", "b", "b", "c", "a", "b"], ["a", "a", "a", "c", "b", "c"], 2), [(("a", "b"), 2), (("b", "a"), 1)]),
    ((["x", None, None, "y", "z"], ["y", "y", "x", "x", "z"], 3), [(("x", "(none)"), 1), (("x", "y"), 1), (("y", "(none)"), 1)]),
    ((["a", "b"], ["a", "b"], 3), []),
]


@self_check
def check_ex03_task3(top_confusions) -> str:
    """``top_confusions(predictions, references, k)``: the k most frequent ((true, predicted), count) mistakes."""
    expect(callable(top_confusions), "`top_confusions` is not a function.", "define def top_confusions(predictions, references, k=3): ...")
    for (predictions, references, k), want in _CONFUSION_CASES:
        got = top_confusions(list(predictions), list(references), k)
        got = [(tuple(pair), count) for pair, count in got] if isinstance(got, list) else got
        expect(got == want, f"top_confusions({predictions}, {references}, k={k}) = {got}; want {want}.",
               "count (true, predicted) pairs where they differ, None as '(none)'; sort by count (highest first), "
               "ties by (true, predicted) alphabetically; return at most k.")
    return f"right on {len(_CONFUSION_CASES)} hidden cases (ties, missing predictions, no mistakes)."


_PPL_TEXTS = [
    "The HubOS bridge keeps a local copy of every automation, so lights and sensors keep working when the internet is down. "
    "To restore a backup, open the app, choose Settings, then Backup, and pick the most recent snapshot from the list.",
    "Rivers carry water from mountains to the sea. Along the way they shape valleys, feed farmland and give homes to fish, birds and plants.",
]


@self_check
def check_ex03_task4(my_perplexity, model, tokenizer) -> str:
    """``my_perplexity(model, tokenizer, text)``: exp(mean next-token loss) of the text's tokens followed by EOS."""
    from ftcourse.generation import perplexity, text_nll

    expect(callable(my_perplexity), "`my_perplexity` is not a function.", "define def my_perplexity(model, tokenizer, text): ...")
    forbid_helpers(my_perplexity, "my_perplexity", {"perplexity": perplexity, "text_nll": text_nll},
                   "compute it from the model's loss yourself: exp(model(input_ids=ids, labels=ids).loss).")
    for text in _PPL_TEXTS:
        want = perplexity(model, tokenizer, [text], progress=False)
        got = call_learner(my_perplexity, model, tokenizer, text, name="my_perplexity")
        expect(isinstance(got, (int, float)) or hasattr(got, "item"), f"my_perplexity returns a {type(got).__name__}.", "return a float.")
        got = float(got)
        expect(is_close(got, want, 0.02), f"my_perplexity gives {got:.2f} on a hidden text; want {want:.2f} (within 2%).",
               "ids = text's tokens (add_special_tokens=False) + [eos]; loss = model(input_ids=ids, labels=ids).loss "
               "(the model shifts labels itself); perplexity = exp(loss). A value near exp(loss)^2 or off by a lot means a double shift.")
    return f"matches ftcourse.generation.perplexity within 2% on {len(_PPL_TEXTS)} hidden texts."


@self_check
def check_ex03_task5(bootstrap_ci) -> str:
    """``bootstrap_ci(correct, n_boot=2000, seed=0)``: a 95% percentile-bootstrap interval (low, high) of accuracy."""
    expect(callable(bootstrap_ci), "`bootstrap_ci` is not a function.", "define def bootstrap_ci(correct, n_boot=2000, seed=0): ...")

    def ci(correct, n_boot, seed):
        got = call_learner(bootstrap_ci, list(correct), n_boot=n_boot, seed=seed, name="bootstrap_ci")
        expect(isinstance(got, (tuple, list)) and len(got) == 2, f"bootstrap_ci returns {got!r}, not (low, high).", "return a tuple (low, high).")
        return float(got[0]), float(got[1])

    small = [True] * 70 + [False] * 30
    low, high = ci(small, 2000, 0)
    expect(low <= 0.7 <= high, f"the interval ({low:.3f}, {high:.3f}) does not contain the accuracy 0.70.",
           "resample the list with replacement n_boot times, take each sample's mean, return the 2.5th and 97.5th percentiles.")
    expect(0.16 <= high - low <= 0.21, f"for 100 examples at 70% the interval is {high - low:.3f} wide; a 95% interval is about 0.18.",
           "take the 2.5th and 97.5th percentiles of the resampled accuracies (not the standard deviation, not 5/95).")
    wide = high - low
    low4, high4 = ci(small * 4, 2000, 0)
    expect(0.35 <= (high4 - low4) / wide <= 0.7, f"with 4x the examples the interval should be about half as wide; it went from {wide:.3f} to {high4 - low4:.3f}.",
           "resample the given list itself (same size as the data), not a fixed number of items.")
    expect(ci(small * 4, 20, 3) == ci(small * 4, 20, 3), "two calls with the same seed give different intervals.",
           "draw from a generator seeded with `seed` (random.Random(seed) or numpy.random.default_rng(seed)).")
    skewed = [True] * 19 + [False]
    low_s, high_s = ci(skewed, 2000, 0)
    expect(high_s <= 1.0, f"for 19 of 20 correct your interval reaches {high_s:.3f}, above 100% accuracy.",
           "that is the normal-approximation (Wald) formula p ± 1.96·sqrt(p(1-p)/n), which the task does not ask for: near 0 or 1 "
           "it leaves [0, 1]. Resample instead: no resampled accuracy can exceed 1.")
    seeds = {ci([True] * 30 + [False] * 20, 40, seed) for seed in range(6)}
    expect(len(seeds) > 1, "six different seeds give exactly the same interval: your function does not resample.",
           "a formula (e.g. Wald's p ± 1.96·sqrt(p(1-p)/n)) ignores n_boot and seed. The bootstrap draws n_boot resamples "
           "with replacement from a generator seeded with `seed`, so with few resamples the seed shows.")
    expect(ci([True] * 20, 200, 1) == (1.0, 1.0), "all-correct data must give the interval (1.0, 1.0).", "compute accuracies of the resamples directly.")
    return f"100 examples at 70%: [{low:.3f}, {high:.3f}]; 4x the data halves the width ({high4 - low4:.3f}); 19/20: [{low_s:.2f}, {high_s:.2f}]."


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


#: (n, both right, only A right, only B right) -> the verdict of the course's rule.
_COMPARE_CASES = [((100, 70, 0, 8), "B"), ((50, 30, 1, 3), "no clear difference"), ((200, 120, 20, 4), "A")]


@self_check
def check_ex03_task6(compare_models) -> str:
    """``compare_models(correct_a, correct_b, n_boot=2000, seed=0)`` -> ("A" | "B" | "no clear difference", (low, high))."""
    expect(callable(compare_models), "`compare_models` is not a function.", "define def compare_models(correct_a, correct_b, n_boot=2000, seed=0): ...")
    for (n, both, only_a, only_b), want in _COMPARE_CASES:
        a, b = _paired_case(n, both, only_a, only_b)
        got = call_learner(compare_models, list(a), list(b), n_boot=2000, seed=0, name="compare_models")
        expect(isinstance(got, (tuple, list)) and len(got) == 2 and got[0] in ("A", "B", "no clear difference"),
               f"compare_models returns {got!r}.", 'return (verdict, (low, high)) with verdict "A", "B" or "no clear difference".')
        verdict, interval = got
        acc_a, acc_b = sum(a) / n, sum(b) / n
        low, high = paired_difference_ci(a, b)
        case = f"A {acc_a:.2f} vs B {acc_b:.2f} on {n} examples ({only_a + only_b} disagreements)"
        if verdict != want and want == "no clear difference":
            hint = ("a higher accuracy on a small test set is not yet a better model: decide from the interval of the difference, "
                    "and only when it excludes 0.")
        elif verdict != want:
            hint = ("the two models answer the SAME examples, so compare them pair by pair: resample example indices, and compute "
                    "accuracy(B) - accuracy(A) on each resample. Two separate intervals that overlap do not show that there is no difference.")
        else:
            hint = ""
        expect(verdict == want, f"{case}: you say {verdict!r}; the paired bootstrap of the difference gives [{low:+.3f}, {high:+.3f}], so {want!r}.", hint)
        lo, hi = (float(v) for v in interval)
        expect(abs(lo - low) <= 0.03 and abs(hi - high) <= 0.03, f"{case}: your interval [{lo:+.3f}, {hi:+.3f}] is far from the paired bootstrap's [{low:+.3f}, {high:+.3f}].",
               "interval of accuracy(B) - accuracy(A): resample indices i with replacement, take the mean of b[i] - a[i]; 2.5th and 97.5th percentiles.")
    return f"right on {len(_COMPARE_CASES)} hidden comparisons, including one where the separate intervals overlap but the paired one excludes 0."
