"""Exercise 11's checks accept the right answers and reject the tempting wrong ones with a hint that teaches."""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import pytest

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed
from ftcourse.course.kb_qa import manual_retriever
from ftcourse.metrics import recall_at_k, squad_normalize, token_f1
from ftcourse.retrieval import bm25_tokens


@pytest.fixture(scope="module")
def retriever():
    return manual_retriever()


def _fails(check, *args, hint: str) -> None:
    with pytest.raises(CheckFailed) as caught:
        check.verify(*args)
    assert hint in caught.value.hint, caught.value.hint


def test_task1_accepts_squad_and_rejects_wrong_normalisations():
    assert "hidden cases" in checks.check_ex11_task1.verify(squad_normalize, token_f1)
    lower_only = lambda t: " ".join(t.lower().split())  # noqa: E731
    _fails(checks.check_ex11_task1, lower_only, token_f1, hint="also delete punctuation and the words a, an, the")
    spaced = lambda t: " ".join(re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", t.lower())).split())  # noqa: E731
    _fails(checks.check_ex11_task1, spaced, token_f1, hint="without putting a space in its place")
    keeps_articles = lambda t: " ".join(t.lower().translate(str.maketrans("", "", string.punctuation)).split())  # noqa: E731
    _fails(checks.check_ex11_task1, keeps_articles, token_f1, hint="drop the articles")
    substring = lambda t: " ".join(t.lower().translate(str.maketrans("", "", string.punctuation)).replace("the", " ")  # noqa: E731
                                   .replace(" an ", " ").replace(" a ", " ").split())
    _fails(checks.check_ex11_task1, substring, token_f1, hint="whole word")


def test_task1_rejects_a_set_overlap_f1():
    def set_f1(pred, ref):
        p, r = set(squad_normalize(pred).split()), set(squad_normalize(ref).split())
        overlap = len(p & r)
        return 0.0 if not overlap else 2 * overlap / (len(p) + len(r))

    _fails(checks.check_ex11_task1, squad_normalize, set_f1, hint="Counter(pred) & Counter(ref)")


def test_task2_accepts_recall_and_rejects_off_by_one_and_counts():
    assert "k = 1, 2, 3, 5" in checks.check_ex11_task2.verify(recall_at_k)
    _fails(checks.check_ex11_task2, lambda r, g, k: sum(x in d[: k + 1] for d, x in zip(r, g)) / len(g), hint="off by one")
    _fails(checks.check_ex11_task2, lambda r, g, k: sum(x in d[:k] for d, x in zip(r, g)), hint="divide the number of hits")
    _fails(checks.check_ex11_task2, lambda r, g, k: sum(d[:k].count(x) for d, x in zip(r, g)) / len(g), hint="once, even if retrieved twice")


def test_task3_accepts_bm25_idf_and_rejects_log10_tfidf_and_occurrences(retriever):
    docs = [set(bm25_tokens(c.text)) for c in retriever.chunks]
    n = lambda t: sum(t in d for d in docs)  # noqa: E731
    right = lambda t: math.log((len(docs) - n(t) + 0.5) / (n(t) + 0.5))  # noqa: E731
    assert "rank_bm25" in checks.check_ex11_task3.verify(right, retriever)
    _fails(checks.check_ex11_task3, lambda t: math.log10((len(docs) - n(t) + 0.5) / (n(t) + 0.5)), retriever, hint="math.log, not math.log10")
    _fails(checks.check_ex11_task3, lambda t: math.log(len(docs) / n(t)), retriever, hint="classic tf-idf")
    counts = Counter(t for c in retriever.chunks for t in bm25_tokens(c.text))
    _fails(checks.check_ex11_task3, lambda t: math.log((len(docs) - counts[t] + 0.5) / (counts[t] + 0.5)), retriever,
           hint="at least once, not its occurrences")


def test_task4_judgement():
    right = {"weekly_updates": "retrieve", "house_style": "fine-tune", "abstain_and_quote": "both"}
    assert "retrieval for changing facts" in checks.check_ex11_task4.verify(right)
    _fails(checks.check_ex11_task4, {**right, "weekly_updates": "fine-tune"}, hint="re-indexing")
    _fails(checks.check_ex11_task4, {**right, "house_style": "retrieve"}, hint="behaviour")
    _fails(checks.check_ex11_task4, {**right, "abstain_and_quote": "retrieve"}, hint="fine-tune the reader")
    _fails(checks.check_ex11_task4, {**right, "house_style": "prompt"}, hint='"fine-tune", "retrieve" or "both"')
    _fails(checks.check_ex11_task4, {"weekly_updates": "retrieve"}, hint="one answer per scenario")
