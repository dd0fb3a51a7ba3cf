"""Lesson 11's knowledge base: the Lumora Home Hub H2 manuals, their BM25 retriever, and the QA prompts.

Questions whose answer is not in the manuals have the reference :data:`NOT_IN_MANUAL`; score answers with
``ftcourse.metrics.qa_metrics(predictions, references, unanswerable=NOT_IN_MANUAL)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.retrieval import BM25Retriever, Chunk, chunk_documents

__all__ = ["manual_chapters", "manual_retriever", "NOT_IN_MANUAL", "qa_prompt", "qa_records", "QA_SYSTEM"]

#: The answer to a question the manuals do not answer (training target, and what the metrics look for).
NOT_IN_MANUAL = "The manual does not say."
QA_SYSTEM = (
    "You answer questions about the Lumora Home Hub H2 with a short phrase from its manual. "
    f"If the manual does not contain the answer, reply exactly: {NOT_IN_MANUAL}"
)


def manual_chapters(folder: str | Path | None = None) -> dict[str, str]:
    """The manuals the knowledge base holds: ``domain_corpus/train/*.md`` by path under ``domain_corpus/``."""
    root = paths.data_dir() / "raw" / "domain_corpus"
    folder = Path(folder) if folder else root / "train"
    files = sorted(folder.glob("*.md"))
    if not files:
        raise CourseError(f"{folder} holds no .md chapters.", "pass folder= pointing at a folder of Markdown manuals.")
    return {(p.relative_to(root) if p.is_relative_to(root) else p).as_posix(): p.read_text(encoding="utf-8") for p in files}


def manual_retriever(max_words: int = 120) -> BM25Retriever:
    """A BM25 retriever over the chunked product manuals."""
    return BM25Retriever(chunk_documents(manual_chapters(), max_words))


def qa_prompt(question: str, passages: Sequence[Chunk] = ()) -> list[dict[str, str]]:
    """Chat messages asking ``question``; with ``passages``, the manual excerpts come first (numbered, with their source)."""
    if passages:
        excerpts = "\n\n".join(f"[{i}] ({c.source})\n{c.text}" for i, c in enumerate(passages, 1))
        user = f"Manual excerpts:\n\n{excerpts}\n\nQuestion: {question}"
    else:
        user = f"Question: {question}"
    return [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": user}]


def qa_records(records: Sequence[dict[str, Any]], retriever: BM25Retriever | None = None, k: int = 3) -> list[dict[str, Any]]:
    """Chat training/evaluation records of QA pairs (``instruction`` → ``output``), with the top-``k`` passages when a retriever is given."""
    out = []
    for r in records:
        passages = retriever.search(r["instruction"], k) if retriever else ()
        messages = qa_prompt(r["instruction"], passages) + [{"role": "assistant", "content": r["output"]}]
        out.append({"messages": messages, "fact_id": r["fact_id"], "source": r["source"]})
    return out
