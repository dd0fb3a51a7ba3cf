"""Retrieval over the product manuals for knowledge-base QA (lesson 11): chunks, BM25, prompts with passages.

BM25 (Robertson & Zaragoza, 2009) scores a chunk for a query by summing, over the query's terms,
``idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``; the scoring itself is
``rank_bm25.BM25Okapi``. Metrics (recall@k, EM, F1) are in :mod:`ftcourse.metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rank_bm25 import BM25Okapi

from ftcourse.errors import CourseError

__all__ = ["bm25_tokens", "BM25Retriever", "Chunk", "chunk_documents", "chunk_text"]


@dataclass(frozen=True)
class Chunk:
    """A passage of one manual chapter: ``source`` is its path under ``domain_corpus/``."""

    source: str
    text: str


def chunk_text(source: str, text: str, max_words: int = 120) -> list[Chunk]:
    """Split one document into passages of whole paragraphs, at most ``max_words`` words each (a longer paragraph stays whole).

    Each passage starts with the section heading it falls under, so a table keeps its subject.
    """
    if max_words < 1:
        raise CourseError(f"chunk_text needs max_words >= 1, got {max_words}.", "pass a positive passage size in words.")
    chunks: list[Chunk] = []
    heading, current = "", []
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if para.startswith("#"):
            if current:
                chunks.append(Chunk(source, "\n\n".join(current)))
            heading, current = para.splitlines()[0].lstrip("# ").strip(), []
            continue
        words = sum(len(p.split()) for p in current)
        if current and words + len(para.split()) > max_words:
            chunks.append(Chunk(source, "\n\n".join(current)))
            current = []
        if not current and heading:
            current.append(heading + ".")
        current.append(para)
    if current:
        chunks.append(Chunk(source, "\n\n".join(current)))
    return chunks


def chunk_documents(documents: dict[str, str], max_words: int = 120) -> list[Chunk]:
    """:func:`chunk_text` over every document, in order."""
    return [chunk for source, text in documents.items() for chunk in chunk_text(source, text, max_words)]


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; hyphenated codes such as ``E-104`` or ``DS-2`` stay one token."""
    return re.findall(r"\w+(?:[-.]\w+)*", text.lower())


class BM25Retriever:
    """BM25 (Okapi) over passages; ``search`` returns the ``k`` best, best first."""

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75):
        if not chunks:
            raise CourseError("BM25Retriever needs at least one passage (chunks is empty).", "pass chunk_documents(documents) with at least one document.")
        self.chunks = list(chunks)
        self.bm25 = BM25Okapi([bm25_tokens(c.text) for c in self.chunks], k1=k1, b=b)

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every passage for ``query``."""
        return [float(s) for s in self.bm25.get_scores(bm25_tokens(query))]

    def search(self, query: str, k: int = 3) -> list[Chunk]:
        """The ``k`` highest-scoring passages (ties keep corpus order)."""
        scores = self.scores(query)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [self.chunks[i] for i in order[:k]]
