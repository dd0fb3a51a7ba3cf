"""Planted wrong answers of exercise 11: each tempting mistake fails its check with a hint that says why, on the practice
case and on the grader's hidden one (``tests/planted.py``); no failure message gives the expected value."""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter

import pytest

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed
from ftcourse.metrics import squad_normalize, token_f1
from ftcourse.retrieval import bm25_tokens
from ftcourse.tools.grading import grading_case, solutions_dir
from tests.planted import fails, passes

HIDDEN = json.loads((solutions_dir() / "hidden" / "ex11.json").read_text(encoding="utf-8"))


def _normalize(text):
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _f1(prediction, reference):
    pred, ref = _normalize(prediction).split(), _normalize(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def test_the_hidden_answers_are_the_course_metrics():
    from ftcourse.metrics import recall_at_k  # imported here: a module-level import would be read as the learner's recall_at_k

    task1, task2 = HIDDEN["check_ex11_task1"], HIDDEN["check_ex11_task2"]
    assert task1["expected"]["normalized"] == [squad_normalize(t) for t in task1["inputs"]["texts"]]
    assert task1["expected"]["f1"] == [token_f1(p, r) for p, r in task1["inputs"]["pairs"]]
    assert task2["expected"]["recall"] == [recall_at_k(r, g, k) for r, g, k in task2["inputs"]["cases"]]


def test_task1_accepts_squad_and_rejects_wrong_normalisations():
    assert "The grader runs more cases" in passes(checks.check_ex11_task1, _normalize, _f1)
    lower_only = lambda t: " ".join(t.lower().split())  # noqa: E731
    fails(checks.check_ex11_task1, lower_only, _f1, hint="also delete punctuation and the words a, an, the")
    spaced = lambda t: " ".join(re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", t.lower())).split())  # noqa: E731
    fails(checks.check_ex11_task1, spaced, _f1, hint="without putting a space in its place")
    keeps_articles = lambda t: " ".join(t.lower().translate(str.maketrans("", "", string.punctuation)).split())  # noqa: E731
    fails(checks.check_ex11_task1, keeps_articles, _f1, hint="drop the articles")
    substring = lambda t: " ".join(t.lower().translate(str.maketrans("", "", string.punctuation)).replace("the", " ")  # noqa: E731
                                   .replace(" an ", " ").replace(" a ", " ").split())
    fails(checks.check_ex11_task1, substring, _f1, hint="whole word")


def test_task1_hidden_case_rejects_articles_first_and_unicode_punctuation():
    """Two mistakes the practice texts do not show: the grader's texts catch them."""
    articles_first = lambda t: " ".join(re.sub(r"\b(a|an|the)\b", " ", t.lower()).translate(str.maketrans("", "", string.punctuation)).split())  # noqa: E731
    regex_punctuation = lambda t: " ".join(re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", "", t.lower())).split())  # noqa: E731
    for wrong, hint in ((articles_first, "delete the punctuation first"), (regex_punctuation, "string.punctuation")):
        with pytest.raises(CheckFailed, match=re.escape(hint)) as info:
            checks.check_ex11_task1.verify_case(grading_case(checks.check_ex11_task1), wrong, _f1, hidden=True)
        assert not any(want in str(info.value) for want in HIDDEN["check_ex11_task1"]["expected"]["normalized"])


def test_task1_rejects_set_overlap_unnormalised_and_jaccard_f1_and_the_course_helpers():
    def set_f1(pred, ref):
        p, r = set(_normalize(pred).split()), set(_normalize(ref).split())
        overlap = len(p & r)
        return 0.0 if not overlap else 2 * overlap / (len(p) + len(r))

    def raw_f1(pred, ref):
        p, r = pred.split(), ref.split()
        overlap = sum((Counter(p) & Counter(r)).values())
        return 0.0 if not overlap else 2 * overlap / (len(p) + len(r))

    def jaccard(pred, ref):
        p, r = _normalize(pred).split(), _normalize(ref).split()
        return sum((Counter(p) & Counter(r)).values()) / len(set(p) | set(r)) if p and r else 0.0

    def normalize_answer(text):
        return squad_normalize(text)

    fails(checks.check_ex11_task1, _normalize, set_f1, hint="Counter(pred) & Counter(ref)")
    fails(checks.check_ex11_task1, _normalize, raw_f1, hint="normalise both answers")
    fails(checks.check_ex11_task1, _normalize, jaccard, hint="Jaccard")
    fails(checks.check_ex11_task1, normalize_answer, _f1, hint="the course's helper")


def _recall(retrieved, gold, k):
    return sum(g in list(docs)[:k] for docs, g in zip(retrieved, gold)) / len(gold)


def test_task2_accepts_recall_and_rejects_off_by_one_counts_precision_and_the_helper():
    assert "The grader runs more cases" in passes(checks.check_ex11_task2, _recall)
    fails(checks.check_ex11_task2, lambda r, g, k: sum(x in d[: k + 1] for d, x in zip(r, g)) / len(g), hint="off by one")
    fails(checks.check_ex11_task2, lambda r, g, k: sum(x in d[:k] for d, x in zip(r, g)), hint="divide the number of hits")
    fails(checks.check_ex11_task2, lambda r, g, k: sum(d[:k].count(x) for d, x in zip(r, g)) / len(g), hint="once, even if")
    fails(checks.check_ex11_task2, lambda r, g, k: sum(d[:k].count(x) for d, x in zip(r, g)) / len(g) / k, hint="precision@k")
    fails(checks.check_ex11_task2, lambda r, g, k: sum(x in d for d, x in zip(r, g)) / len(g), hint="only the first k")

    def recall_at_k_(retrieved, gold, k):
        from ftcourse.metrics import recall_at_k

        return recall_at_k(retrieved, gold, k)

    fails(checks.check_ex11_task2, recall_at_k_, hint="the course's helper")


def _idf_with(count):
    """An idf over the given passages with ``count(term, passages)`` as n(t)."""
    return lambda term, passages: math.log((len(passages) - count(term, passages) + 0.5) / (count(term, passages) + 0.5))


def _n(term, passages):
    return sum(term in bm25_tokens(p) for p in passages)


def test_task3_accepts_bm25_idf_and_rejects_log10_tfidf_lucene_occurrences_substrings_and_split():
    assert "rank_bm25" in passes(checks.check_ex11_task3, _idf_with(_n))
    fails(checks.check_ex11_task3, lambda t, ps: math.log10((len(ps) - _n(t, ps) + 0.5) / (_n(t, ps) + 0.5)), hint="not math.log10")
    fails(checks.check_ex11_task3, lambda t, ps: math.log(len(ps) / _n(t, ps)), hint="classic tf-idf")
    fails(checks.check_ex11_task3, lambda t, ps: math.log(1 + (len(ps) - _n(t, ps) + 0.5) / (_n(t, ps) + 0.5)), hint="Lucene")
    fails(checks.check_ex11_task3, _idf_with(lambda t, ps: sum(bm25_tokens(p).count(t) for p in ps)), hint="not its occurrences")
    fails(checks.check_ex11_task3, _idf_with(lambda t, ps: sum(t in p.lower() for p in ps)), hint="substring")
    fails(checks.check_ex11_task3, _idf_with(lambda t, ps: sum(t in p.lower().split() for p in ps)), hint="not str.split()")


def test_task3_rejects_an_idf_that_ignores_the_passages_and_rank_bm25():
    from ftcourse.course.kb_qa import manual_retriever

    retriever = manual_retriever()
    fails(checks.check_ex11_task3, lambda term, passages: retriever.bm25.idf.get(term, 0.0), hint="you are given")

    def idf(term, passages):
        from rank_bm25 import BM25Okapi

        return BM25Okapi([bm25_tokens(p) for p in passages]).idf[term]

    fails(checks.check_ex11_task3, idf, hint="the course's helper")


RIGHT_TASK4 = {"weekly_updates": "retrieve", "house_style": "fine-tune", "abstain_and_quote": "both"}


def test_task4_the_self_check_judges_only_the_form_and_the_grader_the_choices():
    """Every option passes the learner's self-check (it could be tried until it passes); only the grader judges."""
    assert "The grader judges them" in checks.check_ex11_task4.verify({**RIGHT_TASK4, "house_style": "retrieve"})
    assert "The grader judges them" in passes(checks.check_ex11_task4, RIGHT_TASK4)
    hidden = grading_case(checks.check_ex11_task4)
    assert "fine-tuning for behaviour" in checks.check_ex11_task4.verify_case(hidden, RIGHT_TASK4, hidden=True)
    fails(checks.check_ex11_task4, {**RIGHT_TASK4, "house_style": "prompt"}, hint='"fine-tune", "retrieve" or "both"')
    fails(checks.check_ex11_task4, {"weekly_updates": "retrieve"}, hint="one answer per scenario")
    for key in RIGHT_TASK4:
        for wrong in {"fine-tune", "retrieve", "both"} - {RIGHT_TASK4[key]}:
            with pytest.raises(CheckFailed) as info:
                checks.check_ex11_task4.verify_case(grading_case(checks.check_ex11_task4), {**RIGHT_TASK4, key: wrong}, hidden=True)
            assert key in info.value.what and not any(f'"{lever}"' in info.value.hint for lever in ("fine-tune", "retrieve", "both"))
