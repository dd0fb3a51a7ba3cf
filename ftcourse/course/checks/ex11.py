"""Checks of exercise 11, knowledge-base QA (``solutions/ex11_knowledge_base_qa.ipynb``)."""

from __future__ import annotations

import math
import re

from ftcourse.course.checks.core import expect, expect_choices, is_close, self_check

__all__ = ["check_ex11_task1", "check_ex11_task2", "check_ex11_task3", "check_ex11_task4"]

_EX11_NORMALIZE_CASES = (
    ("The E-104 error", "e104 error"),
    ("  An   Action button! ", "action button"),
    ("Theatre, a Wi-Fi 6 router.", "theatre wifi 6 router"),
    ("Chalk White, Graphite", "chalk white graphite"),
)


@self_check
def check_ex11_task1(normalize_answer, f1) -> str:
    """``normalize_answer(text)``: SQuAD's normalisation; ``f1(prediction, reference)``: token F1 of the normalised words."""
    from ftcourse.metrics import token_f1

    expect(callable(normalize_answer) and callable(f1), "`normalize_answer` and `f1` must both be functions.",
           "define def normalize_answer(text): ... and def f1(prediction, reference): ...")
    for text, want in _EX11_NORMALIZE_CASES:
        got = normalize_answer(text)
        if isinstance(got, str) and got != want:
            if got == " ".join(text.lower().split()):
                hint = "lower-casing is not enough: also delete punctuation and the words a, an, the."
            elif "e 104" in got or "wi fi" in got:
                hint = "SQuAD deletes punctuation without putting a space in its place: 'E-104' becomes 'e104'."
            elif re.search(r"\b(the|an|a)\b", got):
                hint = "drop the articles a, an and the as whole words (after deleting punctuation); 'Theatre' stays."
            elif "atre" in got and "theatre" not in got:
                hint = "remove 'the' only as a whole word (\\b in a regular expression), not inside 'Theatre'."
            else:
                hint = "lower-case, delete string.punctuation, drop a/an/the, then join the words with single spaces."
            expect(False, f"normalize_answer({text!r}) returned {got!r}; SQuAD's normalisation gives {want!r}.", hint)
        expect(got == want, f"normalize_answer({text!r}) returned {got!r}, not a string.", "return the normalised text.")
    cases = [("It weighs 265 g", "265 g"), ("the Wi-Fi password", "Wi-Fi password rejected"), ("a a b", "a b b"),
             ("nothing", "265 g"), ("The manual: 24 months", "24 months")]
    for pred, ref in cases:
        got, want = f1(pred, ref), token_f1(pred, ref)
        expect(isinstance(got, (int, float)) and abs(got - want) < 1e-9, f"f1({pred!r}, {ref!r}) is {got}; the SQuAD token F1 is {want:.4f}.",
               "normalise both, split into words, count the overlap with Counter(pred) & Counter(ref) (repeats count once per "
               "match), then precision = overlap / len(pred), recall = overlap / len(ref), F1 = 2PR / (P + R); 0 when no overlap.")
    return f"matches SQuAD's normalisation on {len(_EX11_NORMALIZE_CASES)} hidden cases and its token F1 on {len(cases)}."


@self_check
def check_ex11_task2(recall_at_k) -> str:
    """``recall_at_k(retrieved, gold, k)``: share of queries whose gold document is among their first k retrieved."""
    from ftcourse.metrics import recall_at_k as right

    expect(callable(recall_at_k), "`recall_at_k` is not a function.", "define def recall_at_k(retrieved, gold, k): ...")
    retrieved = [["a", "b", "c", "d"], ["b", "a", "a", "c"], ["c", "d", "b", "a"], ["d", "c", "b", "a"], ["a"]]
    gold = ["a", "a", "a", "e", "a"]
    for k in (1, 2, 3, 5):
        got, want = recall_at_k(retrieved, gold, k), right(retrieved, gold, k)
        if isinstance(got, (int, float)) and abs(got - want) > 1e-9:
            if abs(got - sum(d[:k].count(g) for d, g in zip(retrieved, gold)) / len(gold)) < 1e-9:
                hint = "a query is a hit once, even if retrieved twice: test `gold in docs[:k]`, do not count occurrences."
            elif abs(got - sum(g in d[:k] for d, g in zip(retrieved, gold))) < 1e-9:
                hint = "divide the number of hits by the number of queries: recall is a share, between 0 and 1."
            elif abs(got - right(retrieved, gold, k + 1)) < 1e-9 or (k > 1 and abs(got - right(retrieved, gold, k - 1)) < 1e-9):
                hint = "count the first k documents exactly: docs[:k] (off by one?)."
            else:
                hint = "for each query, 1 if its gold document is in docs[:k] (once, even if retrieved twice), else 0; then the mean."
            expect(False, f"recall_at_k(..., k={k}) is {got}; it should be {want:.2f} on the hidden case.", hint)
        expect(isinstance(got, (int, float)), f"recall_at_k returned {got!r}, not a number.", "return the share as a float.")
    return "matches ftcourse's recall@k for k = 1, 2, 3, 5 on a hidden case (short lists and duplicates included)."


def _bm25_idf(n_docs: int, n: int) -> float:
    return math.log((n_docs - n + 0.5) / (n + 0.5))


@self_check
def check_ex11_task3(idf, retriever) -> str:
    """``idf(term)``: BM25's inverse document frequency of ``term`` over ``retriever``'s passages (as rank_bm25 computes it)."""
    expect(callable(idf), "`idf` is not a function.", "define def idf(term): ... over the passages' tokens.")
    from ftcourse.retrieval import bm25_tokens

    docs = [set(bm25_tokens(c.text)) for c in retriever.chunks]
    n_docs = len(docs)
    for term in ("e-104", "halo", "zigbee", "warranty"):
        n = sum(term in d for d in docs)
        want = retriever.bm25.idf[term]
        got = idf(term)
        if isinstance(got, (int, float)) and abs(got - want) > 1e-6:
            if is_close(got, _bm25_idf(n_docs, n) / math.log(10), 1e-9):
                hint = "BM25 uses the natural logarithm: math.log, not math.log10."
            elif n and abs(got - math.log(n_docs / n)) < 1e-6:
                hint = "that is the classic tf-idf idf; BM25's is ln((N - n + 0.5) / (n + 0.5))."
            elif is_close(got, _bm25_idf(n_docs, sum(bm25_tokens(c.text).count(term) for c in retriever.chunks)), 1e-9):
                hint = "n(t) counts the passages that contain the term at least once, not its occurrences."
            else:
                hint = "N = number of passages, n = passages containing the term; idf = ln((N - n + 0.5) / (n + 0.5))."
            expect(False, f"idf({term!r}) is {got}; rank_bm25 gives {want:.4f} ({n} of {n_docs} passages contain it).", hint)
        expect(isinstance(got, (int, float)), f"idf({term!r}) returned {got!r}, not a number.", "return the idf as a float.")
    return "equals rank_bm25's idf for 4 terms: rare codes such as E-104 weigh far more than common words."


_EX11_SCENARIOS = {
    "weekly_updates": ("retrieve", "facts change every week: re-indexing the manuals takes seconds; retraining an adapter "
                                   "every week does not, and closed-book weights go stale."),
    "house_style": ("fine-tune", "a fixed answer format on stable content is behaviour, which fine-tuning teaches; "
                                 "retrieval adds facts, not style."),
    "abstain_and_quote": ("both", "quoting current manuals needs retrieval, and saying 'the manual does not say' is a "
                                  "behaviour the base model with passages rarely shows: fine-tune the reader on retrieved passages."),
}


@self_check
def check_ex11_task4(choices) -> str:
    """``choices``: for each scenario key, one of "fine-tune", "retrieve", "both"."""
    expect_choices(choices, _EX11_SCENARIOS, ("fine-tune", "retrieve", "both"))
    return "retrieval for changing facts, fine-tuning for behaviour, both when you need current facts *and* a trained behaviour."
