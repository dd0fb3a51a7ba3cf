"""ftcourse.curation on small hand-made cases: shingles and Jaccard, MinHash's estimate, near-duplicates found through
LSH banding and checked exactly, decontamination by shared n-grams, and typos that keep a text's shape."""

from __future__ import annotations

import random

import pytest

from ftcourse.curation import (
    add_typos,
    candidate_probability,
    contaminated,
    jaccard,
    minhash_signature,
    minhash_similarity,
    near_duplicates,
    shingles,
    words,
)
from ftcourse.errors import CourseError


def test_shingles_are_lower_cased_word_ngrams():
    assert words("Where's my ORDER #4417?") == ["where's", "my", "order", "4417"]
    assert shingles("Where is my order", 3) == {("where", "is", "my"), ("is", "my", "order")}
    assert shingles("Hi there", 3) == {("hi", "there")}  # shorter than n: one shingle of all its words
    assert shingles("?!", 3) == set()


def test_jaccard_by_hand():
    a, b = shingles("where is my order please"), shingles("where is my order now")
    assert len(a & b) == 2 and len(a | b) == 4  # "where is my", "is my order" shared; one own trigram each
    assert jaccard(a, b) == 0.5
    assert jaccard(set(), set()) == 0.0 and jaccard({1}, {1}) == 1.0


def test_minhash_estimates_jaccard_and_is_reproducible():
    a = shingles("the blender arrived with a cracked jug and it leaks all over the counter when I use it")
    b = shingles("the blender arrived with a cracked jug and it leaks all over the table when I use it")
    exact = jaccard(a, b)
    estimate = minhash_similarity(minhash_signature(a, 256, seed=1), minhash_signature(b, 256, seed=1))
    assert abs(estimate - exact) < 0.15  # 256 hashes: standard error sqrt(J(1-J)/256) < 0.032
    assert minhash_signature(a, 16, seed=3) == minhash_signature(set(a), 16, seed=3)
    assert minhash_similarity(minhash_signature(a, 64), minhash_signature(a, 64)) == 1.0
    with pytest.raises(CourseError, match="same num_perm"):
        minhash_similarity([1, 2], [1])
    with pytest.raises(CourseError, match="empty set"):
        minhash_signature(set())


def test_near_duplicates_finds_the_planted_pairs_and_only_true_ones():
    texts = [
        "I want to cancel my order for the AeroBlend X2 blender because I placed it by mistake",
        "Please reset my password, I cannot log in to my account since this morning",
        "I want to cancel my order for the AeroBlend X2 blender because I placed it twice by mistake",
        "Where is my parcel? The tracking page has not moved for a week",
        "please reset my password i cannot log in to my account since this morning!!",
        "Do the TrailRunner Pro shoes come in half sizes?",
    ]
    pairs = near_duplicates(texts, threshold=0.5)
    assert [(i, j) for i, j, _ in pairs] == [(1, 4), (0, 2)]  # most similar first; the others are unrelated
    assert pairs[0][2] == 1.0 and pairs[1][2] == jaccard(shingles(texts[0]), shingles(texts[2]))
    assert near_duplicates(texts, threshold=0.95) == [(1, 4, 1.0)]
    with pytest.raises(CourseError, match="bands"):
        near_duplicates(texts, num_perm=64, bands=10)


def test_the_band_curve_is_steep_around_its_threshold():
    assert candidate_probability(1.0) == 1.0 and candidate_probability(0.0) == 0.0
    assert candidate_probability(0.5) > 0.99 > 0.9 > candidate_probability(0.2)  # 40 bands of 3 rows
    assert candidate_probability(0.5, num_perm=64, bands=16) == 1 - (1 - 0.5 ** 4) ** 16


def test_contaminated_flags_test_texts_that_share_a_long_ngram_with_training():
    train = ["Hello, I ordered the Zephyr tower fan last Tuesday and it still has not arrived, where is it?",
             "Can I pay with a different card?"]
    test = [
        "Hi team, I ordered the Zephyr tower fan last Tuesday and it still has not arrived",  # shares 8-grams
        "My Zephyr tower fan arrived broken, the blades are cracked",  # shares words, not 8 in a row
        "pay with a different card",  # short: all its words occur in a row in a training text
        "a different card please",
    ]
    found = contaminated(test, train, n=8)
    assert sorted(found) == [0, 2]
    assert " ".join(found[0]) in " ".join(words(train[0])) and found[2] == ("pay", "with", "a", "different", "card")
    assert contaminated(test, train, n=20) == {2: ("pay", "with", "a", "different", "card")}
    assert contaminated(test, []) == {}


def test_add_typos_changes_only_long_words_and_is_seeded():
    text = "Please cancel my order, it has not shipped yet."
    assert add_typos(text, random.Random(0), rate=0.0) == text
    noisy = add_typos(text, random.Random(5), rate=1.0)
    assert noisy != text and noisy == add_typos(text, random.Random(5), rate=1.0)
    for before, after in zip(text.split(), noisy.split()):
        assert after == before or (len(before.strip(",.")) >= 4 and abs(len(after) - len(before)) <= 1 and after[0] == before[0])
