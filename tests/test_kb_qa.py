"""Lesson 11's knowledge-base QA data, QA metrics, BM25 retrieval, and the hand-written ROUGE against rouge-score."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
from rouge_score import rouge_scorer

from ftcourse import paths
from ftcourse.course import bundled
from ftcourse.course.kb_qa import NOT_IN_MANUAL, manual_chapters, manual_retriever, qa_prompt, qa_records
from ftcourse.data import read_dataset
from ftcourse.errors import CourseError
from ftcourse.metrics import normalize_text, qa_metrics, recall_at_k, rouge_scores, squad_normalize, token_f1
from ftcourse.retrieval import BM25Retriever, Chunk, bm25_tokens, chunk_text

GENERATOR = paths.data_dir() / "tools" / "make_kb_qa.py"


@pytest.fixture(scope="module")
def qa():
    return bundled.kb_qa_records()


def test_the_committed_file_is_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_qa_data_validates_and_is_big_enough(qa):
    data = read_dataset(paths.data_dir() / "raw" / "kb_qa.jsonl")
    assert data.fmt == "alpaca" and len(data) >= 150
    assert len(qa["train"]) + len(qa["test"]) == len(data)
    for split in qa.values():  # both splits hold answerable and "not in the manual" questions
        kinds = Counter(r["output"] == NOT_IN_MANUAL for r in split)
        assert kinds[True] >= 3 and kinds[False] >= 20


def test_split_is_by_fact_with_no_leakage(qa):
    train_facts = {r["fact_id"] for r in qa["train"]}
    test_facts = {r["fact_id"] for r in qa["test"]}
    assert train_facts and test_facts and not train_facts & test_facts
    train_questions = {normalize_text(r["instruction"]) for r in qa["train"]}
    assert not any(normalize_text(r["instruction"]) in train_questions for r in qa["test"])
    answerable_train = {r["output"] for r in qa["train"] if r["source"]}
    # a test answer may coincide with a train answer only as a short number or duration, never as a named fact
    shared = {r["output"] for r in qa["test"] if r["source"] and r["output"] in answerable_train}
    assert all(len(a.split()) <= 2 for a in shared), shared


def test_every_answer_span_occurs_in_its_document(qa):
    chapters = manual_chapters()
    for r in qa["train"] + qa["test"]:
        if r["source"] is None:
            assert r["output"] == NOT_IN_MANUAL
        else:
            assert r["output"] in chapters[r["source"]], (r["fact_id"], r["source"])


def test_squad_normalisation_matches_the_official_script():
    # SQuAD v1.1 evaluate script: lower, delete punctuation (no space), drop articles, collapse white space
    assert squad_normalize("The  E-104 error, an  Example!") == "e104 error example"
    assert squad_normalize("Theatre") == "theatre"  # 'the' only as a whole word
    assert token_f1("the Wi-Fi password", "Wi-Fi password rejected") == pytest.approx(0.8)
    assert token_f1("", "265 g") == 0.0


def test_qa_metrics_score_not_in_the_manual_answers():
    m = qa_metrics(["265 g.", "It weighs 265 g", "The manual does not say", "250"], ["265 g", "265 g", NOT_IN_MANUAL, NOT_IN_MANUAL], NOT_IN_MANUAL)
    assert m["exact_match"] == pytest.approx(0.5) and m["f1"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)  # "it weighs 265 g": P 2/4, R 2/2
    assert m["abstain_rate"] == 0.5 and m["false_abstain_rate"] == 0.0 and m["n_unanswerable"] == 2
    assert qa_metrics([NOT_IN_MANUAL], ["265 g"], NOT_IN_MANUAL)["false_abstain_rate"] == 1.0
    lenient = qa_metrics(["The manual does not say. It might be 300 g."], [NOT_IN_MANUAL], NOT_IN_MANUAL)
    assert lenient["abstain_rate"] == 1.0  # contains the phrase: counted (SQuAD 2.0 would want an empty answer)


def test_recall_at_k():
    retrieved = [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "d"]]
    assert recall_at_k(retrieved, ["a", "a", "a"], 1) == pytest.approx(1 / 3)
    assert recall_at_k(retrieved, ["a", "a", "a"], 2) == pytest.approx(2 / 3)
    with pytest.raises(CourseError, match="k >= 1"):
        recall_at_k(retrieved, ["a", "a", "a"], 0)


def test_chunks_keep_paragraphs_their_heading_and_size():
    text = "# Title\n\nIntro words here.\n\n## Power\n\n" + "\n\n".join(f"Paragraph {i} " + "w " * 30 for i in range(4))
    chunks = chunk_text("train/x.md", text, max_words=70)
    assert [c.text.split("\n\n")[0] for c in chunks] == ["Title.", "Power.", "Power."]
    assert all(len(c.text.split()) <= 70 + 1 for c in chunks)  # + the heading
    assert "".join(c.text for c in chunks).count("Paragraph") == 4
    with pytest.raises(CourseError, match="max_words"):
        chunk_text("x", text, max_words=0)


def test_bm25_scores_equal_the_formula():
    chunks = [Chunk("a", "error E-104 cloud unreachable"), Chunk("b", "the ring is amber amber"), Chunk("c", "pairing window")]
    retriever = BM25Retriever(chunks, k1=1.5, b=0.75)
    docs = [bm25_tokens(c.text) for c in chunks]
    avg = sum(map(len, docs)) / len(docs)

    def by_hand(query: str, doc: list[str]) -> float:
        score = 0.0
        for term in bm25_tokens(query):
            n = sum(term in d for d in docs)
            idf = math.log((len(docs) - n + 0.5) / (n + 0.5))
            tf = doc.count(term)
            score += idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * len(doc) / avg))
        return score

    for query in ("amber ring", "E-104"):
        assert retriever.scores(query) == pytest.approx([by_hand(query, d) for d in docs])
    assert retriever.search("amber ring", 1)[0].source == "b"


def test_retrieval_over_the_manuals_finds_the_chapter():
    retriever = manual_retriever()
    sources = [c.source for c in retriever.search("What does the Halo ring colour pulsing purple mean?", 3)]
    assert "train/09_led_codes.md" in sources
    with pytest.raises(CourseError, match="at least one passage"):
        BM25Retriever([])


def test_prompts_hold_the_passages_and_the_not_in_manual_instruction(qa):
    passages = [Chunk("train/11_specs.md", "Weight 265 g")]
    messages = qa_prompt("How heavy is it?", passages)
    assert NOT_IN_MANUAL in messages[0]["content"]
    assert "[1] (train/11_specs.md)\nWeight 265 g" in messages[1]["content"] and messages[1]["content"].endswith("How heavy is it?")
    records = qa_records(qa["test"][:2], manual_retriever(), k=2)
    assert records[0]["messages"][-1] == {"role": "assistant", "content": qa["test"][0]["output"]}
    assert records[0]["messages"][1]["content"].count("] (train/") == 2


@pytest.mark.parametrize("prediction, reference", [
    ("Restart the hub and check the router", "Restart the router, then check the hub again"),
    ("The hub is on the network but cannot reach Lumora Cloud", "Lumora Cloud cannot be reached from the network"),
    ("a b a c", "a c b a a"),
    ("nothing in common", "entirely different words"),
    ("error_code E-104: reset at 5 °C, naïve café", "E-104 means a naïve reset; error code at 5°C"),  # '_' and non-ASCII split words
])
def test_course_rouge_equals_rouge_score(prediction, reference):
    """The course's hand-written ROUGE-1/L F1 equals Google's rouge-score (no stemming), also where words hold '_' or non-ASCII."""
    expected = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False).score(reference, prediction)
    ours = rouge_scores(prediction, reference)
    assert ours["rouge1"] == pytest.approx(expected["rouge1"].fmeasure)
    assert ours["rougeL"] == pytest.approx(expected["rougeL"].fmeasure)
