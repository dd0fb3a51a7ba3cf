"""Curating training data: near-duplicates (word n-gram Jaccard, MinHash with LSH banding), decontamination by
shared n-grams, and keyboard typos for augmentation. Pure Python, no model and no torch.

MinHash (Broder, 1997) estimates the Jaccard similarity of two sets from ``num_perm`` random hash functions: the
probability that both sets have the same minimum under one function equals their Jaccard similarity. LSH banding
(Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3) cuts each signature into bands; two texts become a
candidate pair when one whole band agrees, so only candidates are compared exactly.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ftcourse.errors import CourseError

__all__ = [
    "add_typos", "candidate_probability", "contaminated", "jaccard", "minhash_signature", "minhash_similarity", "near_duplicates", "shingles", "words",
]

_PRIME = (1 << 61) - 1  # a Mersenne prime above every 60-bit item hash


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, apostrophes)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """The set of word ``n``-grams of ``text``; a text shorter than ``n`` words is one shingle of all its words."""
    tokens = words(text)
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def _item_hash(item: tuple[str, ...]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(item).encode(), digest_size=8).digest(), "big") >> 4


def _hash_parameters(num_perm: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(1, _PRIME), rng.randrange(_PRIME)) for _ in range(num_perm)]


def minhash_signature(items: set[tuple[str, ...]], num_perm: int = 64, seed: int = 0) -> list[int]:
    """``num_perm`` minima of the universal hashes ``(a·h(x) + b) mod p`` over the items (the same ``seed``, the same functions)."""
    if not items:
        raise CourseError("MinHash of an empty set.", "give every text at least one word (drop empty texts first).")
    hashes = [_item_hash(x) for x in items]
    return [min((a * h + b) % _PRIME for h in hashes) for a, b in _hash_parameters(num_perm, seed)]


def minhash_similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """The share of positions where two signatures agree: an estimate of the Jaccard similarity of their sets."""
    if len(a) != len(b):
        raise CourseError(f"Signatures of {len(a)} and {len(b)} hashes.", "build both with the same num_perm and seed.")
    return sum(x == y for x, y in zip(a, b)) / len(a)


def candidate_probability(similarity: float, num_perm: int = 120, bands: int = 40) -> float:
    """The probability that LSH banding makes a pair of this Jaccard similarity a candidate: 1 − (1 − s^rows)^bands."""
    return 1 - (1 - similarity ** (num_perm // bands)) ** bands


def near_duplicates(texts: Sequence[str], threshold: float = 0.5, n: int = 3, num_perm: int = 120, bands: int = 40,
                    seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, jaccard)`` of texts whose word ``n``-gram Jaccard similarity is at least ``threshold``, most similar first.

    Candidates come from LSH banding of MinHash signatures (``bands`` bands of ``num_perm // bands`` rows: a pair with
    similarity s becomes a candidate with probability :func:`candidate_probability`); each candidate is then checked
    exactly, so every pair returned is a true near-duplicate. With the defaults (40 bands of 3) a pair at 0.5 is missed
    with probability 0.005, at 0.6 with 0.00006.
    """
    if num_perm % bands:
        raise CourseError(f"num_perm={num_perm} does not split into {bands} bands.", "choose num_perm as a multiple of bands.")
    sets = [shingles(t, n) for t in texts]
    rows = num_perm // bands
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        if s:
            signature = minhash_signature(s, num_perm, seed)
            for band in range(bands):
                buckets[(band, *signature[band * rows:(band + 1) * rows])].append(i)
    candidates = {(a, b) for members in buckets.values() for k, a in enumerate(members) for b in members[k + 1:]}
    pairs = [(i, j, jaccard(sets[i], sets[j])) for i, j in candidates]
    return sorted((p for p in pairs if p[2] >= threshold), key=lambda p: (-p[2], p[0], p[1]))


def contaminated(test_texts: Sequence[str], train_texts: Iterable[str], n: int = 8) -> dict[int, tuple[str, ...]]:
    """Test texts that share a word ``n``-gram with any training text: index → one shared n-gram (the evidence).

    As in GPT-3's decontamination (Brown et al., 2020, with 13-grams over documents); short messages need a smaller
    ``n``. A test text shorter than ``n`` words counts when a training text contains all its words in a row.
    """
    seen: set[tuple[str, ...]] = set()
    short: list[str] = []
    for text in train_texts:
        seen |= shingles(text, n)
        short.append(" ".join(words(text)))
    found = {}
    for i, text in enumerate(test_texts):
        tokens = words(text)
        if len(tokens) < n:
            if tokens and any(f" {' '.join(tokens)} " in f" {s} " for s in short):
                found[i] = tuple(tokens)
        elif shared := shingles(text, n) & seen:
            found[i] = min(shared)
    return found


_TYPO_WORD = re.compile(r"[A-Za-z]{4,}")


def add_typos(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """``text`` with keyboard typos in about ``rate`` of its words of four letters or more: two letters swapped, one dropped or doubled."""
    def typo(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        i = rng.randrange(1, len(word) - 2)
        kind = rng.choice(("swap", "drop", "double"))
        if kind == "swap":
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        return word[:i] + word[i + 1:] if kind == "drop" else word[:i] + word[i] + word[i:]

    return _TYPO_WORD.sub(typo, text)
