"""Checks of exercise 11, knowledge-base QA (``solutions/ex11_knowledge_base_qa.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values and the
outputs of their functions into plain data, and a judge that decides. The practice cases are here; the hidden inputs
and expected answers the grader uses are in ``solutions/hidden/ex11.json``.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any

from ftcourse.course.checks.core import Case, CheckFailed, describe, expect, forbid_source_helpers, graded_check, is_close, output_of, outputs_of, run_learner

__all__ = ["check_ex11_task1", "check_ex11_task2", "check_ex11_task3", "check_ex11_task4", "EX11_LEVERS"]


def _number(value: Any, kind: str, name: str) -> float:
    expect(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
           f"`{name}` returns a {kind}, not a number.", "return a float.")
    return float(value)


# ---------------------------------------------------------------- task 1: SQuAD normalisation and token F1

_SQUAD_HELPERS = {"squad_normalize": "ftcourse.metrics.squad_normalize", "token_f1": "ftcourse.metrics.token_f1",
                  "qa_metrics": "ftcourse.metrics.qa_metrics", "says_unanswerable": "ftcourse.metrics.says_unanswerable"}


@graded_check({"inputs": {"texts": ["The E-104 error", "  An   Action button! ", "Theatre, a Wi-Fi 6 router.", "Chalk White, Graphite"],
                          "pairs": [["It weighs 265 g", "265 g"], ["the Wi-Fi password", "Wi-Fi password rejected"], ["a a b", "a b b"],
                                    ["nothing", "265 g"], ["The manual: 24 months", "24 months"]]},
               "expected": {"normalized": ["e104 error", "action button", "theatre wifi 6 router", "chalk white graphite"],
                            "f1": [2 / 3, 0.8, 2 / 3, 0.0, 0.8]}})
def check_ex11_task1(inputs, normalize_answer, f1) -> dict:
    """``normalize_answer(text)``: SQuAD's normalisation; ``f1(prediction, reference)``: token F1 of the normalised words."""
    return {"normalized": [run_learner(normalize_answer, text) for text in inputs["texts"]],
            "f1": [run_learner(f1, prediction, reference) for prediction, reference in inputs["pairs"]]}


def _normalize_hint(text: str, got: str) -> str:
    """The mistake behind a wrong normalisation of ``text``, when it is a tempting one."""
    lower = text.lower()
    squad_punct = lower.translate(str.maketrans("", "", string.punctuation))
    articles = re.compile(r"\b(a|an|the)\b")
    if got == " ".join(lower.split()):
        return "lower-casing is not enough: also delete punctuation and the words a, an, the."
    if got == " ".join(articles.sub(" ", re.sub(r"[^\w\s]", " ", lower)).split()):
        return "SQuAD deletes punctuation without putting a space in its place: a hyphenated code stays one word."
    if got == " ".join(squad_punct.split()):
        return "drop the articles a, an and the as whole words (after deleting punctuation)."
    if got == " ".join(articles.sub(" ", lower).translate(str.maketrans("", "", string.punctuation)).split()):
        return ("delete the punctuation first, then drop the articles: in a code such as 'A-1' the hyphen makes 'a' look like a "
                "whole word, but after deleting punctuation it is part of 'a1'.")
    if got == " ".join(articles.sub(" ", re.sub(r"[^\w\s]", "", lower)).split()):
        return "delete exactly the ASCII punctuation, string.punctuation: it includes '_' and does not include typographic quotes."
    if articles.sub(" ", squad_punct) != squad_punct and len(got) < len(" ".join(articles.sub(" ", squad_punct).split())):
        return "remove the articles only as whole words (\\b in a regular expression), not inside other words."
    return "lower-case, delete string.punctuation, drop a/an/the as whole words, then join the words with single spaces."


def _f1_of(pred: list[str], ref: list[str], overlap: int) -> float:
    if not overlap:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def _f1_hint(prediction: str, reference: str, got: float) -> str:
    """The mistake behind a wrong token F1, when it is a tempting one."""
    pred, ref = _squad_words(prediction), _squad_words(reference)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    sets = len(set(pred) & set(ref))
    raw_p, raw_r = prediction.split(), reference.split()
    if is_close(got, _f1_of(list(set(pred)), list(set(ref)), sets), 1e-6):
        return "a word repeated in both counts as many times as it appears in both: count the overlap with Counter(pred) & Counter(ref)."
    if is_close(got, _f1_of(raw_p, raw_r, sum((Counter(raw_p) & Counter(raw_r)).values())), 1e-6):
        return "normalise both answers (your normalize_answer) before splitting them into words."
    if pred and ref and is_close(got, overlap / len(set(pred) | set(ref)), 1e-6):
        return "that is overlap / union (Jaccard); F1 is the harmonic mean of precision and recall."
    if pred and ref and (is_close(got, overlap / len(pred), 1e-6) or is_close(got, overlap / len(ref), 1e-6)):
        return "that is precision (or recall) alone; F1 = 2PR / (P + R)."
    return ("normalise both, split into words, overlap = sum((Counter(pred) & Counter(ref)).values()); precision = overlap / "
            "len(pred), recall = overlap / len(ref), F1 = 2PR / (P + R); 0 when no word overlaps.")


@check_ex11_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    for name in ("normalize_answer", "f1"):
        forbid_source_helpers(case, name, _SQUAD_HELPERS, "normalise and count the words yourself; that is the exercise.")
    texts, pairs = case.inputs["texts"], case.inputs["pairs"]
    normalized = outputs_of({"outputs": data.get("normalized")}, len(texts), "normalize_answer", "define def normalize_answer(text): ...")
    for text, want, (got, kind) in zip(texts, case.expected["normalized"], normalized):
        expect(isinstance(got, str), f"normalize_answer({text!r}) returns a {kind}, not a string.", "return the normalised text.")
        expect(got == want, f"normalize_answer({text!r}) returns {got!r}, which is not SQuAD's normalisation of it.", _normalize_hint(text, got))
    scores = outputs_of({"outputs": data.get("f1")}, len(pairs), "f1", "define def f1(prediction, reference): ...")
    for (prediction, reference), want, (value, kind) in zip(pairs, case.expected["f1"], scores):
        got = _number(value, kind, "f1")
        expect(is_close(got, want, 1e-6), f"f1({prediction!r}, {reference!r}) is {got:.4f}, which is not SQuAD's token F1.",
               _f1_hint(prediction, reference, got))
    return (f"SQuAD's normalisation on {len(texts)} {case.kind} texts and its token F1 on {len(pairs)} pairs. "
            "The grader runs more cases.")


def _squad_words(text: str) -> list[str]:
    """SQuAD's normalised words of ``text`` (for diagnosing a wrong F1; the expected answers come from the case)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


# ---------------------------------------------------------------- task 2: recall@k


@graded_check({"inputs": {"cases": [[[["a", "b", "c", "d"], ["b", "a", "a", "c"], ["c", "d", "b", "a"], ["d", "c", "b", "a"], ["a"]],
                                     ["a", "a", "a", "e", "a"], k] for k in (1, 2, 3, 5)]},
               "expected": {"recall": [0.4, 0.6, 0.6, 0.8]}})
def check_ex11_task2(inputs, recall_at_k) -> dict:
    """``recall_at_k(retrieved, gold, k)``: share of queries whose gold document is among their first k retrieved."""
    return {"outputs": [run_learner(recall_at_k, [list(d) for d in retrieved], list(gold), k) for retrieved, gold, k in inputs["cases"]]}


def _recall_hint(retrieved: list, gold: list, k: int, got: float) -> str:
    def share(hits) -> float:
        return sum(hits) / len(gold)

    if is_close(got, share(d[:k].count(g) for d, g in zip(retrieved, gold)), 1e-9):
        return "a query is a hit once, even if its gold document is retrieved twice: test `gold in docs[:k]`, do not count occurrences."
    if is_close(got, sum(g in d[:k] for d, g in zip(retrieved, gold)), 1e-9):
        return "divide the number of hits by the number of queries: recall is a share, between 0 and 1."
    if is_close(got, share(d[:k].count(g) for d, g in zip(retrieved, gold)) / k, 1e-9):
        return "that is precision@k (hits among the k retrieved); recall@k asks, per query, whether its gold document is among them."
    if any(is_close(got, share(g in d[:j] for d, g in zip(retrieved, gold)), 1e-9) for j in (k - 1, k + 1) if j >= 0):
        return "count the first k documents exactly: docs[:k] (off by one?)."
    if is_close(got, share(g in d for d, g in zip(retrieved, gold)), 1e-9):
        return "only the first k retrieved documents count: docs[:k]."
    return "for each query, 1 if its gold document is in docs[:k] (once, even if retrieved twice), else 0; then the mean over queries."


@check_ex11_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "recall_at_k", {"recall_at_k": "ftcourse.metrics.recall_at_k"},
                          "count the hits yourself; that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "recall_at_k", "define def recall_at_k(retrieved, gold, k): ...")
    for (retrieved, gold, k), want, (value, kind) in zip(cases, case.expected["recall"], outputs):
        got = _number(value, kind, "recall_at_k")
        expect(abs(got - want) < 1e-9, f"recall_at_k(..., k={k}) on the {case.kind} queries is {got:.4g}, which is not the recall@{k}.",
               _recall_hint(retrieved, gold, k, got))
    return f"right for {len(cases)} {case.kind} cases (short lists and duplicates included). The grader runs more cases."


# ---------------------------------------------------------------- task 3: BM25's idf by hand

_EX11_PASSAGES = [
    "The Halo lamp glows warm white.",
    "Halogen bulbs are not supported by the Halo dimmer.",
    "Error E-104 means the hub lost power; if E-104 returns, call support.",
    "Warranty: 24 months from delivery.",
    "Hold the button for ten seconds to reset the hub.",
    "Batteries are not covered by the warranty, the warranty says.",
    "Halogen heaters must stay away from the hub.",
    "Pair the sensor, then name it in the app.",
]


@graded_check({"inputs": {"cases": [{"passages": _EX11_PASSAGES, "terms": ["halo", "e-104", "warranty", "hub"]},
                                    {"manual_words": 120, "terms": ["e-104", "halo", "zigbee", "warranty"]}]},
               "expected": {}})
def check_ex11_task3(inputs, idf) -> dict:
    """``idf(term, passages)``: BM25's inverse document frequency of ``term`` over the texts ``passages`` (as rank_bm25 computes it);
    each case's passages are given or, with ``manual_words``, the manuals cut into passages of that many words."""
    outputs = []
    for part in inputs["cases"]:
        passages = part["passages"] if "passages" in part else _manual_passages(part["manual_words"])
        outputs.append([run_learner(idf, term, list(passages)) for term in part["terms"]])
    return {"outputs": outputs}


def _manual_passages(words: int) -> list[str]:
    from ftcourse.course.kb_qa import manual_chapters
    from ftcourse.retrieval import chunk_documents

    return [c.text for c in chunk_documents(manual_chapters(), max_words=int(words))]


def _bm25_idf(n_docs: int, n: int) -> float:
    """rank_bm25's (BM25Okapi's) idf of a term in ``n`` of ``n_docs`` passages, for a term in fewer than half of them."""
    return math.log((n_docs - n + 0.5) / (n + 0.5))


def _idf_hint(term: str, passages: list[str], got: float) -> str:
    from ftcourse.retrieval import bm25_tokens

    tokens = [bm25_tokens(p) for p in passages]
    n_docs, n = len(passages), sum(term in t for t in tokens)
    if is_close(got, _bm25_idf(n_docs, n) / math.log(10), 1e-9):
        return "BM25 uses the natural logarithm: math.log, not math.log10."
    if n and is_close(got, math.log(n_docs / n), 1e-9):
        return "that is the classic tf-idf idf; BM25's is ln((N - n + 0.5) / (n + 0.5))."
    if is_close(got, math.log(1 + (n_docs - n + 0.5) / (n + 0.5)), 1e-9):
        return "that is Lucene's variant, ln(1 + ...); rank_bm25's BM25Okapi (the course's) uses ln((N - n + 0.5) / (n + 0.5))."
    if is_close(got, _bm25_idf(n_docs, sum(t.count(term) for t in tokens)), 1e-9):
        return "n(t) counts the passages that contain the term at least once, not its occurrences."
    if is_close(got, _bm25_idf(n_docs, sum(term in p.lower() for p in passages)), 1e-9):
        return "a passage contains a term when one of its tokens IS the term, not when the text contains it as a substring."
    if is_close(got, _bm25_idf(n_docs, sum(term in p.split() or term in p.lower().split() for p in passages)), 1e-9):
        return "tokenise each passage with bm25_tokens (lower-cased, punctuation split off), not str.split()."
    return ("N = the number of `passages` you are given, n = how many of them contain the term (bm25_tokens of each); "
            "idf = ln((N - n + 0.5) / (n + 0.5)).")


@check_ex11_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from ftcourse.retrieval import bm25_tokens

    forbid_source_helpers(case, "idf", {"BM25Okapi": "rank_bm25.BM25Okapi", "BM25Retriever": "ftcourse.retrieval.BM25Retriever",
                                        "manual_retriever": "ftcourse.course.kb_qa.manual_retriever"},
                          "count the passages that contain the term yourself; that is the exercise.")
    parts, collected = case.inputs["cases"], data.get("outputs")
    expect(isinstance(collected, list) and len(collected) == len(parts), "no output of `idf` was collected.",
           "define def idf(term, passages): ... and run the task's cell.")
    for part, entries in zip(parts, collected):
        passages = part["passages"] if "passages" in part else _manual_passages(part["manual_words"])
        expect(isinstance(entries, list) and len(entries) == len(part["terms"]), "no output of `idf` was collected.",
               "define def idf(term, passages): ... and run the task's cell.")
        tokens = [set(bm25_tokens(p)) for p in passages]
        for term, entry in zip(part["terms"], entries):
            got = _number(*output_of(entry, "idf", "define def idf(term, passages): ..."), "idf")
            want = _bm25_idf(len(passages), sum(term in t for t in tokens))
            where = "the manuals' passages" if "manual_words" in part else f"a {case.kind} set of {len(passages)} passages"
            expect(abs(got - want) <= 1e-6, f"idf({term!r}) over {where} is {got:.4f}, which is not BM25's idf.", _idf_hint(term, passages, got))
    return "equals rank_bm25's idf on every term: rare codes such as E-104 weigh far more than common words. The grader runs more cases."


# ---------------------------------------------------------------- task 4: fine-tune, retrieve, or both?

EX11_LEVERS = ("fine-tune", "retrieve", "both")


@graded_check({"inputs": {"scenarios": ["weekly_updates", "house_style", "abstain_and_quote"]}, "expected": {}})
def check_ex11_task4(inputs, choices) -> dict:
    """``choices``: for each scenario key, one of "fine-tune", "retrieve", "both"."""
    return {"choices": describe(choices)}


@check_ex11_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    scenarios = case.inputs["scenarios"]
    choices, kind = output_of(data.get("choices"), "choices")
    expect(isinstance(choices, dict) and set(choices) == set(scenarios), f"`choices` should be a dict with the keys {sorted(scenarios)}.",
           "fill in one answer per scenario.")
    for key in scenarios:
        expect(choices[key] in EX11_LEVERS, f"choices[{key!r}] is {str(choices[key])[:40]!r}.", 'answer "fine-tune", "retrieve" or "both".')
    wrong = sorted(key for key, want in case.expected.get("choices", {}).items() if choices.get(key) != want)
    if wrong:
        raise CheckFailed(f"the choice for {', '.join(wrong)} does not fit what the scenario needs.",
                          "for each scenario ask two questions: does it need facts that change or must be quoted (retrieval puts "
                          "current text into the prompt)? Does it need a behaviour — a format, a length, a refusal — that the "
                          "model does not show yet (fine-tuning changes behaviour)? One yes picks one lever, two pick both.")
    if not case.expected:
        return f"{len(scenarios)} answers recorded. The grader judges them; this self-check only checks their form."
    return "retrieval for changing facts, fine-tuning for behaviour, both when you need current facts *and* a trained behaviour."
