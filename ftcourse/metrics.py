"""Metrics on predictions and references: pure Python, no model and no torch.

Classification (accuracy, per-label and macro precision/recall/F1, confusion matrix), exact match,
ROUGE, QA scores (SQuAD-style EM and token F1, "not in the manual", recall@k), JSON extraction scores,
perplexity from summed log-likelihoods, LLM-free checks of free answers, and uncertainty: the t interval of a mean
over seeds, the Wilson interval of a proportion and McNemar's exact test of two models on the same examples.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ftcourse.errors import CourseError

__all__ = [
    "accuracy", "classification_metrics", "cohen_kappa", "confusion_matrix", "exact_match", "generation_checks",
    "json_field_scores", "json_metrics", "label_distribution", "match_label", "mcnemar_test", "mean_interval", "normalize_text",
    "parse_json_object", "per_label_scores", "pooled_perplexity", "qa_metrics", "recall_at_k", "rouge", "rouge_scores",
    "says_unanswerable", "share_interval", "squad_normalize", "T95_QUANTILES", "token_f1", "wilson_interval",
]


def normalize_text(text: str) -> str:
    """Lower-case and collapse white space: the key for duplicate and leakage checks, and for exact match."""
    return re.sub(r"\s+", " ", text).strip().lower()


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    _same_length(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(references) if references else 0.0


def _same_length(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise CourseError(f"{len(predictions)} predictions but {len(references)} references.", "evaluate the same examples you predicted.")


def per_label_scores(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per label."""
    _same_length(predictions, references)
    scores = {}
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return scores


def classification_metrics(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro precision/recall/F1, plus per-label scores.

    The macro average is scikit-learn's ``average="macro"``: over the labels (of ``labels``) that occur in the references
    or the predictions — a label the model predicts but no reference has counts, with F1 = 0.
    """
    per_label = per_label_scores(predictions, references, labels)
    predicted = set(predictions)
    present = [label for label in labels if per_label[label]["support"] > 0 or label in predicted] or list(labels)
    macro = {k: sum(per_label[label][k] for label in present) / len(present) for k in ("precision", "recall", "f1")}
    return {
        "accuracy": accuracy(predictions, references),
        "precision": macro["precision"],
        "recall": macro["recall"],
        "f1": macro["f1"],
        "per_label": per_label,
        "n": len(references),
    }


def confusion_matrix(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> list[list[int]]:
    """Rows: true label; columns: predicted label, plus a last column for answers that named no label."""
    _same_length(predictions, references)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    for p, r in zip(predictions, references):
        if r in index:
            matrix[index[r]][index.get(p, len(labels))] += 1
    return matrix


def exact_match(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Share of predictions equal to their reference after lower-casing and collapsing white space."""
    _same_length(predictions, references)
    same = [p is not None and normalize_text(str(p)) == normalize_text(str(r)) for p, r in zip(predictions, references)]
    return sum(same) / len(same) if same else 0.0


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if not overlap:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _rouge_tokens(text: str) -> list[str]:
    """Tokens as rouge-score (and the original ROUGE script) makes them: lower case, runs of ASCII letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1 (word overlap) and ROUGE-L (longest common word subsequence) F1 of one answer, tokenized as rouge-score."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return {"rouge1": _f1(overlap, len(pred), len(ref)), "rougeL": _f1(_lcs(pred, ref), len(pred), len(ref))}


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F1 over examples."""
    _same_length(predictions, references)
    scores = [rouge_scores(p, r) for p, r in zip(predictions, references)]
    return {key: sum(s[key] for s in scores) / len(scores) if scores else 0.0 for key in ("rouge1", "rougeL")}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lower-case, delete ASCII punctuation, drop a/an/the, collapse white space."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def says_unanswerable(answer: str, phrase: str) -> bool:
    """Whether ``answer`` contains the abstention ``phrase`` (both SQuAD-normalised).

    Lenient on purpose, and unlike SQuAD 2.0 (which wants an empty answer): "Sorry, <phrase> It might be X" counts too.
    """
    return squad_normalize(phrase) in squad_normalize(answer)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 of one answer: the overlap of the normalised words (counted with repeats)."""
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    return _f1(sum((Counter(pred) & Counter(ref)).values()), len(pred), len(ref))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def qa_metrics(predictions: Sequence[str], references: Sequence[str], unanswerable: str) -> dict[str, float]:
    """Exact match and token F1 (SQuAD normalisation), with questions whose reference is the abstention phrase ``unanswerable``.

    Such a question scores 1 (EM and F1) when the answer contains the phrase (:func:`says_unanswerable`) and 0 otherwise.
    ``abstain_rate``: share of those questions answered with the phrase; ``false_abstain_rate``: share of answerable
    questions wrongly answered with it.
    """
    _same_length(predictions, references)
    em, f1, abstained, wrong = [], [], [], []
    for pred, ref in zip(predictions, references):
        if says_unanswerable(ref, unanswerable):
            hit = float(says_unanswerable(pred, unanswerable))
            em.append(hit), f1.append(hit), abstained.append(hit)
        else:
            em.append(float(squad_normalize(pred) == squad_normalize(ref)))
            f1.append(token_f1(pred, ref))
            wrong.append(float(says_unanswerable(pred, unanswerable)))
    return {"exact_match": _mean(em), "f1": _mean(f1), "abstain_rate": _mean(abstained),
            "false_abstain_rate": _mean(wrong), "n": len(em), "n_unanswerable": len(abstained)}


def recall_at_k(retrieved: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> float:
    """Share of queries whose gold document is among the first ``k`` retrieved documents."""
    _same_length(retrieved, gold)
    if k < 1:
        raise CourseError(f"recall_at_k needs k >= 1, got k={k}.", "pass the number of retrieved passages to count.")
    hits = [g in list(docs)[:k] for docs, g in zip(retrieved, gold)]
    return sum(hits) / len(hits) if hits else 0.0


# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
T95_QUANTILES = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the 95% confidence interval of the mean (Student's t) of repeated runs."""
    n = len(values)
    if n < 2:
        raise CourseError(f"mean_interval needs at least 2 values (seeds), got {n}.", "run the setting with two or more seeds.")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (T95_QUANTILES[n - 2] if n - 1 <= len(T95_QUANTILES) else 1.96) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "n": n}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (95% for the default ``z``; Wilson 1927).

    With p = successes / n: (p + z²/2n ± z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n). Unlike the Wald interval p ± z·√(p(1-p)/n)
    it stays inside [0, 1] and does not shrink to a point at p = 0 or 1.
    """
    if n < 1 or not 0 <= successes <= n:
        raise CourseError(f"wilson_interval needs 0 <= successes <= n and n >= 1, got {successes} of {n}.",
                          "pass the number of correct examples and the number of examples.")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def share_interval(successes: int, n: int, z: float = 1.96) -> dict[str, float]:
    """``successes / n`` as a dict, with its :func:`wilson_interval`: ``rate``, ``low``, ``high``, ``successes``, ``n``."""
    low, high = wilson_interval(successes, n, z)
    return {"rate": successes / n, "low": low, "high": high, "successes": successes, "n": n}


def mcnemar_test(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict:
    """McNemar's exact test: do models A and B, scored on the same examples, differ in accuracy?

    Only the discordant examples count: ``b_only`` (B right, A wrong) and ``a_only`` (A right, B wrong). If both models
    were equally good, each discordant example would fall either way with probability 1/2, so with n = b_only + a_only
    and k = min(b_only, a_only) the two-sided p-value is min(1, 2 · Σ_{i≤k} C(n, i) / 2ⁿ); with no discordant example
    it is 1.
    """
    _same_length(a_correct, b_correct)
    b_only = sum(bool(b) and not a for a, b in zip(a_correct, b_correct))
    a_only = sum(bool(a) and not b for a, b in zip(a_correct, b_correct))
    n, k = b_only + a_only, min(b_only, a_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return {"b_only": b_only, "a_only": a_only, "p_value": min(1.0, 2 * tail)}


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two raters' labels of the same items: (observed agreement - chance agreement) / (1 - chance).

    Chance agreement comes from each rater's own label shares; 1 is perfect agreement, 0 what chance gives.
    Two raters that each always give one label have no agreement beyond chance: 0 (scikit-learn returns NaN there).
    """
    _same_length(a, b)
    if not a:
        raise CourseError("cohen_kappa needs at least one item.", "pass two equally long lists of labels.")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    return 0.0 if chance == 1 else (observed - chance) / (1 - chance)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object an answer holds (a surrounding Markdown code fence is allowed), else ``None``."""
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return normalize_text(str(a)) == normalize_text(str(b))


def json_field_scores(prediction: str, reference: str) -> dict[str, bool]:
    """For each field of the reference object: does the predicted object hold the same value?"""
    expected, got = parse_json_object(reference) or {}, parse_json_object(prediction)
    return {key: got is not None and key in got and _same_value(got[key], value) for key, value in expected.items()}


def json_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Valid-JSON rate, accuracy per field of the reference objects, and the share with every field right."""
    _same_length(predictions, references)
    rows = [json_field_scores(p, r) for p, r in zip(predictions, references)]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    n = len(rows) or 1
    return {
        "valid_json": sum(parse_json_object(p) is not None for p in predictions) / n,
        "field_accuracy": {key: sum(row.get(key, False) for row in rows) / n for key in fields},
        "all_fields": sum(bool(row) and all(row.values()) for row in rows) / n,
    }


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an unconstrained answer names: an exact match, else the first label mentioned."""
    text = answer.strip().lower()
    for label in labels:
        if text == label.lower():
            return label
    hits = [(text.find(label.lower()), label) for label in labels if label.lower() in text]
    return min(hits)[1] if hits else None


def label_distribution(values: Sequence[Any]) -> dict[Any, int]:
    return dict(Counter(values).most_common())


def generation_checks(answers: Sequence[str], labels: Sequence[str] | None = None, max_words: int = 60) -> dict[str, float]:
    """LLM-free sanity checks of free generations: empty, label validity, length, repetition (looping).

    ``repeated_trigrams``: mean share of an answer's word 3-grams that repeat an earlier one;
    ``looping``: share of answers with a 3-gram seen three times or more.
    """
    def trigrams(text: str) -> list[tuple[str, ...]]:
        words = _words(text)
        return [tuple(words[i : i + 3]) for i in range(len(words) - 2)]

    n = len(answers) or 1
    grams = [trigrams(a) for a in answers]
    out = {
        "empty": sum(not a.strip() for a in answers) / n,
        "mean_words": sum(len(_words(a)) for a in answers) / n,
        "too_long": sum(len(_words(a)) > max_words for a in answers) / n,
        "repeated_trigrams": sum((len(g) - len(set(g))) / len(g) if g else 0.0 for g in grams) / n,
        "looping": sum(bool(g) and Counter(g).most_common(1)[0][1] >= 3 for g in grams) / n,
    }
    if labels is not None:
        out["valid_label"] = sum(a.strip() in labels for a in answers) / n
        out["names_a_label"] = sum(match_label(a, labels) is not None for a in answers) / n
    return out





def pooled_perplexity(per_text: Sequence[tuple[float, int]]) -> float:
    """exp(total negative log-likelihood / total predicted tokens) over ``(nll, tokens)`` pairs."""
    return math.exp(sum(n for n, _ in per_text) / max(1, sum(c for _, c in per_text)))
